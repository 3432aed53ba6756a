"""TeamsPort (the ReplyPort of one Teams request) and TeamsNotifier (reaches a Teams conversation later)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ActivityTypes, Attachment

from bot.answer import Answer
from integrations.teams.adapter import Outbox, send_in_turn
from integrations.teams.cards import (
    CARD_BUDGET,
    answer_cards,
    approval_card,
    approval_outcome,
    attachment,
    payload_size,
    text_cards,
)
from bot.ports import ApprovalRecord, Conversation, Core

log = logging.getLogger("srebot.teams")


def text_activity(text: str) -> Activity:
    return Activity(type=ActivityTypes.message, text=text)


def card_activity(card: dict[str, Any], summary: str | None = None) -> Activity:
    content = attachment(card)
    activity = Activity(
        type=ActivityTypes.message,
        attachments=[Attachment(content_type=content["contentType"], content=content["content"])],
    )
    if summary:
        activity.summary = summary[:200]  # the notification preview; the card itself has no plain text
    return activity


def message_activities(message: Answer | str) -> list[Activity]:
    """A message as the Teams activities it takes: one, or several when it is over the size limit."""
    if isinstance(message, str):
        if payload_size(message) <= CARD_BUDGET:
            return [text_activity(message)]
        return [card_activity(card, message) for card in text_cards(message)]
    return [card_activity(card, message.summary) for card in answer_cards(message)]


class TeamsPort:
    """The thread of one Teams request.

    While the HTTP turn is still open (`turn`), the first message goes out as a reply in that turn (the
    "Looking into …" acknowledgement); everything after it, and everything once the turn is over, is
    sent proactively through the stored ConversationReference. Progress updates the acknowledgement
    in place, at most once per `update_interval` seconds. Platform failures are logged, never raised."""

    def __init__(
        self,
        outbox: Outbox,
        core: Core,
        reference: dict[str, Any],
        *,
        turn: TurnContext | None = None,
        update_interval: float = 1.5,
    ):
        self.outbox = outbox
        self.core = core
        self.reference = reference
        self.update_interval = update_interval
        self.first_sent = asyncio.Event()
        self._turn = turn
        self._send_lock = asyncio.Lock()
        self._progress_lock = asyncio.Lock()
        self._placeholder_id: str | None = None
        self._placeholder_tried = False
        self._ack: str | None = None
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
            except Exception:
                log.exception("could not send to Teams")
                return None
            finally:
                self.first_sent.set()

    async def _update(self, activity_id: str, activity: Activity) -> None:
        try:
            await self.outbox.update(self.reference, activity_id, activity)
        except Exception:
            log.exception("could not update a Teams message")

    # --- ReplyPort -------------------------------------------------------------------------------
    async def progress(self, text: str) -> None:
        async with self._progress_lock:
            if not self._placeholder_tried:
                self._placeholder_tried = True
                self._ack = self._shown = text
                self._placeholder_id = await self.send(text_activity(text))
                self._updated_at = time.monotonic()
                return
            now = time.monotonic()
            if self._placeholder_id is None or text == self._shown or now - self._updated_at < self.update_interval:
                return  # throttled: Teams rate-limits edits, and the answer follows anyway
            self._updated_at = now
            self._shown = text
            await self._update(self._placeholder_id, text_activity(text))

    async def post(self, message: Answer | str) -> None:
        for activity in message_activities(message):
            await self.send(activity)
        await self._settle()

    async def _settle(self) -> None:
        """A placeholder left showing a progress step is set back to the acknowledgement, marked done."""
        async with self._progress_lock:
            if self._placeholder_id and self._ack and self._shown != self._ack:
                self._shown = self._ack
                await self._update(self._placeholder_id, text_activity(f"{self._ack} ✓"))

    async def ask_approval(self, approval: ApprovalRecord) -> None:
        activity_id = await self.send(card_activity(approval_card(approval), f"Approval needed: {approval.description}"))
        if activity_id is None:
            return
        try:
            await self.core.approval_posted(
                approval.id, {"activity_id": activity_id, "conversation": self.reference}
            )
        except Exception:
            log.exception("could not store the approval message reference")


class TeamsNotifier:
    """Posts into Teams conversations outside a request (restart notices, approval decisions, expiry)."""

    platform = "teams"

    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    async def say(self, conversation: Conversation, message: Answer | str) -> None:
        if not conversation.reference:
            log.warning("no conversation reference stored; cannot reach the Teams thread",
                        extra={"session_id": conversation.id})
            return
        for activity in message_activities(message):
            await self.outbox.send(conversation.reference, activity)

    async def approval_changed(self, approval: ApprovalRecord, conversation: Conversation | None) -> None:
        ref = approval.message_ref or {}
        reference = ref.get("conversation") or (conversation.reference if conversation else None)
        if not reference:
            log.warning("no conversation reference for the approval", extra={"approval_id": approval.id})
            return
        if ref.get("activity_id"):
            try:
                await self.outbox.update(reference, ref["activity_id"], card_activity(approval_card(approval)))
            except Exception:  # the outcome below still tells the thread
                log.exception("could not update the approval card", extra={"approval_id": approval.id})
        outcome = approval_outcome(approval)
        if outcome:
            await self.outbox.send(reference, text_activity(outcome))
