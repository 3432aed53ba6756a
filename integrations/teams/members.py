"""Whether the person behind a Teams activity is of this organisation, which bot.policy needs before anyone
proposes or approves: people of other tenants and guest accounts may read answers, never propose or approve.

A person is of this organisation when
- the activity's tenant (`channelData.tenant.id` and `conversation.tenantId`, wherever given, all equal) is
  MICROSOFT_APP_TENANT_ID, and the token names no other tenant than that one or a Microsoft service tenant
  (a token's `tid`, when it has one, outranks what the activity body says); and
- the Bot Connector says the member is a `"user"` of that tenant (`GET /v3/conversations/{id}/members/{user}`
  answers `userRole` "user" / "guest" / "anonymous" and `tenantId`).

Lookups are cached per tenant and user for `ttl` seconds and bounded by `timeout`. Fail closed: when the
lookup fails, or no tenant is configured, the person reads but neither proposes nor approves, and is told why.
Local mode (SREBOT_TEAMS_INSECURE=local) proves no identity at all and skips this: approvals cannot be decided
from Teams there, only in a terminal.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from cachetools import TTLCache
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import ConnectorClientBase, TeamsConnectorClient, TurnContext

# The Microsoft tenants the SDK trusts as token issuers for the Bot Framework itself (its own allow-list): a
# token from one of them names the channel's tenant, not the person's.
from microsoft_agents.hosting.core.authorization._entra_issuers import (
    WELL_KNOWN_GOV_TENANT_ID,
    WELL_KNOWN_PUBLIC_TENANT_IDS,
)

from integrations.teams.adapter import THREAD_MARK

log = logging.getLogger("srebot.teams")

SERVICE_TENANTS = frozenset((*WELL_KNOWN_PUBLIC_TENANT_IDS, WELL_KNOWN_GOV_TENANT_ID))
LOOKUP_TIMEOUT = 3.0
CACHE_SECONDS = 600.0
CACHE_SIZE = 10_000

NO_TENANT = (
    "srebot cannot tell who belongs to this organisation on Teams (MICROSOFT_APP_TENANT_ID is not set), so "
    "nobody can propose or approve changes from Teams; you can still read answers."
)
LOOKUP_FAILED = (
    "I could not check your Teams account with Microsoft just now, so I cannot let you propose or approve "
    "changes; you can still read answers. Try again in a minute."
)


@dataclass(frozen=True)
class Standing:
    """What bot.policy needs to know about a Teams person (Request / Actor fields of the same names)."""

    external: bool = False
    unverified: str = ""


OURS = Standing()
OUTSIDER = Standing(external=True)


def tenants_of(activity: Activity) -> set[str]:
    """Every tenant id the activity names (lower case); more than one is a contradiction."""
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = channel_data.get("tenant") if isinstance(channel_data.get("tenant"), dict) else {}
    named = [tenant.get("id"), activity.conversation.tenant_id if activity.conversation else None]
    return {t.strip().lower() for t in named if isinstance(t, str) and t.strip()}


class Organisation:
    """Decides a Teams person's Standing for one configured tenant (empty: nobody is vouched for)."""

    def __init__(self, tenant: str, *, check: bool = True, ttl: float = CACHE_SECONDS,
                 timeout: float = LOOKUP_TIMEOUT):
        self.tenant = tenant.strip().lower()
        self.check = check
        self.timeout = timeout
        # explicit get/set: a failed lookup is never cached, and concurrent misses just both ask
        self._roles: TTLCache[tuple[str, str], Standing] = TTLCache(CACHE_SIZE, ttl)

    async def standing(self, context: TurnContext) -> Standing:
        if not self.check:
            return OURS
        if not self.tenant:
            return Standing(unverified=NO_TENANT)
        activity = context.activity
        named = tenants_of(activity)
        token = (context.identity.get_claim_value("tid") or "") if context.identity else ""
        token = token.strip().lower() if isinstance(token, str) else ""
        if named != {self.tenant} or token not in ("", self.tenant, *SERVICE_TENANTS):
            log.info("Teams person of another tenant: reads only",
                     extra={"tenants": sorted(named), "token_tenant": token or None})
            return OUTSIDER
        sender = activity.from_property
        if sender is None or not sender.id:
            return Standing(unverified=LOOKUP_FAILED)
        key = (self.tenant, sender.id)
        known = self._roles.get(key)
        if known is not None:
            return known
        try:
            found = await self._lookup(context, sender.id)
        except Exception as exc:  # noqa: BLE001 - any failure: fail closed, and say so
            log.warning("Teams member lookup failed: %s", exc.__class__.__name__, extra={"error": str(exc)[:200]})
            return Standing(unverified=LOOKUP_FAILED)
        self._roles[key] = found
        return found

    async def _lookup(self, context: TurnContext, user_id: str) -> Standing:
        client = context.services.get(ConnectorClientBase)
        if not isinstance(client, TeamsConnectorClient):
            raise TypeError("no Teams connector client in this turn")
        conversation = context.activity.conversation.id.split(THREAD_MARK, 1)[0]
        async with asyncio.timeout(self.timeout):
            member = await client.get_conversation_member(conversation, user_id)
        role = (member.user_role or "").lower()
        tenant = (member.tenant_id or "").strip().lower()
        if role == "user" and tenant in ("", self.tenant):
            return OURS
        log.info("Teams guest or external account: reads only", extra={"user_role": role or None})
        return OUTSIDER
