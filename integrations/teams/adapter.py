"""The Agents SDK CloudAdapter built from srebot's settings, its Bot Connector clients, and Outbox (proactive sends).

Every outgoing call goes through `Destinations`: a timeout on each call, at most `per_destination`
connections to one host at once, and never to a serviceUrl outside the allow-list (checked again
here, so a stored reference from before cannot send anywhere else either).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from microsoft_agents.activity import (
    Activity,
    ActivityTypes,
    ChannelAccount,
    ConversationAccount,
    ConversationParameters,
    ConversationReference,
    ResourceResponse,
)
from microsoft_agents.hosting.aiohttp import CloudAdapter
from microsoft_agents.hosting.core import (
    AccessTokenProviderBase,
    AgentAuthConfiguration,
    ChannelServiceClientFactoryBase,
    ClaimsIdentity,
    ConnectorClientBase,
    TeamsConnectorClient,
    TurnContext,
    UserTokenClient,
)
from microsoft_agents.hosting.core.authorization import AuthenticationConstants
from microsoft_agents.hosting.core.connector.client import connector_client as sdk_connector_client
from microsoft_agents.hosting.core.connector.client import user_token_client as sdk_user_token_client

from integrations.teams.auth import Refused, ServiceUrls, TeamsAuth

log = logging.getLogger("srebot.teams")

# The SDK computes each client's User-Agent with importlib.metadata, a scan of site-packages of about
# 0.5 ms, for every client it makes (two a turn, two a proactive send); the string cannot change in a
# process, so it is computed once.
_product_info = functools.cache(sdk_connector_client.get_product_info)
sdk_connector_client.get_product_info = _product_info
sdk_user_token_client.get_product_info = _product_info

THREAD_MARK = ";messageid="  # a channel thread's conversation id is the channel's with this and the root id
TokenProviderFactory = Callable[[AgentAuthConfiguration], AccessTokenProviderBase]


class TokenUnavailable(Exception):
    """The bot's own token for the Bot Connector could not be had (Entra ID down, a wrong secret)."""


class Destinations:
    """Outgoing HTTP to Bot Connector service URLs: every call has a deadline (`timeout`, waiting for a
    connection included) and one host gets at most `per_destination` connections at once, so a slow or
    silent serviceUrl delays only its own conversations."""

    # Teams serves a whole region from one host, so the cap must leave room for real traffic; it is there
    # so that a silent destination holds a bounded number of sockets, each for at most `timeout`.
    def __init__(self, allowed: ServiceUrls, *, timeout: float = 10.0, per_destination: int = 32):
        self.allowed = allowed
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.per_destination = per_destination
        self._connector: aiohttp.TCPConnector | None = None

    def session(self, service_url: str) -> aiohttp.ClientSession:
        if not self.allowed.allows(service_url):
            raise Refused(f"not sending to a serviceUrl outside the allow-list: {service_url[:100]}")
        if self._connector is None or self._connector.closed:  # made in the running loop, on first use
            self._connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.per_destination)
        base = service_url if service_url.endswith("/") else service_url + "/"
        return aiohttp.ClientSession(base_url=base, connector=self._connector, connector_owner=False,
                                     timeout=self.timeout)

    async def close(self) -> None:
        if self._connector is not None:
            await self._connector.close()


class ConnectorFactory(ChannelServiceClientFactoryBase):
    """Bot Connector clients on `Destinations`, authenticated with the bot's token (none in local mode).
    srebot uses no user sign-in, so the user token client is an unauthenticated placeholder."""

    def __init__(self, destinations: Destinations, tokens: AccessTokenProviderBase | None, app_id: str):
        self.destinations = destinations
        self.tokens = tokens
        self.app_id = app_id

    async def create_connector_client(
        self,
        context: TurnContext | None,
        claims_identity: ClaimsIdentity,
        service_url: str,
        audience: str,
        scopes: list[str] | None = None,
        use_anonymous: bool = False,
    ) -> TeamsConnectorClient:
        token = ""
        if self.tokens is not None and not use_anonymous:
            try:
                token = await self.tokens.get_access_token(audience, scopes or claims_identity.get_token_scope())
            except Exception as exc:  # Entra ID unreachable or refusing: nothing can be sent now
                raise TokenUnavailable(f"{exc.__class__.__name__}: {str(exc)[:200]}") from None
        return TeamsConnectorClient(service_url, token, session=self.destinations.session(service_url))

    async def create_user_token_client(
        self, context: TurnContext, claims_identity: ClaimsIdentity, use_anonymous: bool = False
    ) -> UserTokenClient:
        return UserTokenClient(AuthenticationConstants.AGENTS_SDK_OAUTH_URL, "", app_id=self.app_id)


def msal_provider(configuration: AgentAuthConfiguration) -> AccessTokenProviderBase:
    """The bot's tokens for the Bot Connector, from Entra ID (client secret or managed identity)."""
    from microsoft_agents.authentication.msal import MsalAuth

    return MsalAuth(configuration)


def make_adapter(auth: TeamsAuth, destinations: Destinations,
                 token_provider: TokenProviderFactory | None = None) -> CloudAdapter:
    """The SDK adapter; `token_provider` makes the bot's token provider from its SDK connection settings
    (MSAL by default)."""
    tokens: AccessTokenProviderBase | None = None
    if auth.configuration is not None:
        tokens = (token_provider or msal_provider)(auth.configuration)
    # the app id only names the bot to the (unused) user token service; local mode has none
    factory = ConnectorFactory(destinations, tokens, auth.app_id or "srebot-local")
    adapter = CloudAdapter(channel_service_client_factory=factory)

    async def on_error(context: TurnContext, error: Exception) -> None:
        if isinstance(error, (aiohttp.ClientError, TimeoutError, Refused)):  # the destination's fault: no traceback
            log.warning("Teams call failed: %s %s", error.__class__.__name__, str(error)[:200],
                        extra={"activity_type": context.activity.type})
            return
        log.error("Teams turn failed", exc_info=(type(error), error, error.__traceback__),
                  extra={"activity_type": context.activity.type})

    adapter.on_turn_error = on_error
    return adapter


def reference_dict(activity: Activity) -> dict[str, Any]:
    """The activity's ConversationReference as JSON, to store with the session (same keys as botbuilder's)."""
    return activity.get_conversation_reference().model_dump(mode="json", by_alias=True, exclude_none=True)


def reference_from(data: dict[str, Any]) -> ConversationReference:
    return ConversationReference.model_validate(data)


def _addressed(context: TurnContext, activity: Activity) -> Activity:
    outgoing = activity.model_copy()
    outgoing.type = outgoing.type or ActivityTypes.message
    outgoing = TurnContext.apply_conversation_reference(outgoing, context.activity.get_conversation_reference())
    outgoing.reply_to_id = None  # the continuation activity's id is made up; nothing to reply to
    return outgoing


async def send_in_turn(context: TurnContext, activity: Activity, *, reply: bool) -> str | None:
    """Send in a turn: as a reply to the incoming activity, or (proactive) as a new activity in the
    conversation; a channel thread's conversation id already names the thread."""
    if reply:
        response = await context.send_activity(activity)
        return response.id if response else None
    outgoing = _addressed(context, activity)
    outgoing.input_hint = outgoing.input_hint or "acceptingInput"
    [response] = await context.adapter.send_activities(context, [outgoing])
    return response.id if isinstance(response, ResourceResponse) and response.id else None


async def update_in_turn(context: TurnContext, activity_id: str, activity: Activity) -> None:
    outgoing = _addressed(context, activity)
    outgoing.id = activity_id
    await context.adapter.update_activity(context, outgoing)


class Outbox:
    """Sends and updates activities in a conversation from a stored reference, in a proactive turn, so it
    works from any replica and after a restart."""

    def __init__(self, adapter: CloudAdapter, auth: TeamsAuth):
        self.adapter = adapter
        self.auth = auth

    async def _proactive(self, reference: dict[str, Any], logic: Callable[[TurnContext], Awaitable[None]]) -> None:
        """Run `logic` in a proactive turn; its failure is raised here (the adapter's turn error handler
        would only log it), so the caller can do something else, e.g. post what it could not update."""
        continuation = reference_from(reference).get_continuation_activity()
        failed: list[Exception] = []

        async def guarded(context: TurnContext) -> None:
            try:
                await logic(context)
            except Exception as exc:
                failed.append(exc)

        if self.auth.local:  # no credentials: an anonymous identity, and no token on the calls
            await self.adapter.continue_conversation_with_claims(
                ClaimsIdentity(), continuation, guarded, AuthenticationConstants.AGENTS_SDK_SCOPE
            )
        else:
            await self.adapter.continue_conversation(self.auth.app_id, continuation, guarded)
        if failed:
            raise failed[0]

    async def send(self, reference: dict[str, Any], activity: Activity) -> str | None:
        """Post a new activity into the conversation; returns its id (None when the channel gives none)."""
        sent: list[str | None] = []

        async def logic(context: TurnContext) -> None:
            sent.append(await send_in_turn(context, activity, reply=False))

        await self._proactive(reference, logic)
        return sent[0] if sent else None

    async def update(self, reference: dict[str, Any], activity_id: str, activity: Activity) -> None:
        """Replace the activity `activity_id` (a placeholder or an approval card)."""

        async def logic(context: TurnContext) -> None:
            await update_in_turn(context, activity_id, activity)

        await self._proactive(reference, logic)

    async def private(self, reference: dict[str, Any], activity: Activity) -> str | None:
        """Send `activity` in the 1:1 chat of the bot with the reference's user, in its tenant: `POST
        /v3/conversations` with that one member opens it (or finds it again), then the activity goes there.
        Raises when Teams refuses (the bot not installed for them, for instance)."""
        user, tenant = reference.get("user") or {}, (reference.get("conversation") or {}).get("tenantId")
        if not user.get("id") or not tenant:
            raise ValueError("the conversation reference names no user or tenant")
        sent: list[str | None] = []

        async def logic(context: TurnContext) -> None:
            client = context.services.get(ConnectorClientBase)
            bot = context.activity.recipient
            created = await client.conversations.create_conversation(ConversationParameters(
                is_group=False, agent=bot, members=[ChannelAccount(id=user["id"])], tenant_id=tenant,
                channel_data={"tenant": {"id": tenant}},
            ))
            outgoing = activity.model_copy()
            outgoing.conversation = ConversationAccount(id=created.id, tenant_id=tenant, conversation_type="personal")
            outgoing.from_property, outgoing.recipient = bot, ChannelAccount(id=user["id"])
            outgoing.service_url, outgoing.channel_id = context.activity.service_url, context.activity.channel_id
            response = await client.conversations.send_to_conversation(created.id, outgoing)
            sent.append(response.id if response else None)

        await self._proactive(reference, logic)
        return sent[0] if sent else None

    async def members(self, reference: dict[str, Any]) -> list[ChannelAccount]:
        """The conversation's members (of the channel, for a channel thread), with their AAD object ids."""
        found: list[ChannelAccount] = []

        async def logic(context: TurnContext) -> None:
            client = context.services.get(ConnectorClientBase)
            conversation_id = context.activity.conversation.id.split(THREAD_MARK, 1)[0]
            found.extend(await client.conversations.get_conversation_members(conversation_id))

        await self._proactive(reference, logic)
        return found
