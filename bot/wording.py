"""What the bot says the same way on every platform: the help text, and how a request is quoted back."""

from __future__ import annotations

HELP_TEXT = """I'm srebot. Ask me in a thread, DM me, or use /sre:
• diagnose <service> — why is it failing or slow (metrics, logs, Kubernetes, changes, incidents)
• logs <service> — top error patterns in the window
• metrics <service> — golden signals; promql: <expr> for a free query
• pods <service> — deployment, rollout and pod state
• capacity <service> — CPU and memory against requests and limits
• cost [service] [7d|30d] — spend by service, period over period
• incidents / alerts — open incidents, firing alerts (then diagnosed)
• restart <service> / scale <service> <replicas> / rollback <service> — proposed, run after someone else approves
• ack incident <id> — acknowledge an incident (after approval)
• status — work in flight · cancel — stop the running request in this thread
Follow-ups in a thread need no mention: "and its logs?", "what changed?"."""


def short(text: str, limit: int = 80) -> str:
    """One line of at most `limit` characters, for quoting a request or a message back."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


NOT_READY = "I can't work yet: my database is not reachable. Ask again in a minute."


def database_trouble(what: str, exc: BaseException) -> str:
    """What a person is told when the database kept the bot from doing `what` (e.g. "take this request")."""
    return f"I could not {what}: my database is not answering ({exc}). Ask again in a minute."
