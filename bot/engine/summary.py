"""The summary: one paragraph that argues like a good SRE in the channel — the cause with its evidence, the change
correlation, what was ruled out, what is old news, what to do, and what could not be checked."""
from __future__ import annotations

from datetime import datetime, timedelta

from bot.answer import Recommendation
from bot.policy import NO_APPROVERS_HINT
from bot.engine.reasoning import Diagnosis
from bot.engine.text import (
    ago,
    clock,
    duration,
    join,
    lower_first,
)


# --- the summary ----------------------------------------------------------------------------------
def write_summary(
    d: Diagnosis,
    recommendations: list[Recommendation],
    *,
    approvers_configured: bool,
    problems: dict[str, str] | None = None,
    lead: str | None = None,
) -> str:
    """One paragraph: the cause with its evidence, the change correlation, what was ruled out, what to do,
    and what could not be checked. `problems` are the proposal failures by recommendation title."""
    sentences: list[str] = [lead] if lead else []
    service = d.service
    if not d.checked and not d.findings and d.failed:
        if all(error == "not configured" for error in d.failed.values()):
            return "No backend is configured, so nothing could be checked: " + ", ".join(d.failed) + "."
        return f"Nothing could be checked for {service}: " + "; ".join(f"{k} ({v})" for k, v in d.failed.items()) + "."
    if d.cause is not None:
        cause = d.cause
        state = "is failing" if cause.severity == "critical" else "is degraded"
        if cause.key == "unexplained":
            head = f"{service} {state}: " + "; ".join(cause.clauses) + "; I found no change, crash or dependency "
            head += "that explains it"
        else:
            head = f"{service} {state}, most likely because of {cause.text}: " + "; ".join(c for c in cause.clauses if c)
        sentences.append(head + ".")
        if d.correlation and d.correlation not in head:
            sentences.append(d.correlation + ".")
        for other in d.others[:2]:
            if other.clauses and other.clauses[0] and other.clauses[0] not in head:
                sentences.append(f"Also: {other.clauses[0]}.")
    elif not d.healthy:
        problems_found = [f.title for f in d.findings if f.severity in ("critical", "warning")]
        sentences.append(f"{service} needs a look: " + "; ".join(lower_first(p) for p in problems_found[:3]) + ".")
        fine = [c for c in d.checked if not c.startswith("no data")]
        if fine:
            sentences.append("Otherwise: " + "; ".join(fine) + ".")
    elif d.history:
        scope = " in what could be checked" if d.failed else ""
        sentences.append(f"{service} is healthy now{scope}: nothing currently fails. What happened: " + "; ".join(d.history[:3])
                         + ". Checked: " + "; ".join(d.checked) + ".")
    else:
        scope = " in what could be checked" if d.failed else ""
        sentences.append(f"No problems found in {service}{scope}: " + "; ".join(d.checked) + ".")
    if d.history and (d.cause is not None or not d.healthy):
        sentences.append("Earlier, not the cause now: " + "; ".join(d.history[:2]) + ".")
    if d.old_news:
        sentences.append("Old news, not the cause: " + "; ".join(d.old_news[:2]) + ".")
    if d.ruled_out:
        sentences.append("Ruled out: " + join([r.cause if i == 0 else lower_first(r.cause) for i, r in enumerate(d.ruled_out)]) + ".")
    if recommendations:
        todo = []
        for rec in recommendations:
            text = lower_first(rec.title)
            if rec.approval_id:
                text += f" (approval {rec.approval_id}" + (
                    ", for someone other than you to approve)" if approvers_configured else ")"
                )
            elif problems and rec.title in problems:
                text += f" (cannot be proposed: {problems[rec.title]})"
            todo.append(text)
        sentences.append("Recommended: " + "; ".join(todo) + ".")
        if any(r.action is not None for r in recommendations) and not approvers_configured:
            sentences.append(NO_APPROVERS_HINT)
    if d.failed:
        sentences.append(
            "Could not check " + join([f"{tool} ({error})" for tool, error in d.failed.items()]) + "."
        )
    return " ".join(s for s in sentences if s)


def changes_lead(d: Diagnosis, now: datetime, lookback: timedelta) -> str:
    """'Changes to checkout in the last 24 h: checkout v2.1.0 rolled out at 10:42 UTC (3 min ago) by alice; …'."""
    recent = [c for c in d.changes if now - c.at <= lookback]
    span = duration(lookback)
    if not recent:
        text = f"No changes to {d.service} in the last {span}"
        rollout = next((c for c in d.changes if c.rollout), None)
        if rollout is not None:
            text += f"; the last rollout ({rollout.what.removesuffix(' rolled out')}) was {ago(rollout.at, now)}"
        return text + "."
    items = [
        f"{c.what} at {clock(c.at)} ({ago(c.at, now)})" + (f" by {c.who}" if c.rollout and c.who else "")
        for c in recent[:5]
    ]
    more = f" and {len(recent) - 5} more" if len(recent) > 5 else ""
    return f"Changes to {d.service} in the last {span}: " + "; ".join(items) + more + "."
