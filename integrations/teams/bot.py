"""The Teams activity handler: message activities become Requests for the dispatcher, card submits approval decisions."""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Coroutine
from typing import Any

from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount, Mention

from bot.telemetry import EVENTS_DROPPED, EVENTS_RECEIVED
from bot.ports import ConversationKey, Core, Request
from integrations.teams.adapter import Outbox, reference_dict
from integrations.teams.port import TeamsPort

log = logging.getLogger("srebot.teams")

PLATFORM = "teams"
_THREAD = ";messageid="


def tenant_of(activity: Activity) -> str:
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = channel_data.get("tenant") if isinstance(channel_data.get("tenant"), dict) else {}
    conversation = activity.conversation
    return (
        tenant.get("id")
        or (conversation.tenant_id if conversation else None)
        or ((conversation.additional_properties or {}).get("tenantId") if conversation else None)
        or "default"
    )


def conversation_key(activity: Activity) -> ConversationKey:
    """Workspace = tenant, channel = the conversation without its thread part, thread = the full id,
    so every message of a channel thread (`…;messageid=<root>`) is one session."""
    full = activity.conversation.id
    return ConversationKey(PLATFORM, tenant_of(activity), full.split(_THREAD, 1)[0], full)


def user_of(activity: Activity) -> str:
    """Approvers are configured as AAD object ids; the channel id is the fallback."""
    sender = activity.from_property
    return (sender.aad_object_id or sender.id) if sender else "unknown"


def _bot_mentions(activity: Activity) -> list[dict[str, Any]]:
    bot_id = activity.recipient.id if activity.recipient else None
    found = []
    for entity in activity.entities or []:
        if (entity.type or "").lower() != "mention":
            continue
        props = entity.additional_properties or {}
        mentioned = props.get("mentioned") or {}
        if bot_id and mentioned.get("id") == bot_id:
            found.append(props)
    return found


def mentions_bot(activity: Activity) -> bool:
    return bool(_bot_mentions(activity))


def strip_bot_mention(activity: Activity) -> str:
    """The message text without the bot's @mention (what TurnContext.remove_recipient_mention does,
    but literal, so a bot name with regex characters is removed too), HTML entities decoded."""
    text = activity.text or ""
    for mention in _bot_mentions(activity):
        name = (mention.get("mentioned") or {}).get("name") or ""
        for literal in filter(None, (mention.get("text"), f"<at>{name}</at>" if name else None)):
            text = text.replace(literal, " ")
    text = re.sub(r"<at>\s*</at>", " ", text)
    return " ".join(html.unescape(text).replace("\xa0", " ").split())


def approval_submit(activity: Activity) -> dict[str, str] | None:
    """The data of srebot's Action.Submit on an approval card, when this message is one."""
    value = activity.value
    if isinstance(value, dict) and value.get("srebot") == "approval":
        if value.get("decision") in ("approve", "reject") and isinstance(value.get("approval_id"), str):
            return value
    return None


def mention_reply(activity: Activity, text: str) -> Activity:
    """A reply that @mentions the sender. Teams has no ephemeral messages for bots (only Action.Execute
    user-specific views, which srebot does not use), so a private answer is a mention in the thread."""
    sender = activity.from_property or ChannelAccount(id="unknown", name="")
    name = sender.name or "there"
    tag = f"<at>{name}</at>"
    mention = Mention(mentioned=ChannelAccount(id=sender.id, name=name), text=tag, type="mention")
    return Activity(
        type=ActivityTypes.message,
        text=f"{tag} {text}",
        entities=[Mention().deserialize(mention.serialize())],
    )


class TeamsBot(TeamsActivityHandler):
    """Personal chats are always handled; group chats need an @mention of the bot; in a channel a
    message needs the mention unless its thread already has a session (a follow-up)."""

    def __init__(self, core: Core, outbox: Outbox, *, ack_wait: float = 2.0, update_interval: float = 1.5):
        super().__init__()
        self.core = core
        self.outbox = outbox
        self.ack_wait = ack_wait  # how long a turn waits for the acknowledgement to reply with it
        self.update_interval = update_interval
        self._background: set[asyncio.Task[Any]] = set()

    def port(self, reference: dict[str, Any], turn: TurnContext | None = None) -> TeamsPort:
        return TeamsPort(
            self.outbox, self.core, reference, turn=turn, update_interval=self.update_interval
        )

    async def on_turn(self, turn_context: TurnContext) -> None:
        EVENTS_RECEIVED.labels(PLATFORM, turn_context.activity.type or "unknown").inc()
        await super().on_turn(turn_context)

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        # srebot's cards use Action.Submit, which arrives as a message with `value`; Action.Execute and
        # other invokes are not used, so they are acknowledged and ignored.
        EVENTS_DROPPED.labels(PLATFORM, "invoke").inc()
        return InvokeResponse(status=200)

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        sender = activity.from_property
        if sender is None or (activity.recipient and sender.id == activity.recipient.id) or sender.role == "bot":
            EVENTS_DROPPED.labels(PLATFORM, "bot_message").inc()
            return
        reference = reference_dict(activity)
        submit = approval_submit(activity)
        if submit is not None:
            if await self._first_delivery(activity):
                await self._decide(turn_context, submit, reference)
            return
        key = conversation_key(activity)
        kind = (activity.conversation.conversation_type or "personal").lower()
        mentioned = mentions_bot(activity)
        session_id = await self.core.session_of(key)
        if not mentioned and (kind == "groupchat" or (kind == "channel" and session_id is None)):
            EVENTS_DROPPED.labels(PLATFORM, "not_addressed").inc()
            return
        if not await self._first_delivery(activity):
            return
        if session_id is not None:  # the serviceUrl may have moved: keep the freshest reference
            await self.core.remember_reference(session_id, reference)
        text = strip_bot_mention(activity) or "help"
        port = self.port(reference, turn_context)
        self.core.submit(
            Request(key=key, user=user_of(activity), text=text, port=port, reference=reference)
        )
        await port.hold_turn(self.ack_wait)

    async def _first_delivery(self, activity: Activity) -> bool:
        """False for a repeated delivery of one activity id (on any replica, across restarts)."""
        if activity.id and not await self.core.claim(PLATFORM, activity.id):
            EVENTS_DROPPED.labels(PLATFORM, "duplicate").inc()
            return False
        return True

    async def _decide(self, turn_context: TurnContext, submit: dict[str, str], reference: dict[str, Any]) -> None:
        """Decide in the background (an approved action may take a while to run); a refusal is told to
        the person who clicked. An accepted decision reaches the thread through TeamsNotifier."""
        activity = turn_context.activity
        port = self.port(reference, turn_context)

        async def decide() -> None:
            decision = await self.core.decide(
                submit["approval_id"], user_of(activity), submit["decision"], platform=PLATFORM
            )
            if not decision.accepted:
                await port.send(mention_reply(activity, decision.message))

        task = self._spawn(decide())
        await asyncio.wait([task], timeout=self.ack_wait)
        await port.hold_turn(0)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("approval decision failed", exc_info=task.exception())

    async def drain(self, timeout: float = 20.0) -> None:
        """Let decisions in progress finish (used at shutdown)."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)
