"""Reasoning over the findings: change correlation, the likely cause and how many independent sources agree on it,
what is ruled out, recommended actions and confidence.

Pure functions, unit-testable: the engine gathers an `Evidence`, calls `diagnose()`, proposes the `Plan`s it
returns, then has bot.engine.summary write the paragraph a person reads first.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.answer import SEVERITY_RANK, Action, Finding, RuledOut
from bot.engine.findings import (
    CORRELATION,
    world_of,
    DIAGNOSIS_TOOLS,
    SKEW,
    Change,
    Evidence,
    KubeView,
    Scored,
    alert_findings,
    already_bad,
    asked_status_findings,
    change_findings,
    event_findings,
    checked,
    collect_changes,
    first_onset,
    incident_findings,
    is_new,
    log_findings,
    pattern_text,
    scored,
    severity_of,
    stale_alerts,
    unfelt_alerts,
    strip_prefix,
    signal_findings,
    signal_title,
    warn_level,
)
from tools.control_plane import mentions
from bot.engine.text import (
    RISING,
    ago,
    clock,
    duration,
    join,
    label,
    lower_first,
    percent,
    short,
    tags,
    value_text,
)
from bot.engine import causes as catalogue
from bot.engine.causes.base import ERRORS, SLOW, Plan, Verdict
from bot.engine.causes.change import CHANGE_SYMPTOMS, relation
from bot.engine.intents import symptoms as reported_symptoms
from tools.logs import LogPattern
from tools.metrics import Signal

# Where the causes that are not catalogue families stand among the catalogue's ranks (lower: nearer the root).
_RANK = {"bad_rollout": 0, "config_change": 3, "cpu_saturation": 70, "kube_events": 90, "unexplained": 99} | catalogue.RANK



@dataclass
class Cause:
    key: str  # a catalogue family or one of _RANK
    text: str  # "the v2.1.0 rollout (revision 7 at 10:42 UTC by alice)"
    clauses: list[str]  # the evidence, as it reads in a sentence
    sources: set[str]  # independent tools that agree on it
    severity: str
    plans: list[Plan] = field(default_factory=list)
    subjects: set[str] = field(default_factory=set)  # the objects or hosts it is about
    service_ok: bool = False  # the service itself is not impaired by it (Verdict.service_ok)
    unaffected: list[str] = field(default_factory=list)  # the healthy user-facing signals (Verdict.unaffected)
    consequences: list[str] = field(default_factory=list)  # what follows from it, for the lead cause (_consequences)


@dataclass
class Diagnosis:
    service: str
    findings: list[Finding]
    ruled_out: list[RuledOut]
    plans: list[Plan]
    cause: Cause | None
    others: list[Cause]
    confidence: float
    healthy: bool
    checked: list[str]  # what was looked at and found fine, as clauses
    old_news: list[str]
    history: list[str]  # what happened and is over (recovered, rolled back, a flap): said as history
    changes: list[Change]
    correlation: str | None
    failed: dict[str, str]
    onset: Signal | None = None  # the unhealthy signal that turned bad first inside the window
    correlated: Change | None = None  # the change shortly before that onset
    reported: list[str] = field(default_factory=list)  # the symptoms the question reports ('401', 'errors')
    # firing alerts no cause explains while the signals users feel are healthy, as clauses, and those signals
    unfelt: list[str] = field(default_factory=list)
    unaffected: list[str] = field(default_factory=list)



# --- the diagnosis --------------------------------------------------------------------------------
def diagnose(ev: Evidence) -> Diagnosis:
    items: list[Scored] = []
    signals = {s.name: s for s in ev.signals or []}
    kube = KubeView(ev) if ev.report is not None else None
    verdicts = catalogue.detect(world_of(ev))
    current = [v for v in verdicts if v.current]
    linked = catalogue.mechanisms(current)  # before the findings: a mechanism takes its symptoms' severity
    history = [v for v in verdicts if not v.current]
    items += [_verdict_finding(v) for v in verdicts]
    events = event_findings(ev, world_of(ev), " ".join(e for v in verdicts for e in v.evidence)) \
        if ev.snapshot is not None else []
    items += events
    items += signal_findings(ev)
    if kube is not None:
        items += kube.findings()
    unhealthy = [s for s in signals.values() if s.health in ("warning", "critical")]
    asked = asked_status_findings(ev)
    items += asked
    troubled = bool(unhealthy) or (kube is not None and kube.failing) or bool(current) or bool(asked)
    patterns = list(ev.logs.patterns) if ev.logs else []
    items += log_findings(ev, patterns, troubled)
    changes = collect_changes(ev, kube)
    items += change_findings(ev, changes)
    items += incident_findings(ev)

    onset_signal = first_onset(ev, unhealthy)
    correlated = _correlate(onset_signal, changes)
    correlation = None
    if correlated is not None and onset_signal is not None:
        correlation = _correlation_text(onset_signal, correlated)
        items.append(
            scored(
                severity_of(onset_signal.health),
                "engine",
                correlation,
                evidence=f"{onset_signal.query} first reached {value_text(onset_signal, warn_level(onset_signal))} at "
                f"{clock(onset_signal.onset)}; {correlated.detail}",
                weight=5,
                tag="correlation",
            )
        )

    preceding = _preceding(ev, changes, _trouble_start(ev, unhealthy, onset_signal))
    causes = _causes(ev, kube, signals, unhealthy, patterns, changes, correlated, onset_signal, current, preceding,
                     [e.finding for e in events if e.finding.severity == "warning"])
    serving = _still_serving(ev, kube, signals)
    if serving is not None:  # a new revision that cannot start is a stuck rollout, not an outage
        for c in causes:
            c.severity = "warning" if c.severity == "critical" else c.severity
    symptoms = {symptom.family for symptom, _ in linked}
    causes.sort(key=lambda c: (SEVERITY_RANK[c.severity], c.key in symptoms, _RANK.get(c.key, 50), -len(c.sources)))
    cause = causes[0] if causes else None
    if cause is not None and serving is not None:
        cause.clauses.append(serving)
    if cause is not None:
        cause.consequences = _consequences(ev, cause, linked, unhealthy)
    others = causes[1:]
    items += alert_findings(ev, cause.subjects if cause else set(), cause.text if cause else None)
    for item in items:
        if cause is not None and item.tag and item.tag in _TAGS.get(cause.key, ()):
            item.weight += 10 * len(cause.sources)

    ruled_out = _ruled_out(ev, kube, signals, unhealthy, cause, changes, onset_signal, preceding) \
        if (cause or troubled) else []
    ruled_out = _verdict_ruled_out(cause, current, history) + ruled_out
    if ev.snapshot is not None and ev.snapshot.notes:
        items.append(scored("info", "kubernetes", "Not read: " + "; ".join(ev.snapshot.notes[:6]),
                            evidence="Kubernetes API", tag="notes"))
    ruled_out = list({r.cause.lower(): r for r in reversed(ruled_out)}.values())[::-1]
    plans = _plans(ev, kube, cause, others)
    # the cause's own finding first, then the worst: a reader takes the first finding for the answer
    lead = cause.clauses[0].lower() if cause is not None and cause.clauses else None
    findings = [
        s.finding
        for s in sorted(items, key=lambda s: (s.finding.title.lower() != lead, SEVERITY_RANK[s.finding.severity],
                                              -s.weight))
    ]
    healthy = not any(f.severity in ("critical", "warning") for f in findings)
    quiet, unaffected = unfelt_alerts(ev) if cause is None and healthy else ([], [])
    return Diagnosis(
        service=ev.service,
        findings=findings,
        ruled_out=ruled_out,
        plans=plans,
        cause=cause,
        others=others,
        confidence=_confidence(ev, cause, healthy),
        healthy=healthy,
        checked=checked(ev, kube, signals, troubled or not healthy),
        old_news=kube.old_news() if kube else [],
        history=[v.title for v in history] + [
            f"alert {a.name} still fires for that spike and resolves by itself once its rule's window no longer holds "
            "it: no action is needed now" for a in (stale_alerts(ev) if cause is None and healthy else [])],
        changes=changes,
        correlation=correlation,
        failed=dict(ev.failed),
        onset=onset_signal,
        correlated=correlated,
        reported=reported_symptoms(ev.question),
        unfelt=[f"alert {a.name} ({a.severity}) fires on {a.resource_name or ev.service}"
                + (f": {short(a.message, 160).rstrip('.')}" if a.message else "") for a in quiet],
        unaffected=unaffected if quiet else [],
    )


# which finding tags support which cause (for ranking: the cause's evidence first within a severity)
_TAGS: dict[str, tuple[str, ...]] = {
    "bad_rollout": ("pods", "correlation", "rollout", "error_rate", "latency_p99", "logs", "availability", "audit"),
    "config_change": ("correlation", "audit", "error_rate", "latency_p99", "logs"),
    "change": ("correlation", "audit", "error_rate", "latency_p99", "logs"),
    "oom": ("oom", "memory_ratio", "pods", "availability", "logs"),
    "image_pull": ("pods", "availability", "events"),
    "config_error": ("pods", "availability", "events"),
    "crash_loop": ("pods", "availability", "logs", "restarts"),
    "scheduling": ("events", "availability"),
    "dependency": ("logs", "error_rate", "latency_p99"),
    "cpu_saturation": ("cpu_ratio", "latency_p99"),
    "stuck": ("stuck", "availability"),
    "unexplained": ("error_rate", "latency_p99", "cpu_ratio", "memory_ratio", "restarts"),
}


def _verdict_finding(verdict: Verdict) -> Scored:
    """A catalogue verdict as a finding: what is wrong, with the evidence that shows it."""
    severity = verdict.severity if verdict.current else "info"
    return scored(severity, "kubernetes" if "kubernetes" in verdict.sources else sorted(verdict.sources)[0],
                  verdict.title, evidence="; ".join(verdict.evidence) or None, weight=4, tag=verdict.family)


# What the causes that are not catalogue families produce (the catalogue's are Rule.explains): a bad rollout or a
# change can fail and slow answers; CPU saturation slows them.
_EXPLAINS = {"bad_rollout": (ERRORS, SLOW), "config_change": (ERRORS, SLOW), "cpu_saturation": (SLOW,)} \
    | catalogue.EXPLAINS
# The user-facing signal that shows each effect.
_SHOWN_BY = {ERRORS: "error_rate", SLOW: "latency_p99"}


def _consequences(ev: Evidence, cause: Cause, linked: list[tuple[Verdict, Verdict]], unhealthy: list[Signal]) -> list[str]:
    """What follows from the cause, as short clauses: the user-facing signals its effects show ("error rate 21%"),
    the symptoms the catalogue tied to it ("3 of 3 pods not ready: readiness probe … fails") and the alerts firing on
    the service — said after the cause, as its consequences, not beside it as more causes."""
    effects = _EXPLAINS.get(cause.key, ())
    shown = {_SHOWN_BY[e] for e in effects if e in _SHOWN_BY}
    out = [f"{lower_first(label(s.name))} {value_text(s)}" for s in _call_signals(unhealthy) if s.name in shown]
    out += [symptom.title.split("; ")[0] for symptom, mechanism in linked if mechanism.family == cause.key]
    out += [f"alert {a.name}" for a in ev.alerts if (a.resource_name or ev.service) in (ev.service, ev.deployment)
            or a.resource_name in cause.subjects]
    said = " ".join(cause.clauses).lower()
    return [c for c in dict.fromkeys(out) if c.lower() not in said]


def _verdict_ruled_out(cause: Cause | None, current: list[Verdict], history: list[Verdict]) -> list[RuledOut]:
    """What the leading verdict rules out, and history that is not the cause now."""
    out = []
    lead = next((v for v in current if cause is not None and v.family == cause.key), None)
    for what, why in lead.ruled_out if lead else []:
        out.append(RuledOut(cause=what, why=why))
    # with nothing failing now there is no cause to rule history out of: it is said as what happened instead
    for verdict in history if cause is not None else []:
        out.append(RuledOut(cause=verdict.cause[0].upper() + verdict.cause[1:], why=verdict.title))
    return out


def _correlate(signal: Signal | None, changes: list[Change]) -> Change | None:
    """The latest change shortly before the signal turned bad."""
    if signal is None or signal.onset is None:
        return None
    for change in changes:  # newest first
        if change.at - SKEW <= signal.onset and signal.onset - change.at <= CORRELATION:
            return change
    return None


def _correlation_text(signal: Signal, change: Change) -> str:
    """'Errors rose 2 min after checkout v2.1.0 rolled out at 10:42 UTC by alice'."""
    assert signal.onset is not None
    word = RISING.get(signal.name, label(signal.name))
    gap = signal.onset - change.at
    when = f"{duration(gap)} after" if gap >= timedelta(seconds=60) else "right after"
    by = f" by {change.who}" if change.rollout and change.who else ""
    return f"{word} rose {when} {change.what} at {clock(change.at)}{by}"


# --- causes ---------------------------------------------------------------------------------------
def _causes(
    ev: Evidence,
    kube: KubeView | None,
    signals: dict[str, Signal],
    unhealthy: list[Signal],
    patterns: list[LogPattern],
    changes: list[Change],
    correlated: Change | None,
    onset: Signal | None,
    verdicts: list[Verdict],
    preceding: list[Preceding],
    events: list[Finding],
) -> list[Cause]:
    causes: list[Cause] = [
        # a metric's evidence is its PromQL: the title says what it measured, the finding keeps the query
        Cause(v.family, v.cause, [v.title] + [e for e in v.evidence if not e.startswith("metric ")][:2],
              set(v.sources), v.severity, list(v.plans), set(v.subjects),
              v.service_ok, list(v.unaffected))
        for v in verdicts
    ]
    leading = min(verdicts, key=lambda v: (SEVERITY_RANK[v.severity], _RANK.get(v.family, 50)), default=None)
    worst = min(unhealthy, key=lambda s: (SEVERITY_RANK[severity_of(s.health)], s.name != "error_rate"), default=None)
    target = f"{ev.namespace}/{ev.deployment}"
    kube_title = kube.failure_title() if kube else None
    kube_severity = "critical" if kube and kube.report.ready < max(1, math.ceil(kube.report.desired / 2)) else "warning"
    crash_line = kube.crash_line() if kube else None

    def log_clause(since: datetime | None = None) -> tuple[str | None, bool]:
        """What the logs say (the crashed container's last words, the top pattern new since `since`), and
        whether the logs agree."""
        said = [f"the crashed container's log says “{crash_line}”"] if crash_line else []
        fresh = [p for p in patterns if since is None or p.first_seen >= since - SKEW]
        if since is not None and ev.logs is not None and since < ev.logs.start:
            fresh = []  # the change was before the logs read: cannot say the pattern is new
        if fresh:
            p = fresh[0]
            said.append(f"the logs show “{pattern_text(p)}” ×{p.count}" + (" since then" if since else ""))
        return ("; ".join(said) or None), bool(said)

    # a fresh rollout that is unhealthy (a restart of the same template is no new code: what its pods read from
    # outside it changed, and the catalogue's rules say what)
    if kube is not None and kube.fresh and kube.current is not None and kube.previous is not None \
            and not kube.restart_only():
        rollout = next((c for c in changes if c.rollout), None)
        pods_bad = bool(kube.failing) or bool(leading and leading.severity == "critical") or any(
            c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded" for c in kube.report.conditions
        )
        metrics_after = correlated is not None and correlated.rollout
        if pods_bad or metrics_after:
            sources, clauses = set(), []
            if pods_bad:
                sources.add("kubernetes")
                clauses.append(lower_first(leading.title if leading else kube_title
                                           or f"the rollout of {kube.revision_text()} is stuck"))
            clauses += [lower_first(signal_title(s)) for s in _call_signals(unhealthy)[:2]]
            if not _call_signals(unhealthy) and worst is not None:
                clauses.append(lower_first(signal_title(worst)))
            if metrics_after:
                sources.add("metrics")
            text, agrees = log_clause(rollout.at if rollout else None)
            if text:
                clauses.append(text)
            if agrees:
                sources.add("logs")
            if rollout is not None and rollout.who:
                sources.add("control_plane")
            by = f" by {rollout.who}" if rollout and rollout.who else ""
            at = f" at {clock(rollout.at)}" if rollout else ""
            severity = "critical" if (pods_bad and (kube_severity == "critical" or (
                leading is not None and leading.severity == "critical"))) or (
                worst is not None and worst.health == "critical") else "warning"
            plans = []
            if kube.previous is not None:
                plans.append(
                    Plan(
                        f"Roll back {ev.service} to revision {kube.previous.number} "
                        f"(image {tags(kube.previous.images)})",
                        Action(kind="rollback", target=target),
                    )
                )
            plans += leading.plans if leading else []
            causes.append(
                Cause(
                    "bad_rollout",
                    f"the {tags(kube.current.images)} rollout (revision {kube.current.number}{at}{by})",
                    clauses,
                    sources,
                    severity,
                    plans,
                )
            )

    # a control-plane change shortly before the signals turned bad (unless a rule already read it for its cause)
    explained_changes = {s for v in verdicts if v.family == "change" for s in v.subjects}
    if correlated is not None and not correlated.rollout and onset is not None \
            and not any(s and s in correlated.what for s in explained_changes):
        text, agrees = log_clause(correlated.at)
        tied = next((p for p in preceding if p.change is correlated), None)
        causes.append(
            Cause(
                "config_change",
                correlated.cause,
                [lower_first(signal_title(onset))] + ([text] if text else [])
                + ([f"{correlated.what} concerns it: {tied.relation}"] if tied is not None else []),
                {"control_plane", "metrics"} | ({"logs"} if agrees else set()),
                severity_of(onset.health),
                [_change_plan(ev, tied) if tied is not None
                 else Plan(f"Review {correlated.cause} and revert it if it was not meant to do this")],
            )
        )

    # any other change that came shortly before the trouble, whatever its kind, when no rule read it for its cause: the
    # leading suspect when nothing else explains the trouble, else said beside the cause
    told = {c.text for c in causes}
    fresh = [p for p in preceding if p.change.cause not in told and p.change is not correlated
             and not any(s and s in p.change.what for s in explained_changes)]
    if fresh:
        first = fresh[0]
        alone = not causes
        gap = duration(first.before) if first.before >= timedelta(minutes=1) else "less than a minute"
        clauses = [f"{first.change.what} at {clock(first.change.at)}, {gap} before the trouble began "
                   f"({first.relation})"]
        if first.line:
            clauses.append(f"the logs then show “{short(first.line, 160)}”")
        if alone and worst is not None:
            clauses.append(lower_first(signal_title(worst)))
        elif alone:  # no signal shows the trouble: the alert that does
            clauses += [f"alert {a.name} firing since {clock(a.fired_at)}: {short(a.message or '', 140)}"
                        for a in ev.alerts[:1] if a.fired_at is not None]
        causes.append(Cause(
            "config_change", first.change.cause, clauses,
            {"control_plane"} | ({"logs"} if first.line else set()) | ({"metrics"} if worst is not None else set()),
            (severity_of(worst.health) if worst is not None else "warning") if alone else "info",
            [_change_plan(ev, first)],
            {first.change.entry.resource_name or ""} if first.change.entry else set()))

    cpu = signals.get("cpu_ratio")
    throttled = any(v.family == "cpu_throttling" for v in verdicts)  # the limit, not the load: scaling cannot help
    if cpu is not None and cpu.health in ("warning", "critical") and not throttled:
        clauses = [lower_first(signal_title(cpu))]
        latency = signals.get("latency_p99")
        if latency is not None and latency.health in ("warning", "critical"):
            clauses.append(lower_first(signal_title(latency)))
        rate = signals.get("request_rate")
        if rate is not None and rate.value and rate.baseline and rate.value / rate.baseline > 1.25:
            clauses.append(f"traffic is up to {value_text(rate)} from {value_text(rate, rate.baseline)} an hour ago")
        plans = []
        if kube is not None and kube.report.desired > 0:
            desired = kube.report.desired
            wanted = desired + max(1, math.ceil(desired * 0.5))
            plans.append(
                Plan(
                    f"Scale {ev.service} from {desired} to {wanted} replicas (CPU at {value_text(cpu)} of its limit)",
                    Action(kind="scale", target=target, params={"replicas": wanted}),
                )
            )
        else:
            plans.append(Plan(f"Scale out {ev.service} or raise its CPU limit (CPU at {value_text(cpu)} of limit)"))
        causes.append(Cause("cpu_saturation", "CPU saturation", clauses, {"metrics"}, severity_of(cpu.health), plans))

    explained = {"error_rate", "latency_p99"} if any(c.key != "cpu_saturation" for c in causes) else set()
    if unhealthy and not causes and events:
        # no rule knows the reason, but Kubernetes says in its own words what happens to the pods that fail
        reason, said = events[0].title.split(" ×")[0], events[0].title.split(": ", 1)[-1]
        causes.append(Cause(
            "kube_events", f"what Kubernetes reports on its failing pods: {events[0].title}",
            [lower_first(signal_title(s)) for s in _call_signals(unhealthy)[:1]] + [f.title for f in events[1:3]],
            {"kubernetes", "metrics"}, severity_of(worst.health) if worst else "warning",
            [Plan(f"Fix what the {reason} events say (“{said}”); no rule of mine knows this reason, so check its "
                  "message against the component that reports it")]))
    if unhealthy and not causes:
        causes.append(
            Cause(
                "unexplained",
                "a cause I could not find in the changes, pods or logs",
                [lower_first(signal_title(s)) for s in sorted(unhealthy, key=lambda s: SEVERITY_RANK[severity_of(s.health)])
                 if s.name not in explained][:3],
                {"metrics"},
                severity_of(worst.health) if worst else "warning",
            )
        )
    return causes


@dataclass
class Preceding:
    """A control-plane change that came shortly before the trouble began, and how it concerns the service."""

    change: Change
    before: timedelta  # how long before the trouble began
    relation: str  # "its pods read it through env DB_USER, DB_PASSWORD"
    line: str | None  # a log line that names it, or that a change of its kind produces


def _trouble_start(ev: Evidence, unhealthy: list[Signal], onset: Signal | None) -> datetime | None:
    """When the trouble began: the first signal's onset inside the window, else the window's start when it was
    already bad then; None when no signal is unhealthy."""
    if onset is not None and onset.onset is not None:
        return onset.onset
    if already_bad(ev, unhealthy) is not None:
        return ev.now - timedelta(seconds=ev.window_seconds)
    # no signal shows it (a consumer has no HTTP traffic): a firing alert on it, or an error pattern new in the window
    marks = [a.fired_at for a in ev.alerts if a.fired_at is not None]
    marks += [p.first_seen for p in (ev.logs.patterns if ev.logs else []) if is_new(ev, p)]
    return min(marks, default=None)


def _preceding(ev: Evidence, changes: list[Change], start: datetime | None) -> list[Preceding]:
    """The audit-log changes of any kind within CORRELATION before the trouble began, that concern the service,
    those that log lines tie to first, then the nearest."""
    if start is None:
        return []
    world = world_of(ev)
    lines = world.log_lines()
    out = []
    for change in changes:
        entry = change.entry
        if entry is None or not (change.at - SKEW <= start and start - change.at <= CORRELATION):
            continue
        related = relation(world, entry, lines)
        if related is None:
            continue
        symptom = CHANGE_SYMPTOMS.get(re.sub(r"[^a-z]", "", (entry.resource_type or "").lower()))
        named = [line for _, line in lines if entry.resource_name and len(entry.resource_name) > 3
                 and mentions(entry.resource_name, [line])]
        produced = [line for _, line in lines if symptom is not None and symptom.search(line)]
        line = next(iter(named + produced), None)
        out.append(Preceding(change, max(timedelta(0), start - change.at), related,
                             strip_prefix(line) if line else None))
    # what evidence ties to it first, then what the service's pods read or run on, then the nearest
    return sorted(out, key=lambda p: (p.line is None, "cluster-wide" in p.relation, p.before))


def _change_plan(ev: Evidence, preceding: Preceding) -> Plan:
    """Restart when the pods read the changed object only when they start (a Secret or ConfigMap in env): they still
    hold the old value. Otherwise review the change and revert it."""
    entry, change = preceding.change.entry, preceding.change
    how = preceding.relation.removeprefix("its pods read it through ")
    if entry is not None and how.startswith(("env ", "envFrom")):
        return Plan(f"Restart {ev.service} so that its pods read the new {entry.resource_type} {entry.resource_name}: "
                    f"they take it through {how}, which is read only when a container starts, so they still hold the "
                    "old value",
                    Action(kind="restart", target=f"{ev.namespace}/{ev.deployment}"))
    if entry is not None and entry.action == "execute":  # a run cannot be reverted; what it did can
        return Plan(f"Check what {change.cause} did and undo its effect (what it wrote or changed) if that is what the "
                    "service cannot cope with")
    return Plan(f"Review {change.cause} and revert it if it was not meant to do this")


def _still_serving(ev: Evidence, kube: KubeView | None, signals: dict[str, Signal]) -> str | None:
    """'the previous revision still serves all 3 replicas (4.2.0) and calls succeed' when the Deployment's earlier
    ReplicaSets keep every desired replica ready and its error rate (and latency, where read) are healthy: what
    fails then is the new revision, and the people calling the service do not feel it."""
    if kube is None or ev.snapshot is None or kube.current is None or kube.report.desired <= 0:
        return None
    calls = [signals.get(n) for n in ("error_rate", "latency_p99")]
    if signals.get("error_rate") is None or signals["error_rate"].health != "healthy" or any(
            s is not None and s.health in ("warning", "critical") for s in calls):
        return None
    old = [rs for rs in ev.snapshot.replicasets
           if (rs.get("metadata") or {}).get("name") != kube.current.replicaset
           and ((rs.get("status") or {}).get("readyReplicas") or 0) > 0]
    ready = sum((rs.get("status") or {}).get("readyReplicas") or 0 for rs in old)
    if not old or ready < kube.report.desired:
        return None
    images = sorted({c.get("image", "").rsplit(":", 1)[-1] for rs in old
                     for c in ((rs.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []})
    return (f"the previous revision still serves all {kube.report.desired} replicas ({', '.join(images)}) and calls "
            f"succeed ({lower_first(signal_title(signals['error_rate']))}): callers are not affected yet")


def _call_signals(unhealthy: list[Signal]) -> list[Signal]:
    """Unhealthy error rate and latency, errors first: what the users of a service feel."""
    order = ("error_rate", "latency_p99")
    return sorted((s for s in unhealthy if s.name in order), key=lambda s: order.index(s.name))



# --- ruled out, plans, confidence -----------------------------------------------------------------
def _ruled_out(
    ev: Evidence,
    kube: KubeView | None,
    signals: dict[str, Signal],
    unhealthy: list[Signal],
    cause: Cause | None,
    changes: list[Change],
    onset: Signal | None,
    preceding: list[Preceding],
) -> list[RuledOut]:
    out: list[RuledOut] = []
    key = cause.key if cause else None
    memory = signals.get("memory_ratio")
    if kube is not None and kube.fresh and (kube.failing or unhealthy) and kube.restart_only():
        assert kube.current is not None and kube.previous is not None  # restart_only() read both
        out.append(RuledOut(
            cause="A rollback",
            why=f"revision {kube.current.number} is a restart of revision {kube.previous.number}'s template "
                f"({tags(kube.current.images)}): rolling back runs the same image with the same ConfigMaps and "
                "Secrets"))
    if kube is not None and kube.failing:
        crashed = kube.crashing
        if crashed and not kube.oom:
            why = kube.exit_text(crashed) or "no OOMKilled termination"
            if memory is not None and memory.value is not None:
                why += f"; memory at {percent(memory.value)} of its limit"
            out.append(RuledOut(cause="OOM", why=why))
        if crashed and not kube.pulling:
            image = tags(kube.current.images) if kube.current else "the image"
            out.append(RuledOut(cause="Image pull", why=f"{image} was pulled: the containers start, then exit"))
        failing_nodes = kube.nodes(kube.failing)
        ready_nodes = kube.nodes([p for p in kube.report.pods if p.ready])
        if len(failing_nodes) > 1:
            out.append(RuledOut(cause="Node", why=f"failing pods run on {len(failing_nodes)} nodes "
                                                  f"({join(sorted(failing_nodes))})"))
        elif failing_nodes and failing_nodes <= ready_nodes:
            out.append(RuledOut(cause="Node", why=f"ready pods run on {join(sorted(failing_nodes))} too"))
        notes = " ".join(kube.report.notes)
        if "FailedCreate" not in kube.events and "events not checked" not in notes and kube.report.desired > 0 \
                and len(kube.current_pods) >= kube.report.desired:
            out.append(RuledOut(cause="Quota", why=f"no FailedCreate events; all {kube.report.desired} pods "
                                                   "were created"))
    # never while a change came shortly before the trouble (`preceding`): that change is a suspect
    if key not in ("bad_rollout", "config_change", "change") and (unhealthy or (kube and kube.failing)) \
            and not preceding:
        rollout = next((c for c in changes if c.rollout), None)
        if kube is not None and kube.current is not None and kube.current.created_at is not None and not kube.fresh:
            why = f"the last rollout ({kube.revision_text()}) was {ago(kube.current.created_at, ev.now)}"
            if ev.audit is not None and not any(c.source == "control_plane" for c in changes):
                why += f"; the audit log has no changes to {ev.service}"
            out.append(RuledOut(cause="A recent deploy or change", why=why))
        elif rollout is not None and kube is not None and not kube.failing and onset is not None \
                and onset.onset is not None and onset.onset < rollout.at - SKEW:
            word = RISING.get(onset.name, label(onset.name)).lower()
            out.append(RuledOut(
                cause=f"The {rollout.what.removesuffix(' rolled out')} rollout",
                why=f"{word} rose at {clock(onset.onset)}, {duration(rollout.at - onset.onset)} before it rolled out",
            ))
        elif rollout is not None and kube is not None and not kube.failing and already_bad(ev, unhealthy):
            out.append(RuledOut(
                cause=f"The {rollout.what.removesuffix(' rolled out')} rollout",
                why=f"the signals were already bad at the start of the window, before it rolled out at "
                    f"{clock(rollout.at)}",
            ))
    if unhealthy:
        rate = signals.get("request_rate")
        if rate is not None and rate.value and rate.baseline and 0.8 <= rate.value / rate.baseline <= 1.25:
            out.append(RuledOut(cause="Traffic surge", why=f"{value_text(rate)} now, "
                                                           f"{value_text(rate, rate.baseline)} an hour ago"))
        cpu = signals.get("cpu_ratio")
        if key != "cpu_saturation" and cpu is not None and cpu.value is not None and cpu.health == "healthy":
            out.append(RuledOut(cause="CPU saturation", why=f"CPU at {percent(cpu.value)} of its limit"))
        if key in ("dependency", "unexplained", "cpu_saturation", "config_change") and kube is not None \
                and not kube.failing and kube.report.ready >= kube.report.desired > 0:
            restarts = kube.restarts(kube.current_pods)
            out.append(RuledOut(cause="Crashing pods", why=f"{kube.report.ready}/{kube.report.desired} pods ready"
                                + (", no restarts" if restarts == 0 else "")))
        if key != "oom" and memory is not None and memory.value is not None and memory.health == "healthy" \
                and not (kube and kube.failing):
            out.append(RuledOut(cause="Memory", why=f"memory at {percent(memory.value)} of its limit"))
    return out


def _plans(ev: Evidence, kube: KubeView | None, cause: Cause | None, others: list[Cause]) -> list[Plan]:
    plans = list(cause.plans) if cause else []
    if cause is not None and cause.key not in ("bad_rollout", "cpu_saturation"):
        plans += [p for o in others if o.key == "cpu_saturation" for p in o.plans if p.action is not None]
    if cause is not None and cause.key == "crash_loop":
        plans = [p for p in plans if not (p.action and p.action.kind == "restart")]
    for incident in ev.incidents or []:
        if incident.status == "new":
            plans.append(
                Plan(
                    f"Acknowledge incident {incident.id} “{short(incident.title, 80)}”",
                    Action(kind="ack_incident", target=incident.id, params={"title": incident.title}),
                )
            )
    seen: set[tuple[str, str]] = set()
    unique = []
    for plan in plans:
        key = (plan.action.kind, plan.action.target) if plan.action else ("", plan.title)
        if key not in seen:
            seen.add(key)
            unique.append(plan)
    return unique


def agreement(sources: int) -> float:
    """Confidence from how many independent sources agree: 0.3 for one, 0.6 for two, 0.85 for three, 0.9 for four."""
    return {0: 0.15, 1: 0.3, 2: 0.6, 3: 0.85}.get(sources, 0.9)


def _confidence(ev: Evidence, cause: Cause | None, healthy: bool) -> float:
    missing = sum(1 for tool in DIAGNOSIS_TOOLS if tool in ev.failed)
    answered = sum(1 for tool in DIAGNOSIS_TOOLS if tool in ev.checked)
    if healthy:
        base = {0: 0.0, 1: 0.3, 2: 0.5, 3: 0.7}.get(answered, 0.85)
        return round(base, 2)
    base = agreement(len(cause.sources)) if cause else 0.15
    return round(max(0.1, base - 0.1 * missing), 2)


