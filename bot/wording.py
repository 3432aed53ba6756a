"""What the bot says the same way on every platform: how an approval stands and how it ended, and how a request
is quoted back. A platform passes how it shows a person (a Slack mention) and how it escapes free text."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import exc as sa_exc

from sessions.store import ApprovalRecord, ApprovalState
from tools.base import connect_reason

Show = Callable[[str], str]

APPROVAL_NEEDED = "Approval needed"
FOUR_EYES = "someone other than the requester must approve"

_STATUS = {
    ApprovalState.PENDING: "⏳ Waiting for someone other than the requester to approve",
    ApprovalState.APPROVED: "✅ Approved by {who} {when} · running…",
    ApprovalState.EXECUTED: "✅ Approved by {who} {when} · {result}",
    ApprovalState.FAILED: "❌ Approved by {who} {when} · failed: {result}",
    ApprovalState.REJECTED: "🚫 Rejected by {who} {when} · nothing was changed",
    ApprovalState.EXPIRED: "⌛ Expired {when} without a decision · nothing was changed",
}
_OUTCOME = {
    ApprovalState.EXECUTED: "✅ {action} done (approved by {who}): {result}",
    ApprovalState.FAILED: "❌ {action} failed (approved by {who}): {result}",
    ApprovalState.REJECTED: "🚫 {action} was rejected by {who}; nothing was changed.",
    ApprovalState.EXPIRED: "⌛ {action} expired without a decision; nothing was changed.",
}


def _same(text: str) -> str:
    return text


def clock(moment: datetime | None) -> str:
    return f"{moment:%H:%M} UTC" if moment else ""


def approval_status(approval: ApprovalRecord, *, person: Show = _same, text: Show = _same) -> str:
    """"✅ Approved by bob 10:51 UTC · rollout restarted for shop/checkout", and the like for every state."""
    return _STATUS[approval.status].format(
        who=person(approval.decided_by) if approval.decided_by else "someone",
        when=clock(approval.decided_at or approval.finished_at),
        result=text(approval.result or "done"),
    )


def approval_outcome(
    approval: ApprovalRecord, *, action: str | None = None, person: Show = _same, text: Show = _same
) -> str | None:
    """The line said in the thread once an approval is final ("✅ scale shop/checkout done (approved by bob): …");
    None while it is not. `action` is how the platform shows "kind target"."""
    template = _OUTCOME.get(approval.status)
    if template is None:
        return None
    return template.format(
        action=action or text(f"{approval.kind} {approval.target}"),
        who=person(approval.decided_by) if approval.decided_by else "someone",
        result=text(approval.result or "done"),
    )


def short(text: str, limit: int = 80) -> str:
    """One line of at most `limit` characters, for quoting a request or a message back."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


NOT_READY = "I can't work yet: my database is not reachable. Ask again in a minute."
# said in the thread, to the person, when a refusal could not reach them privately: no details in public
NOT_TOLD_PRIVATELY = (
    "I did not propose that: you may not here, and I could not reach you privately to say why. "
    "Message me directly and ask there to see the reason."
)
CHECK_HINT = "`srebot check` shows each backend's state"


def database_trouble(what: str, exc: BaseException) -> str:
    """What a person is told when the database kept the bot from doing `what` (e.g. "take this request"): what
    failed in a few words, never the exception's text (that goes to the log, with the request id)."""
    return (f"I could not {what}: I could not reach my database ({database_reason(exc)}) — {CHECK_HINT}. "
            "Ask again in a minute.")


def database_reason(exc: BaseException) -> str:
    """'timed out', 'connection refused', 'all its connections are busy', … read from the exception and its causes
    (a DatabaseError's `cause`, SQLAlchemy's `orig`, the chained ones)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, sa_exc.TimeoutError):  # the pool's wait, not the server's
            return "all its connections are busy"
        if isinstance(current, TimeoutError):
            return "timed out"
        if isinstance(current, (socket.gaierror, ConnectionError)) or (isinstance(current, OSError) and current.errno):
            return connect_reason(current)
        state = str(getattr(current, "sqlstate", None) or getattr(current, "pgcode", None) or "")
        if state.startswith("57P"):
            return "it is restarting"
        if state.startswith("53"):
            return "it is out of resources"
        pending += [getattr(current, "cause", None), getattr(current, "orig", None), current.__cause__,
                    current.__context__]
    return "it did not answer"
