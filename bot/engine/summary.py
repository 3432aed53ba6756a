"""The summary: one paragraph that argues like a good SRE in the channel — the cause with its evidence, the change
correlation, what was ruled out, what is old news, what to do, and what could not be checked."""
from __future__ import annotations

from datetime import datetime, timedelta

from bot.answer import Recommendation, Verdict
from bot.policy import NO_APPROVERS_HINT
from bot.engine.reasoning import Diagnosis
from bot.engine.text import (
    ago,
    clock,
    duration,
    join,
    lower_first,
)


# --- the verdict and the headline -----------------------------------------------------------------
def nothing_checked(d: Diagnosis) -> bool:
    return not d.checked and not d.findings and bool(d.failed)


def verdict(d: Diagnosis) -> Verdict:
    """failing / degraded from the cause (or the worst finding), healthy, or inconclusive when nothing could be
    checked."""
    if nothing_checked(d) or (not d.checked and not d.findings):
        return "inconclusive"
    if d.cause is not None:
        if d.cause.service_ok and d.cause.severity != "critical":
            return "healthy"  # what needs a look is next to it: the service itself serves
        return "failing" if d.cause.severity == "critical" else "degraded"
    if any(f.severity == "critical" for f in d.findings):
        return "failing"
    if d.healthy and d.reported and not d.history and not d.unfelt:
        return "inconclusive"  # the person sees something that nothing checked shows: not "healthy"
    return "degraded" if not d.healthy else "healthy"


def headline(d: Diagnosis, *, brief: bool = False) -> str:
    """The summary's first sentence: the state, its most likely cause and the evidence for it (`brief`: only the
    strongest piece of evidence, for the short view)."""
    service = d.service
    if nothing_checked(d):
        if all(error == "not configured" for error in d.failed.values()):
            return "No backend is configured, so nothing could be checked: " + ", ".join(d.failed) + "."
        return f"Nothing could be checked for {service}: " + "; ".join(f"{k} ({v})" for k, v in d.failed.items()) + "."
    if d.cause is not None:
        cause = d.cause
        state = "is failing" if cause.severity == "critical" else "is degraded"
        if cause.key == "unexplained":
            head = f"{service} {state}: " + "; ".join(cause.clauses) + "; I found no change, crash or dependency "
            return head + "that explains it."
        clauses = [c for c in cause.clauses if c][: 1 if brief else None]
        if verdict(d) == "healthy" and cause.unaffected:
            return (f"{service}'s users are not affected ({join(cause.unaffected)}); what fires is {cause.text}, which is "
                    "not user-impacting: " + "; ".join(clauses) + ". No action is needed now.")
        if verdict(d) == "healthy":
            return f"{service} is not failing; what needs a look is {cause.text}: " + "; ".join(clauses) + "."
        return f"{service} {state}, most likely because of {cause.text}: " + "; ".join(clauses).rstrip(".") + "."
    if not d.healthy:
        problems_found = [f.title for f in d.findings if f.severity in ("critical", "warning")]
        return f"{service} needs a look: " + "; ".join(lower_first(p) for p in problems_found[:3]) + "."
    scope = " in what could be checked" if d.failed else ""
    if d.unfelt:  # alerts fire, users do not feel them: say what fires, what shows users are fine, and the verdict
        happened = (" What happened: " + "; ".join(d.history[:3]) + ".") if d.history else ""
        return (f"{service}'s users are not affected ({join(d.unaffected)}); " + "; ".join(d.unfelt[:3])
                + " — not user-impacting now: no action is needed now." + happened)
    if d.history:  # recovered: say what happened, and that nothing fails now
        return (f"{service} is healthy now{scope}: nothing currently fails. What happened: " + "; ".join(d.history[:3])
                + ". Checked: " + "; ".join(d.checked) + ".")
    if d.reported:
        return (f"Nothing I checked shows what you report ({join(d.reported[:3])}) in {service}{scope}: "
                + "; ".join(d.checked) + ". Tell me where you see it (an endpoint, a caller, a time) and I will look "
                "there.")
    return f"No problems found in {service}{scope}: " + "; ".join(d.checked) + "."


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
    if nothing_checked(d):
        return headline(d)
    head = headline(d)
    sentences.append(head)
    if d.cause is not None:
        follows = d.cause.consequences if verdict(d) != "healthy" else []
        if follows:  # the symptoms after their cause, as what it does
            text = join(follows)
            sentences.append(text[0].upper() + text[1:] + (" follows" if len(follows) == 1 else " follow") + " from it.")
        if d.correlation and d.correlation not in head:
            sentences.append(d.correlation + ".")
        others = [o for o in d.others if o.clauses and o.clauses[0] and o.clauses[0] not in head
                  and not any(o.clauses[0].startswith(f) for f in follows)]
        for other in others[:2]:
            sentences.append(f"Also: {other.clauses[0]}.")
    elif not d.healthy:
        fine = [c for c in d.checked if not c.startswith("no data")]
        if fine:
            sentences.append("Otherwise: " + "; ".join(fine) + ".")
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
        urgency = " when convenient, not urgent" if d.cause is not None and d.cause.unaffected else ""
        sentences.append(f"Recommended{urgency}: " + "; ".join(todo) + ".")
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
