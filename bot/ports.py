"""What an integration hands the core (a Request with its ReplyPort) and what the core calls back (Notifier)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.answer import Answer
from sessions.store import ApprovalRecord, ApprovalState, Conversation, ConversationKey, Origin, new_id

Progress = Callable[[str], Awaitable[None]]


class ReplyPort(Protocol):
    """The thread a request came from. Implementations never raise for a platform failure they can log."""

    async def progress(self, text: str) -> None:
        """Show a status line: the first call puts a placeholder in the thread, later calls update it."""

    async def post(self, message: Answer | str) -> None:
        """Deliver the final answer (or a plain message) to the thread."""

    async def ask_approval(self, approval: ApprovalRecord) -> None:
        """Post an approval message with Approve / Reject for `approval`."""


class Notifier(Protocol):
    """Reaches a platform outside a request: crash recovery notices, approval decisions and expiry."""

    platform: str

    async def say(self, conversation: Conversation, message: Answer | str) -> None:
        """Post into the conversation's thread."""

    async def approval_changed(self, approval: ApprovalRecord, conversation: Conversation | None) -> None:
        """Update the approval message to show its new status (who decided, when, the outcome)."""


@dataclass
class Request:
    """One message for the bot, already translated from its platform."""

    key: ConversationKey
    user: str
    text: str
    port: ReplyPort
    request_id: str = field(default_factory=lambda: new_id("req"))
    # what a Notifier needs to reach this thread later (e.g. a Teams ConversationReference)
    reference: dict[str, Any] | None = None
    received_at: float = field(default_factory=time.monotonic)

    def origin(self, session_id: str | None) -> Origin:
        """Who asks, from which thread: what an approval proposed by this request remembers."""
        return Origin(self.user, self.key.platform, session_id, self.request_id)


__all__ = [
    "Answer",
    "ApprovalRecord",
    "ApprovalState",
    "Conversation",
    "ConversationKey",
    "Notifier",
    "Progress",
    "ReplyPort",
    "Request",
]
