"""The core's boundary with the platforms: what an integration hands the core (a Request with its ReplyPort),
what it may ask of the core (Core), and what the core calls back (Notifier)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.answer import Answer
from bot.config import Settings
from bot.policy import Policy
from sessions.store import (
    Actor, ApprovalRecord, ApprovalState, Conversation, ConversationKey, DatabaseError, Origin, TurnRecord, new_id,
)

if TYPE_CHECKING:
    from bot.alerts.routing import Destination
    from bot.alerts.view import AlertView, Investigation

Progress = Callable[[str], Awaitable[None]]


class ReplyPort(Protocol):
    """The thread a request came from. Implementations never raise for a platform failure they can log."""

    async def progress(self, text: str) -> None:
        """Show a status line: the first call puts a placeholder in the thread, later calls update it."""

    async def post(self, message: Answer | str) -> None:
        """Deliver the final answer (or a plain message) to the thread."""

    async def ask_approval(self, approval: ApprovalRecord) -> None:
        """Post an approval message with Approve / Reject for `approval`."""

    async def tell_privately(self, text: str) -> bool:
        """Tell only the person who asked (why a proposal was refused): a Slack ephemeral message, a Teams 1:1
        chat. Where that fails, they are addressed in the thread without `text`'s details. True when they
        were told one way or the other; False when there is no one to tell privately (the terminal, an
        alert thread), so the answer may say `text` itself."""


class Notifier(Protocol):
    """Reaches a platform outside a request: crash recovery notices, approval decisions and expiry."""

    platform: str

    async def say(self, conversation: Conversation, message: Answer | str) -> None:
        """Post into the conversation's thread. Notifiers whose replies post a placeholder also take
        `replace=` (the port's `placeholder_ref`, kept with the turn) and replace that message."""

    async def approval_changed(self, approval: ApprovalRecord, conversation: Conversation | None) -> None:
        """Update the approval message to show its new status (who decided, when, the outcome)."""


@dataclass(frozen=True)
class AlertThread:
    """An alert thread a platform opened: its conversation key, what `update_alert` and `thread_port` need
    (kept with the alert group), and how to reach the thread later (kept with its session), if the platform
    needs one (a Teams ConversationReference)."""

    key: ConversationKey
    message: dict[str, Any]
    reference: dict[str, Any] | None = None


@runtime_checkable
class AlertThreads(Protocol):
    """A Notifier that can also hold alert threads: a root message per alert group, kept up to date."""

    platform: str

    async def open_alert(self, destination: Destination, view: AlertView) -> AlertThread | None:
        """Post the root message at `destination` (configured, never taken from an alert); the thread it
        starts, or None when it could not be posted."""

    async def update_alert(self, key: ConversationKey, message: dict[str, Any], view: AlertView) -> None:
        """Rewrite the root message to show `view` (resolved, new alerts)."""

    def thread_port(self, key: ConversationKey, message: dict[str, Any], request_id: str | None = None) -> ReplyPort:
        """A ReplyPort into the thread, for an investigation or an approval started outside a platform event."""


@dataclass
class Decision:
    """The outcome of an approve or reject, for the person who clicked."""

    accepted: bool
    message: str  # what the person who clicked is told (privately when refused)
    approval: ApprovalRecord | None = None


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
    # who asks, as bot.policy sees them: another organisation's person (Slack Connect, a Teams guest or
    # external tenant), the group ids the platform vouches for, and the path (message, command, alert)
    external: bool = False
    groups: frozenset[str] = frozenset()
    via: str = "message"
    unverified: str = ""  # why their organisation could not be checked (bot.policy: reads only)

    # an alert-driven investigation: the alerts the engine starts from (bot.alerts)
    alert: Investigation | None = None

    @property
    def actor(self) -> Actor:
        key = self.key
        return Actor(self.user, key.platform, key.workspace, key.channel, self.via, self.external, self.groups,
                     self.unverified)

    def origin(self, session_id: str | None) -> Origin:
        """Who asks, from which thread: what an approval proposed by this request remembers."""
        return Origin(self.user, self.key.platform, session_id, self.request_id, self.actor)


@dataclass(frozen=True)
class RecentAlert:
    """An alert group as a home view lists it: what its root message says, and where its thread is."""

    view: AlertView
    thread: ConversationKey | None  # None while its thread is being opened (or when it never got one)
    last_seen: datetime


@dataclass
class Overview:
    """What one person's home view shows: the requests being worked on, the pending approvals with whether this
    person may approve each, and the alert groups heard of most recently."""

    investigations: list[TurnRecord]
    approvals: list[tuple[ApprovalRecord, bool]]
    alerts: list[RecentAlert] = field(default_factory=list)


class Core(Protocol):
    """What a platform integration may ask of the bot: its settings, to take a request, what is in flight,
    to decide an approval, and the few facts of its threads the database keeps."""

    settings: Settings
    policy: Policy  # who may ask, propose and approve (bot.policy): ask it before taking a request


    @property
    def ready(self) -> bool:
        """The database answered and requests are taken; until then people are told the bot cannot work yet."""

    def submit(self, request: Request) -> str:
        """Queue a request; its answer goes to `request.port`. Returns the request id at once."""

    def in_flight(self) -> list[Request]:
        """The requests this process has queued or running."""

    async def decide(
        self, approval_id: str, user: str | Actor, decision: str, *, platform: str | None = None
    ) -> Decision:
        """Approve or reject on behalf of `user` (an Actor: who, where, how; or a user id on `platform`), by
        the one decision path (policy, four eyes, once)."""

    def taking(self) -> AbstractContextManager[None]:
        """Around one incoming message's intake: its database steps (claim, session, the turn recorded when it is
        submitted) share one deadline, so a slow database costs a person one wait, not one per step."""

    async def claim(self, platform: str, *event_ids: str) -> bool:
        """True for the first delivery of a platform event (on any replica); False for a repeat.
        This and the other database facts raise DatabaseError when the database does not answer in time."""

    async def session_of(self, key: ConversationKey) -> str | None:
        """The session of a thread the bot is part of, or None."""

    async def remember_reference(self, session_id: str, reference: dict[str, Any]) -> None:
        """Keep the freshest way to reach a thread (e.g. a Teams ConversationReference)."""

    async def approval_posted(self, approval_id: str, message_ref: dict[str, Any]) -> None:
        """Remember where an approval's message is, so a decision can update it."""

    async def approval(self, approval_id: str) -> ApprovalRecord | None:
        """An approval as it is now (to show it to someone)."""

    async def refusal(self, approval: ApprovalRecord, user: str | Actor, decision: str) -> str | None:
        """Why `user` (an Actor, or a user id on the approval's platform) may not make this decision on a
        pending approval, None when they may (which buttons to show whom); deciding still goes through
        `decide`."""

    async def press_alert(self, group_id: str, button: str, actor: Actor) -> Decision:
        """A button of an alert thread's root message ("silence", "ack", "investigate") pressed by `actor`
        (via "alert_thread"); the policy decides whether they may, and a refusal is the Decision's message,
        for them only."""

    async def alert_view(self, group_id: str) -> AlertView | None:
        """What an alert thread's root message shows now (to answer a button press with it)."""

    def add_notifier(self, notifier: Notifier) -> None:
        """Register a platform's Notifier, for messages outside a request."""

    async def answer_of(self, request_id: str) -> Answer | None:
        """The answer a request got, as it was given (for "Show details"); None when there is none."""

    async def rate(self, request_id: str, user: str, rating: str) -> bool:
        """Store `user`'s rating (good | bad) with the answer to `request_id`; False when there is no such answer."""

    async def overview(self, user: str, limit: int = 20) -> Overview:
        """Open investigations, pending approvals and recent alerts, for `user`."""


__all__ = [
    "AlertThread",
    "AlertThreads",
    "Answer",
    "Actor",
    "ApprovalRecord",
    "ApprovalState",
    "Conversation",
    "ConversationKey",
    "Core",
    "DatabaseError",
    "Decision",
    "Notifier",
    "Overview",
    "Progress",
    "RecentAlert",
    "ReplyPort",
    "Request",
    "TurnRecord",
    "new_id",
]
