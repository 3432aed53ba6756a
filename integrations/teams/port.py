"""TeamsPort (the ReplyPort of one Teams request) and TeamsNotifier (reaches a Teams conversation later)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from microsoft_agents.activity import Activity, ActivityTypes, Attachment, ChannelAccount, Mention, StreamInfo
from microsoft_agents.hosting.core import TurnContext

from bot.answer import Answer
from bot.chart import draw
from bot.ports import AlertThread, ApprovalRecord, Conversation, ConversationKey, Core
from bot.presentation import present
from bot.wording import NOT_TOLD_PRIVATELY
from integrations.teams.adapter import Outbox, send_in_turn
from integrations.teams.alerts import alert_card, channel_reference, thread_reference
from integrations.teams.cards import (
    CARD_BUDGET,
    CHART_COLOURS,
    CHART_HEIGHT,
    CHART_WIDTH,
    answer_cards,
    approval_card,
    approval_outcome,
    attachment,
    payload_size,
    text_cards,
)

if TYPE_CHECKING:
    from bot.alerts.routing import Destination
    from bot.alerts.view import AlertView

log = logging.getLogger("srebot.teams")


def text_activity(text: str) -> Activity:
    return Activity(type=ActivityTypes.message, text=text)


def mention_activity(account: ChannelAccount | None, text: str) -> Activity:
    """A message that @mentions `account` (a bot has no ephemeral messages in a conversation)."""
    sender = account or ChannelAccount(id="unknown", name="")
    name = sender.name or "there"
    tag = f"<at>{name}</at>"
    mention = Mention(mentioned=ChannelAccount(id=sender.id, name=name), text=tag)
    return Activity(type=ActivityTypes.message, text=f"{tag} {text}", entities=[mention])


def typing_activity() -> Activity:
    return Activity(type=ActivityTypes.typing)


def card_activity(card: dict[str, Any], summary: str | None = None) -> Activity:
    content = attachment(card)
    activity = Activity(
        type=ActivityTypes.message,
        attachments=[Attachment(content_type=content["contentType"], content=content["content"])],
    )
    if summary:
        activity.summary = summary[:200]  # the notification preview; the card itself has no plain text
    return activity


async def message_activities(message: Answer | str) -> list[Activity]:
    """A message as the Teams activities it takes: one, or several when it is over the size limit. An answer's
    chart is drawn (in a thread) into its card."""
    if isinstance(message, str):
        if payload_size(message) <= CARD_BUDGET:
            return [text_activity(message)]
        return [card_activity(card, message) for card in text_cards(message)]
    png = None
    if message.chart is not None:
        try:
            png = await asyncio.to_thread(draw, message.chart, width=CHART_WIDTH, height=CHART_HEIGHT,
                                          colours=CHART_COLOURS)
        except Exception:  # a drawing failure costs the picture, never the answer
            log.exception("could not draw the chart", extra={"request_id": message.request_id})
    return [card_activity(card, present(message).headline) for card in answer_cards(message, png)]


def approval_names(approval: ApprovalRecord) -> dict[str, str]:
    """Display names of the people on an approval (requester, deciders), as Teams told them."""
    names = (approval.message_ref or {}).get("names")
    return dict(names) if isinstance(names, dict) else {}


def approval_activity(approval: ApprovalRecord) -> Activity:
    """The approval card everyone sees, as stored with the approval (names, who gets their own view)."""
    ref = approval.message_ref or {}
    return card_activity(
        approval_card(approval, names=approval_names(approval), approver_ids=ref.get("approver_ids") or ()),
        f"Approval needed: {approval.description}" if approval.status == "pending" else None,
    )


def _account_name(reference: dict[str, Any], user: str) -> str | None:
    account = reference.get("user") or {}
    if user in (account.get("aadObjectId"), account.get("id")) and isinstance(account.get("name"), str):
        return account["name"]
    return None


class TeamsPort:
    """The thread of one Teams request.

    While the HTTP turn is still open (`turn`), the first message goes out as a reply in that turn (the
    acknowledgement); everything after it, and everything once the turn is over, is sent proactively
    through the stored ConversationReference. In a personal chat the acknowledgement and progress are
    informative updates of a Teams stream, which the answer ends; elsewhere the acknowledgement is a
    "Looking into …" reply and progress shows the typing indicator. Progress goes out at most once per
    `update_interval` seconds. Platform failures are logged, never raised."""

    def __init__(
        self,
        outbox: Outbox,
        core: Core,
        reference: dict[str, Any],
        *,
        turn: TurnContext | None = None,
        update_interval: float = 1.5,
        personal: bool = False,
        names: Mapping[str, str] | None = None,
    ):
        self.outbox = outbox
        self.names = names or {}  # display names by user id, for who is not in `reference` (see TeamsNotifier)
        self.core = core
        self.reference = reference
        self.update_interval = update_interval
        self.personal = personal
        self.first_sent = asyncio.Event()
        self._turn = turn
        self._send_lock = asyncio.Lock()
        self._progress_lock = asyncio.Lock()
        self._acknowledged = False
        self._stream_id: str | None = None
        self._placeholder_id: str | None = None  # the "Looking into …" reply (not in a personal chat's stream)
        self._sequence = 0
        self._shown: str | None = None
        self._updated_at = 0.0

    async def hold_turn(self, timeout: float) -> None:
        """Wait (at most `timeout` s) for the first message to go out in the turn, then let the turn end."""
        try:
            await asyncio.wait_for(self.first_sent.wait(), timeout)
        except TimeoutError:
            pass
        async with self._send_lock:
            self._turn = None

    async def send(self, activity: Activity) -> str | None:
        """Send one activity; returns its id, or None when it could not be sent (logged)."""
        async with self._send_lock:
            turn, self._turn = self._turn, None
            try:
                if turn is not None:
                    return await send_in_turn(turn, activity, reply=True)
                return await self.outbox.send(self.reference, activity)
            except Exception as exc:
                log.warning("could not send to Teams: %s", exc.__class__.__name__, exc_info=True)
                return None
            finally:
                self.first_sent.set()

    def _informative(self, text: str) -> Activity:
        self._sequence += 1
        info = StreamInfo(stream_type="informative", stream_sequence=self._sequence)
        if self._stream_id:
            info.stream_id = self._stream_id
        return Activity(type=ActivityTypes.typing, text=text, entities=[info])

    @property
    def placeholder_ref(self) -> dict[str, str] | None:
        """Where the acknowledgement is, kept with the turn: whoever ends the turn after a crash (this
        process restarted, or another replica) replaces it instead of leaving "Looking into …" above its
        notice. In a personal chat it is the stream of informative updates, which the notice ends."""
        if self._stream_id:
            return {"stream_id": self._stream_id}
        return {"activity_id": self._placeholder_id} if self._placeholder_id else None

    # --- ReplyPort -------------------------------------------------------------------------------
    async def progress(self, text: str) -> None:
        async with self._progress_lock:
            now = time.monotonic()
            if self._acknowledged and (text == self._shown or now - self._updated_at < self.update_interval):
                return  # throttled: Teams allows about one update a second, and the answer follows anyway
            first, self._acknowledged = not self._acknowledged, True
            self._shown, self._updated_at = text, now
            if self.personal:
                sent = await self.send(self._informative(text))
                self._stream_id = self._stream_id or sent
            elif first:
                self._placeholder_id = await self.send(text_activity(text))
            else:
                await self.send(typing_activity())

    async def post(self, message: Answer | str) -> None:
        activities = await message_activities(message)
        async with self._progress_lock:
            if self._stream_id:  # the answer ends the stream, replacing its informative updates
                activities[0].entities = [StreamInfo(stream_type="final", stream_id=self._stream_id)]
                self._stream_id = None
            self._acknowledged = True
        for activity in activities:
            await self.send(activity)

    async def ask_approval(self, approval: ApprovalRecord) -> None:
        name = _account_name(self.reference, approval.requester) or self.names.get(approval.requester)
        names = {approval.requester: name} if name else {}
        approver_ids = await self._approver_ids(approval)
        ref: dict[str, Any] = {"conversation": self.reference, "names": names, "approver_ids": approver_ids}
        activity_id = await self.send(approval_activity(dataclasses.replace(approval, message_ref=ref)))
        if activity_id is None:
            return
        try:
            await self.core.approval_posted(approval.id, {"activity_id": activity_id, **ref})
        except Exception:
            log.exception("could not store the approval message reference")

    async def tell_privately(self, text: str) -> bool:
        """In a personal chat, a message there; elsewhere in the 1:1 chat of the bot with the person who asked,
        opened proactively (Teams has no ephemeral messages in a conversation). Where that fails, the person is
        @mentioned in the thread without the details. False in a thread nobody asked in (an alert's)."""
        user = self.reference.get("user")
        if not user:
            return False
        if self.personal:
            await self.send(text_activity(text))
            return True
        try:
            await self.outbox.private(self.reference, text_activity(text))
        except Exception as exc:  # noqa: BLE001 - not installed for them, a guest, the service down: say less, in public
            log.warning("could not reach the person in a 1:1 chat: %s", exc.__class__.__name__,
                        extra={"error": str(exc)[:200]})
            await self.send(mention_activity(ChannelAccount.model_validate(user), NOT_TOLD_PRIVATELY))
        return True

    async def _approver_ids(self, approval: ApprovalRecord) -> list[str]:
        """The Teams ids of the conversation's members who may approve (not the requester): their card
        refreshes to their own view with the buttons. Without the member list, "Review" still works."""
        if not self.core.policy.has_approvers():
            return []
        try:
            members = await self.outbox.members(self.reference)
        except Exception as exc:
            log.warning("could not list the conversation's members: %s", exc.__class__.__name__)
            return []
        return [m.id for m in members
                if m.id and m.aad_object_id and await self.core.refusal(approval, m.aad_object_id, "approve") is None]


class TeamsNotifier:
    """Posts into Teams conversations outside a request (restart notices, approval decisions, expiry), and holds
    alert threads in Teams channels (with the core, which their approvals need)."""

    platform = "teams"

    def __init__(self, outbox: Outbox, core: Core | None = None):
        self.outbox = outbox
        self.core = core
        # Teams display names of the people who pressed an alert card's button in this process (TeamsBot fills
        # it): an alert thread's reference names nobody, and the approval card a press posts names its requester
        self.names: dict[str, str] = {}

    # --- alert threads (bot.ports.AlertThreads) ----------------------------------------------------
    async def open_alert(self, destination: Destination, view: AlertView) -> AlertThread | None:
        """The root card, sent to the configured channel (a new thread); None when Teams did not take it."""
        channel = channel_reference(destination, self.outbox.auth)
        try:
            root_id = await self.outbox.send(channel, card_activity(alert_card(view), view.title))
        except Exception as exc:  # the next delivery of the group tries again
            log.warning("could not post an alert thread to Teams: %s %s", exc.__class__.__name__, str(exc)[:200],
                        extra={"alert_group": view.group_id})
            return None
        if not root_id:
            log.warning("Teams gave no id for the alert thread's root message", extra={"alert_group": view.group_id})
            return None
        thread = thread_reference(channel, root_id)
        conversation = thread["conversation"]
        key = ConversationKey(self.platform, conversation["tenantId"], destination.channel, conversation["id"])
        return AlertThread(key, {"activity_id": root_id, "reference": thread}, thread)

    async def update_alert(self, key: ConversationKey, message: dict[str, Any], view: AlertView) -> None:
        try:
            await self.outbox.update(message["reference"], message["activity_id"], card_activity(alert_card(view)))
        except Exception as exc:  # the line posted in the thread still tells
            log.warning("could not update an alert thread's root card: %s", exc.__class__.__name__,
                        extra={"alert_group": view.group_id})

    def thread_port(self, key: ConversationKey, message: dict[str, Any], request_id: str | None = None) -> TeamsPort:
        assert self.core is not None, "alert threads need the core (approval cards are remembered there)"
        return TeamsPort(self.outbox, self.core, message["reference"], names=self.names)

    async def say(
        self, conversation: Conversation, message: Answer | str, *, replace: dict[str, str] | None = None
    ) -> None:
        """Post into the conversation; with `replace` (a TeamsPort's `placeholder_ref`), the first activity
        replaces the placeholder (or ends the stream) it names, and is posted instead when Teams refuses."""
        reference = conversation.reference
        if not reference:
            log.warning("no conversation reference stored; cannot reach the Teams thread",
                        extra={"session_id": conversation.id})
            return
        activities = await message_activities(message)
        if replace and await self._replace(reference, replace, activities[0]):
            activities = activities[1:]
        for activity in activities:
            await self.outbox.send(reference, activity)

    async def _replace(self, reference: dict[str, Any], placeholder: dict[str, str], activity: Activity) -> bool:
        try:
            if placeholder.get("activity_id"):
                await self.outbox.update(reference, placeholder["activity_id"], activity)
            elif placeholder.get("stream_id"):  # a stream ends with its final message (Teams may have closed it)
                final = activity.model_copy()
                final.entities = [StreamInfo(stream_type="final", stream_id=placeholder["stream_id"])]
                await self.outbox.send(reference, final)
            else:
                return False
        except Exception as exc:
            log.warning("could not replace the placeholder (%s); posting instead", exc.__class__.__name__)
            return False
        return True

    async def approval_changed(self, approval: ApprovalRecord, conversation: Conversation | None) -> None:
        """The card is updated for everyone (the decision replaces the buttons), and a final outcome is
        posted in the conversation."""
        ref = approval.message_ref or {}
        reference = ref.get("conversation") or (conversation.reference if conversation else None)
        if not reference:
            log.warning("no conversation reference for the approval", extra={"approval_id": approval.id})
            return
        if ref.get("activity_id"):
            try:
                await self.outbox.update(reference, ref["activity_id"], approval_activity(approval))
            except Exception:  # the outcome below still tells the thread
                log.exception("could not update the approval card", extra={"approval_id": approval.id})
        outcome = approval_outcome(approval, approval_names(approval))
        if outcome:
            await self.outbox.send(reference, text_activity(outcome))
