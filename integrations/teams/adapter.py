"""The botbuilder CloudAdapter built from srebot's settings, and Outbox: sends to stored ConversationReferences."""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ActivityTypes, ConversationReference

from bot.config import ConfigError, Settings

log = logging.getLogger("srebot.teams")


@dataclass(frozen=True)
class BotAuthConfig:
    """The configuration object botbuilder's ConfigurationBotFrameworkAuthentication reads (by attribute)."""

    APP_ID: str
    APP_PASSWORD: str
    APP_TENANTID: str
    APP_TYPE: str

    @classmethod
    def from_settings(cls, settings: Settings) -> "BotAuthConfig":
        app_id = settings.microsoft_app_id.strip()
        return cls(
            APP_ID=app_id,
            APP_PASSWORD=settings.microsoft_app_password.get_secret_value(),
            APP_TENANTID=settings.microsoft_app_tenant_id,
            # without an app id auth is off, and only the multi-tenant factory accepts that
            APP_TYPE=settings.microsoft_app_type if app_id else "MultiTenant",
        )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.APP_ID)


def make_adapter(config: BotAuthConfig) -> CloudAdapter:
    try:
        auth = ConfigurationBotFrameworkAuthentication(config)
    except Exception as exc:  # botbuilder raises a bare Exception naming the missing property
        raise ConfigError(f"MICROSOFT_APP_TYPE={config.APP_TYPE}: {exc}") from None
    adapter = CloudAdapter(auth)

    async def on_error(context: TurnContext, error: Exception) -> None:
        log.error("Teams turn failed", exc_info=(type(error), error, error.__traceback__),
                  extra={"activity_type": context.activity.type})

    adapter.on_turn_error = on_error
    return adapter


def reference_dict(activity: Activity) -> dict[str, Any]:
    """The activity's ConversationReference as JSON, to store with the session."""
    return TurnContext.get_conversation_reference(activity).serialize()


def reference_from(data: dict[str, Any]) -> ConversationReference:
    return ConversationReference().deserialize(data)


class Outbox:
    """Sends and updates activities in a conversation from a stored reference, in a proactive turn
    (`adapter.continue_conversation`), so it works from any replica and after a restart."""

    def __init__(self, adapter: CloudAdapter, app_id: str):
        self.adapter = adapter
        self.app_id = app_id

    async def _proactive(self, reference: dict[str, Any], logic: Callable[[TurnContext], Awaitable[None]]) -> None:
        await self.adapter.continue_conversation(reference_from(reference), logic, self.app_id)

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


def _addressed(context: TurnContext, activity: Activity) -> Activity:
    outgoing = copy.copy(activity)
    outgoing.type = outgoing.type or ActivityTypes.message
    return TurnContext.apply_conversation_reference(outgoing, TurnContext.get_conversation_reference(context.activity))


async def send_in_turn(context: TurnContext, activity: Activity, *, reply: bool) -> str | None:
    """Send in a turn: as a reply to the incoming activity, or (proactive) as a new activity in the
    conversation; a channel thread's conversation id already names the thread."""
    if reply:
        response = await context.send_activity(activity)
        return response.id if response else None
    outgoing = _addressed(context, activity)
    outgoing.reply_to_id = None  # the continuation activity's id is made up; nothing to reply to
    outgoing.input_hint = outgoing.input_hint or "acceptingInput"
    [response] = await context.adapter.send_activities(context, [outgoing])
    return response.id if response else None


async def update_in_turn(context: TurnContext, activity_id: str, activity: Activity) -> None:
    outgoing = _addressed(context, activity)
    outgoing.id = activity_id
    outgoing.reply_to_id = None
    await context.adapter.update_activity(context, outgoing)
