"""What each source says about a service, as findings: metrics (golden signals against thresholds), Kubernetes
(the current revision's pods sorted by failure, old pods, events), logs (error patterns, the failing dependency),
the control plane (changes in the audit log, open incidents), and what was checked and found fine.

Pure functions of tool data and the time it is now (`Evidence`); bot.engine.reasoning weighs them.
"""
from __future__ import annotations

import copy
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.answer import Finding
from bot.engine.text import (
    ago,
    changes_text,
    clock,
    duration,
    join,
    label,
    lower_first,
    percent,
    plural,
    short,
    tags,
    value_text,
)
from bot.engine.causes.base import SETTLED, World, event_time, when as _when
from bot.engine.causes.episode import ALERT_MARGIN, MARGIN, episode_span
from tools.control_plane import Alert, AuditLog, Incident, Resource
from tools.kubernetes import DeploymentReport, KubeEvent, PodStatus, Revision, Snapshot
from tools.logs import LogLine, LogPattern, LogReport
from tools.metrics import QueryResult, Signal
from tools.redact import redact

# A change this long before a signal turned bad is a suspect ("shortly before").
CORRELATION = timedelta(minutes=30)
# Clocks of the cluster, the control plane and Prometheus disagree a little, and rates lag.
SKEW = timedelta(seconds=60)
# Pods not ready for this long, without a rollout in progress, are stuck.
STUCK_AFTER = timedelta(minutes=10)
# Error lines that stopped this long ago are an episode that is over, not noise that goes on.
QUIET = timedelta(minutes=5)
# An error pattern that began this far into the logs read (none before it), at least NEW_COUNT times since and still
# going on, is new rather than the service's established noise: something changed, even while the signals look fine.
NEW_AFTER = timedelta(minutes=5)
NEW_COUNT = 10
# An audit-log update this close to a rollout is taken to be that rollout (and names who did it).
SAME_CHANGE = timedelta(minutes=10)

CRASH_REASONS = {"CrashLoopBackOff", "Error", "RunContainerError", "CreateContainerError", "StartError"}
PULL_REASONS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
CONFIG_REASONS = {"CreateContainerConfigError"}
# Warning events that only repeat what the pod states already say.
ECHO_EVENTS = {"BackOff", "Unhealthy", "Failed", "Pulling", "Killing"}
CHANGE_ACTIONS = {"update", "execute", "create", "delete"}
DIAGNOSIS_TOOLS = ("metrics", "kubernetes", "logs", "control_plane")

_CRASH_LINE = re.compile(r"(?i)(panic|fatal|exception|traceback|error|segfault|killed)")


@dataclass
class Evidence:
    """Everything the tools said about one service; None where a tool was not asked or failed."""

    service: str
    namespace: str
    deployment: str
    now: datetime
    window: str
    window_seconds: float
    signals: list[Signal] | None = None
    report: DeploymentReport | None = None
    crash_log: str | None = None  # the previous (crashed) container's log tail of one failing pod
    logs: LogReport | None = None
    audit: list[AuditLog] | None = None
    dependency_audit: list[AuditLog] = field(default_factory=list)  # changes to what it depends on (World's)
    incidents: list[Incident] | None = None
    failed: dict[str, str] = field(default_factory=dict)  # tool -> why it could not be checked
    checked: list[str] = field(default_factory=list)  # tools that answered
    snapshot: Snapshot | None = None  # every API object the workload involves
    pod_logs: dict[str, str] = field(default_factory=dict)  # "pod/container" -> a failed run's output
    alerts: list[Alert] = field(default_factory=list)  # firing alerts that concern the service
    resolved_alerts: list[Alert] = field(default_factory=list)  # alerts about it that fired and resolved
    resources: list[Resource] = field(default_factory=list)  # control-plane resources its failing calls name
    metrics: dict[str, QueryResult] = field(default_factory=dict)  # the catalogue's queries, by key
    log_tail: list[LogLine] = field(default_factory=list)  # the newest raw lines, oldest first
    question: str = ""
    known: set[str] = field(default_factory=set)  # the catalog's services


def world_of(ev: Evidence) -> World:
    """The evidence as the failure catalogue reads it."""
    return World(
        service=ev.service, namespace=ev.namespace, now=ev.now, window_seconds=ev.window_seconds, snap=ev.snapshot,
        logs=ev.logs, pod_logs=ev.pod_logs, signals={s.name: s for s in ev.signals or []}, metrics=ev.metrics, tail=ev.log_tail,
        alerts=ev.alerts, resolved_alerts=ev.resolved_alerts, resources=ev.resources, audit=ev.audit or [],
        dependency_audit=ev.dependency_audit, known=ev.known, question=ev.question,
    )


@dataclass
class Change:
    at: datetime
    what: str  # "checkout v2.1.0 rolled out", "alice updated checkout"
    detail: str
    source: str  # kubernetes | control_plane
    who: str | None = None
    rollout: bool = False
    cause: str = ""  # as the cause of a problem: "bob's update of cart at 10:31 UTC (replicas 6 → 2)"
    entry: AuditLog | None = None  # the audit record it was read from


@dataclass
class Scored:
    finding: Finding
    weight: float = 0.0
    tag: str = ""  # which cause it supports


def scored(
    severity: str,
    source: str,
    title: str,
    *,
    evidence: str | None = None,
    value: float | str | None = None,
    weight: float = 0.0,
    tag: str = "",
) -> Scored:
    """A finding with its weight (evidence strength, for ranking within a severity) and what it supports."""
    finding = Finding(severity=severity, source=source, title=title, evidence=evidence, value=value)  # type: ignore[arg-type]
    return Scored(finding, weight, tag)



# --- metrics --------------------------------------------------------------------------------------
def severity_of(health: str) -> str:
    return {"critical": "critical", "warning": "warning"}.get(health, "info")


def warn_level(signal: Signal) -> float | None:
    return signal.thresholds[0] if signal.thresholds else None


def signal_title(signal: Signal) -> str:
    """'Error rate 8.3% (critical > 5%)', 'CPU at 97% of limit (critical > 95%)', 'Restarts 4 in 15m (warning ≥ 1)'."""
    name = label(signal.name)
    if signal.value is None:
        return f"{name}: no data" + (f" ({signal.error})" if signal.error else " (the query returned nothing, not zero)")
    value = value_text(signal)
    if signal.name in ("cpu_ratio", "memory_ratio"):
        head = f"{name} at {value} of limit"
    else:
        head = f"{name} {value}"
    if signal.thresholds and signal.health in ("warning", "critical"):
        level = signal.thresholds[1] if signal.health == "critical" else signal.thresholds[0]
        sign = "≥" if signal.unit == "count" else ">"
        head += f" ({signal.health} {sign} {value_text(signal, level)})"
    elif signal.thresholds:
        head += f" (warning at {value_text(signal, signal.thresholds[0])})"
    if (
        signal.baseline is not None
        and signal.health in ("warning", "critical")
        and not math.isclose(signal.baseline, signal.value, rel_tol=0.2, abs_tol=1e-9)
    ):
        head += f", up from {value_text(signal, signal.baseline)} an hour ago" if signal.baseline < signal.value else (
            f", down from {value_text(signal, signal.baseline)} an hour ago"
        )
    elif signal.trend == "increasing" and signal.health in ("warning", "critical"):
        head += ", rising"
    return head


def signal_findings(ev: Evidence) -> list[Scored]:
    if ev.signals is None:
        return []
    out: list[Scored] = []
    with_data = [s for s in ev.signals if s.value is not None]
    if ev.signals and not with_data and not all(s.error for s in ev.signals):
        out.append(
            scored(
                "warning",
                "metrics",
                f"No metrics for {ev.service}: every golden-signal query returned no data (not zero)",
                evidence=next((s.query for s in ev.signals if s.name == "error_rate"), ev.signals[0].query),
                weight=1,
                tag="no_data",
            )
        )
        return out
    for signal in ev.signals:
        if signal.health in ("warning", "critical"):
            out.append(
                scored(
                    severity_of(signal.health),
                    "metrics",
                    signal_title(signal),
                    evidence=signal.query,
                    value=signal.value,
                    weight=3 if signal.name in ("error_rate", "latency_p99") else 2,
                    tag=signal.name,
                )
            )
        elif signal.recovered is not None and signal.peak is not None:
            out.append(
                scored(
                    "info",
                    "metrics",
                    f"{label(signal.name)} back to {value_text(signal)} since {clock(signal.recovered)} "
                    f"({ago(signal.recovered, ev.now)}); it was {value_text(signal, signal.peak)} over the window",
                    evidence=signal.query,
                    value=signal.value,
                    tag=signal.name,
                )
            )
    missing = [s for s in ev.signals if s.value is None]
    if missing and with_data:
        out.append(
            scored(
                "info",
                "metrics",
                "No data for " + join([lower_first(label(s.name)) for s in missing]) + " (not zero: nothing returned)",
                evidence="; ".join(s.error or s.query for s in missing),
                tag="no_data",
            )
        )
    return out


def first_onset(ev: Evidence, unhealthy: list[Signal]) -> Signal | None:
    """The unhealthy signal that turned bad first, if it turned bad inside the window (not before it)."""
    step = max(15.0, ev.window_seconds / 60)
    window_start = ev.now - timedelta(seconds=ev.window_seconds)
    inside = [s for s in unhealthy if s.onset is not None and s.onset > window_start + timedelta(seconds=2 * step)]
    return min(inside, key=lambda s: s.onset) if inside else None  # type: ignore[arg-type, return-value]


def already_bad(ev: Evidence, unhealthy: list[Signal]) -> Signal | None:
    """An unhealthy signal already past its warning level at the start of the window."""
    step = max(15.0, ev.window_seconds / 60)
    window_start = ev.now - timedelta(seconds=ev.window_seconds)
    return next(
        (s for s in unhealthy if s.onset is not None and s.onset <= window_start + timedelta(seconds=2 * step)), None
    )


# --- what the question asks about: a 4xx status is an error for whoever gets it ---------------------
# '401', '403s', '4xx' in the question: the built-in error rate counts only 5xx, so these are read on their own.
_ASKED_STATUS = re.compile(r"\b(4\d\d|4xx)s?\b", re.IGNORECASE)
ASKED_KEY = "asked_status:"  # Evidence.metrics keys: asked_status:401 (now), asked_status:401:before
_RATIO = ('(sum(rate(http_requests_total{{service="{service}",{status}}}[{window}]{offset})) or vector(0)) / '
          'sum(rate(http_requests_total{{service="{service}"}}[{window}]{offset}))')


def asked_statuses(question: str) -> list[str]:
    return list(dict.fromkeys(m.group(1).lower() for m in _ASKED_STATUS.finditer(question)))


def asked_status_queries(question: str, service: str, window: str, before_seconds: float) -> dict[str, str]:
    """The share of requests answered with each status the question names, now and at the start of what is read
    (at least an hour back): the comparison that tells a surge from the usual rate of refusals."""
    offset = f" offset {int(max(3600, before_seconds))}s"
    out = {}
    for code in asked_statuses(question):
        status = 'status=~"4.."' if code == "4xx" else f'status="{code}"'
        out[ASKED_KEY + code] = _RATIO.format(service=service, status=status, window=window, offset="")
        out[ASKED_KEY + code + ":before"] = _RATIO.format(service=service, status=status, window=window, offset=offset)
    return out


def _scalar(result: QueryResult | None) -> float | None:
    values = [s.samples[-1].value for s in (result.series if result else []) if s.samples]
    return next((v for v in values if not math.isnan(v)), None)


def asked_status_findings(ev: Evidence) -> list[Scored]:
    """A surge of the 4xx status the question names, as an error finding against the error-rate thresholds."""
    rate = next((s for s in ev.signals or [] if s.name == "error_rate"), None)
    warning, critical = rate.thresholds if rate is not None and rate.thresholds else (0.01, 0.05)
    out = []
    for code in asked_statuses(ev.question):
        now, before = _scalar(ev.metrics.get(ASKED_KEY + code)), _scalar(ev.metrics.get(ASKED_KEY + code + ":before"))
        if now is None or now <= warning or (before is not None and now < 2 * before):
            continue
        was = f", up from {percent(before)} before" if before is not None else ""
        out.append(scored(
            "critical" if now > critical else "warning", "metrics",
            f"{code.upper()} responses: {percent(now)} of requests{was}; they are errors for the people who get them",
            evidence=ev.metrics[ASKED_KEY + code].query, value=now, weight=3, tag="error_rate"))
    return out


# --- Kubernetes -----------------------------------------------------------------------------------
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` stamps on the template


class KubeView:
    """The deployment report sorted into what matters: the current revision's pods by failure, old pods."""

    def __init__(self, ev: Evidence):
        assert ev.report is not None
        self.ev = ev
        self.report = r = ev.report
        self.now = ev.now
        self.current: Revision | None = r.current
        self.previous: Revision | None = r.previous
        window = timedelta(seconds=ev.window_seconds)
        created = self.current.created_at if self.current else None
        self.rollout_age = (self.now - created) if created else None
        self.fresh = self.rollout_age is not None and self.rollout_age <= max(timedelta(hours=1), window + CORRELATION)
        self.live = [p for p in r.pods if not p.terminating]
        self.current_pods = [
            p for p in self.live if self.current is None or p.revision in (None, self.current.number)
        ]
        self.leaving = [p for p in r.pods if p not in self.current_pods]
        self.pulling = [p for p in self.current_pods if p.reason in PULL_REASONS]
        self.config_errors = [p for p in self.current_pods if p.reason in CONFIG_REASONS]
        # pods the kubelet killed for a failed probe: their exit 137 is that SIGKILL, not the kernel's OOM killer
        # (Killing is a Normal event: the report keeps only warnings, the snapshot has every event)
        killings = [(e.object_name, e.reason, e.message) for e in r.events] + [
            ((e.get("involvedObject") or {}).get("name"), e.get("reason"), e.get("message"))
            for e in (ev.snapshot.events if ev.snapshot is not None else [])]
        self.probe_killed = {pod for pod, reason, message in killings
                             if reason == "Killing" and "probe" in (message or "").lower()}
        self.oom = [p for p in self.current_pods if self._oom(p)]
        self.crashing = [
            p
            for p in self.current_pods
            if p not in self.pulling
            and p not in self.config_errors
            and (p.reason in CRASH_REASONS or (not p.ready and p.restarts > 0 and self._last_exit(p) is not None))
        ]
        self.pending = [p for p in self.current_pods if p.phase == "Pending" and not p.ready]
        rollout_done = self.rollout_age is None or self.rollout_age > STUCK_AFTER
        self.stuck = [
            p
            for p in self.current_pods
            if not p.ready
            and p not in self.crashing
            and p not in self.pulling
            and p not in self.config_errors
            and p not in self.oom
            and p.created_at is not None
            and self.now - p.created_at > STUCK_AFTER
            and rollout_done
        ]
        self.recovered = [
            p for p in self.current_pods if p.ready and p.restarts > 0 and p not in self.oom and p not in self.crashing
        ]
        self.events: dict[str, list[KubeEvent]] = {}
        for event in r.events:
            self.events.setdefault(event.reason or "?", []).append(event)
        self.failing = self.crashing + self.pulling + self.config_errors + [p for p in self.oom if p not in self.crashing]
        self.failing_all = bool(self.current_pods) and len(self.failing) == len(self.current_pods)

    def _last_exit(self, pod: PodStatus) -> tuple[int | None, str | None, datetime | None] | None:
        for c in pod.containers:
            if c.last_termination is not None:
                t = c.last_termination
                return t.exit_code, t.reason, t.finished_at
            if c.state == "terminated":
                return None, c.reason, None
        return None

    def _oom(self, pod: PodStatus) -> bool:
        window = timedelta(seconds=self.ev.window_seconds)
        for c in pod.containers:
            t = c.last_termination
            if c.state == "terminated" and c.reason == "OOMKilled":
                return True
            if (
                t is not None
                and (t.reason == "OOMKilled" or t.exit_code == 137 and pod.name not in self.probe_killed)
                and (t.finished_at is None or self.now - t.finished_at <= window or not pod.ready)
            ):
                return True
        return False

    def restart_only(self) -> bool:
        """True when the current revision's pod template is the previous one's but for the stamp of a rollout
        restart: its pods differ only in what they read from outside the template (a ConfigMap, a Secret, a
        dependency), so a rollback would run the same thing again. False when either template cannot be read."""
        snap = self.ev.snapshot
        if snap is None or self.current is None or self.previous is None:
            return False
        templates = {}
        for rs in snap.replicasets:
            name = (rs.get("metadata") or {}).get("name")
            if name in (self.current.replicaset, self.previous.replicaset):
                template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
                meta = template.get("metadata") or {}
                (meta.get("labels") or {}).pop("pod-template-hash", None)
                (meta.get("annotations") or {}).pop(RESTARTED_AT, None)
                if not meta.get("annotations"):
                    meta.pop("annotations", None)
                templates[name] = template
        return len(templates) == 2 and templates[self.current.replicaset] == templates[self.previous.replicaset]

    def revision_text(self, rev: Revision | None = None) -> str:
        rev = rev or self.current
        if rev is None:
            return self.report.name
        return f"{tags(rev.images)} (revision {rev.number})"

    def exit_text(self, pods: list[PodStatus]) -> str:
        """'exit code 1 (Error)' of the first pod that has terminated."""
        exits = [e for e in (self._last_exit(p) for p in pods) if e is not None]
        if not exits:
            return ""
        code, reason, _ = exits[0]
        if code is None:
            return reason or ""
        return f"exit code {code}" + (f" ({reason})" if reason else "")

    def restarts(self, pods: list[PodStatus]) -> int:
        return max((p.restarts for p in pods), default=0)

    def crash_line(self) -> str | None:
        if not self.ev.crash_log:
            return None
        lines = [line.strip() for line in self.ev.crash_log.splitlines() if line.strip() and not line.startswith("[")]
        telling = [line for line in lines if _CRASH_LINE.search(line)]
        pick = telling[0] if telling else (lines[-1] if lines else None)
        return short(redact(strip_prefix(pick)), 200) if pick else None

    def _message(self, pod: PodStatus) -> str:
        for c in pod.containers:
            if c.message:
                return f"pod {self.report.namespace}/{pod.name}: {c.message}"
        return f"pod {self.report.namespace}/{pod.name}: {pod.reason or pod.phase}"

    def failure_title(self) -> str | None:
        """'3 of 3 pods of v2.1.0 (revision 7) in CrashLoopBackOff: exit code 1 (Error), 4 restarts'."""
        total = len(self.current_pods)
        of = f" of {self.revision_text()}" if self.current else ""
        if self.oom:
            return (
                f"{len(self.oom)} of {total} pods{of} OOMKilled (exit code 137), "
                f"{plural(self.restarts(self.oom), 'restart')}"
            )
        if self.pulling:
            reason = Counter(p.reason for p in self.pulling).most_common(1)[0][0]
            return f"{len(self.pulling)} of {total} pods{of} cannot pull their image: {reason}"
        if self.config_errors:
            return f"{len(self.config_errors)} of {total} pods{of} cannot start: CreateContainerConfigError"
        if self.crashing:
            reason = Counter(p.reason or "restarting" for p in self.crashing).most_common(1)[0][0]
            exit_text = self.exit_text(self.crashing)
            return (
                f"{len(self.crashing)} of {total} pods{of} in {reason}"
                + (f": {exit_text}" if exit_text else "")
                + f", {plural(self.restarts(self.crashing), 'restart')}"
            )
        return None

    def findings(self) -> list[Scored]:
        r, out = self.report, []
        title = self.failure_title()
        if title:
            pods = self.oom or self.pulling or self.config_errors or self.crashing
            evidence = self._message(pods[0])
            line = self.crash_line()
            if line and not self.pulling:
                evidence += f" · last log before the crash: {line}"
            critical = r.ready < max(1, math.ceil(r.desired / 2))
            out.append(
                scored(
                    "critical" if critical else "warning",
                    "kubernetes",
                    title,
                    evidence=evidence,
                    value=len(pods),
                    weight=4,
                    tag="oom" if self.oom else "pods",
                )
            )
        if r.desired > 0 and r.ready < r.desired:
            available = next((c for c in r.conditions if c.type == "Available" and c.status == "False"), None)
            out.append(
                scored(
                    "critical" if r.ready == 0 else "warning",
                    "kubernetes",
                    f"{r.ready} of {r.desired} replicas ready"
                    + (f" (Available=False: {available.reason})" if available and available.reason else ""),
                    evidence=f"deployment {r.namespace}/{r.name}",
                    value=r.ready,
                    weight=2,
                    tag="availability",
                )
            )
        stalled = next(
            (c for c in r.conditions if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded"), None
        )
        if stalled:
            out.append(
                scored(
                    "critical",
                    "kubernetes",
                    f"Rollout of {self.revision_text()} is stuck: ProgressDeadlineExceeded",
                    evidence=stalled.message or f"deployment {r.namespace}/{r.name}",
                    weight=3,
                    tag="pods",
                )
            )
        if self.fresh and self.current is not None and self.current.created_at is not None:
            before = f", replacing {self.revision_text(self.previous)}" if self.previous else ""
            out.append(
                scored(
                    "info",
                    "kubernetes",
                    f"{self.revision_text()} rolled out at {clock(self.current.created_at)} "
                    f"({ago(self.current.created_at, self.now)}){before}",
                    evidence=f"replicaset {r.namespace}/{self.current.replicaset}: {', '.join(self.current.images)}",
                    weight=2,
                    tag="rollout",
                )
            )
        if self.stuck:
            age = max(self.now - p.created_at for p in self.stuck if p.created_at)  # type: ignore[operator]
            reasons = join(sorted({p.reason or p.phase or "not ready" for p in self.stuck}))
            out.append(
                scored(
                    "warning",
                    "kubernetes",
                    f"{plural(len(self.stuck), 'pod')} not ready for {duration(age)} ({reasons}) "
                    "without a rollout in progress",
                    evidence=self._message(self.stuck[0]),
                    value=len(self.stuck),
                    weight=2,
                    tag="stuck",
                )
            )
        out += self._event_findings()
        out += self.stranded()
        out += self.serving_old()
        out += [
            scored("info", "kubernetes", f"Old news: {text}; not the cause", evidence=evidence, tag="old")
            for text, evidence in self._old_news()
        ]
        return out

    def _event_findings(self) -> list[Scored]:
        out: list[Scored] = []
        for reason, severity in (("FailedScheduling", "critical" if self.pending else "warning"),
                                 ("FailedCreate", "critical"), ("FailedMount", "warning"),
                                 ("FailedAttachVolume", "warning"), ("Evicted", "warning"),
                                 ("NodeNotReady", "warning")):
            events = self.events.get(reason)
            if not events:
                continue
            event = events[0]
            what = {
                "FailedScheduling": "Pods cannot be scheduled",
                "FailedCreate": f"{event.object_kind} cannot create pods",
                "FailedMount": "Volumes cannot be mounted",
                "FailedAttachVolume": "Volumes cannot be attached",
                "Evicted": "Pods were evicted",
                "NodeNotReady": "A node of these pods is not ready",
            }[reason]
            out.append(
                scored(
                    severity,
                    "kubernetes",
                    f"{what}: {short(event.message or reason, 160)}",
                    evidence=f"event on {event.object_kind.lower()} {self.report.namespace}/{event.object_name}: "
                    f"{reason} ×{sum(e.count for e in events)}",
                    value=sum(e.count for e in events),
                    weight=3,
                    tag="events",
                )
            )
        echoes = {reason: events for reason, events in self.events.items() if reason in ECHO_EVENTS}
        if echoes:
            counts = ", ".join(f"{reason} ×{sum(e.count for e in events)}" for reason, events in echoes.items())
            sample = next((e for e in echoes.get("Unhealthy", []) + [e for v in echoes.values() for e in v]), None)
            out.append(
                scored(
                    "info",
                    "kubernetes",
                    f"Warning events in the last {self.ev.window}: {counts}",
                    evidence=f"{sample.object_kind.lower()} {self.report.namespace}/{sample.object_name}: "
                    f"{short(sample.message or '', 200)}" if sample else None,
                    tag="events",
                )
            )
        return out

    def _old_news(self) -> list[tuple[str, str]]:
        out = []
        for pod in self.leaving:
            revision = f"revision {pod.revision}" if pod.revision is not None else "an earlier revision"
            if pod.terminating and pod.node in self.lost_nodes():
                continue  # not a rollout's leftover: it cannot end while its node is gone (findings() says so)
            if pod.terminating:
                out.append((f"pod {pod.name} of {revision} is terminating, as expected in a rollout",
                            f"pod {self.report.namespace}/{pod.name}"))
        for pod in self.recovered:
            last = self._last_exit(pod)
            if last and last[2] and self.now - last[2] < SETTLED:
                continue  # it restarted minutes ago: not settled, so not old news (the restarts signal shows it)
            when = f", last at {clock(last[2])}" if last and last[2] else ""
            how = f" ({self.exit_text([pod])})" if last else ""
            out.append(
                (
                    f"pod {pod.name} restarted {plural(pod.restarts, 'time')}{when}{how} and is ready again",
                    f"pod {self.report.namespace}/{pod.name}",
                )
            )
        return out

    def lost_nodes(self) -> dict[str, str]:
        """Nodes whose Ready condition is not True, with since when and why: 'Unknown since 19:04 UTC
        (NodeStatusUnknown: Kubelet stopped posting node status.)'."""
        out = {}
        for node in self.ev.snapshot.items("nodes") if self.ev.snapshot else []:
            ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
            if ready is not None and ready.get("status") != "True":
                since = _when(ready.get("lastTransitionTime"))
                out[(node.get("metadata") or {}).get("name", "")] = (
                    f"{ready.get('status')}" + (f" since {clock(since)}" if since else "")
                    + (f" ({ready.get('reason')}: {short(ready.get('message') or '', 100)})" if ready.get("reason") else ""))
        return out

    def stranded(self) -> list[Scored]:
        """Pods being deleted on a node that is not Ready: the kubelet that would end them is gone, so they stay, and
        what they hold (a ReadWriteOnce volume's attachment) stays with them."""
        lost = self.lost_nodes()
        out = []
        for pod in (p for p in self.report.pods if p.terminating and p.node in lost):
            raw = next((p for p in self.ev.snapshot.pods if (p.get("metadata") or {}).get("name") == pod.name), {}) \
                if self.ev.snapshot else {}
            claims = [v["persistentVolumeClaim"]["claimName"] for v in (raw.get("spec") or {}).get("volumes") or []
                      if (v.get("persistentVolumeClaim") or {}).get("claimName")]
            held = f"; it still holds volume claim {join(claims)}, whose volume stays attached to {pod.node}" \
                if claims else ""
            out.append(scored(
                "warning", "kubernetes",
                f"Pod {pod.name} is stuck terminating on node {pod.node}, which is {lost[pod.node]}: no kubelet there "
                f"can end it{held}. Once {pod.node} is known to be down, force-delete the pod or taint the node "
                "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute so its volumes detach",
                evidence=f"pod {self.report.namespace}/{pod.name} on {pod.node}", weight=3, tag="events"))
        return out

    def serving_old(self) -> list[Scored]:
        """Pods of earlier revisions still running: a rollout not finished (or stuck) leaves them serving."""
        serving = [p for p in self.leaving if not p.terminating]
        if not serving or self.current is None:
            return []
        revisions = sorted({p.revision for p in serving if p.revision is not None})
        which = join([self.revision_text(self._revision(n)) if self._revision(n) else f"revision {n}" for n in revisions])
        ready = sum(p.ready for p in serving)
        return [
            scored(
                "info",
                "kubernetes",
                f"{plural(len(serving), 'pod')} of {which or 'an earlier revision'} still running "
                f"({ready} ready): the rollout of {self.revision_text()} has not replaced them",
                evidence=", ".join(f"pod {self.report.namespace}/{p.name}" for p in serving[:5]),
                tag="rollout",
            )
        ]

    def _revision(self, number: int) -> Revision | None:
        return next((r for r in (self.current, self.previous) if r is not None and r.number == number), None)

    def old_news(self) -> list[str]:
        return [text for text, _ in self._old_news()]

    def nodes(self, pods: list[PodStatus]) -> set[str]:
        return {p.node for p in pods if p.node}


# --- any other event, in its own words -------------------------------------------------------------
# Reasons the findings above or the catalogue's rules read with their own words; every other Warning is quoted as is.
READ_EVENTS = ECHO_EVENTS | {"FailedScheduling", "FailedCreate", "FailedMount", "FailedAttachVolume", "Evicted",
                             "NodeNotReady"}
# Normal events that still take a pod away from the service (the scheduler's or the taint manager's doing).
TAKEN_AWAY = {"Preempted", "TaintManagerEviction"}
_LONG_ID = re.compile(r"\b[0-9a-f]{32,}\b")  # a sandbox's or container's id: long, and says nothing to a person
_UID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _named_pods(snap: Snapshot | None, message: str) -> str:
    """The message with each pod UID it names replaced by that pod's namespace/name and priority class, when the
    pod is among those read (the pods of the nodes involved)."""
    if snap is None:
        return message
    pods = {(p.get("metadata") or {}).get("uid"): p for ps in snap.node_pods.values() for p in ps}

    def named(match: re.Match[str]) -> str:
        pod = pods.get(match.group(0))
        if pod is None:
            return match.group(0)
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        cls = f", priority class {spec['priorityClassName']}" if spec.get("priorityClassName") else ""
        prio = f", priority {spec['priority']}" if spec.get("priority") is not None else ""
        return f"{meta.get('namespace')}/{meta.get('name')}{cls}{prio}"
    return _UID.sub(named, message)


def event_findings(ev: Evidence, world: World, quoted: str) -> list[Scored]:
    """Every other Warning event of the workload's objects (and the Normal ones that take a pod away), one finding per
    reason with its object, count and first and last time; a warning when it touches a pod that is not ready (or gone)
    or the node of one, else info. Reasons a rule already quotes (`quoted`, its evidence) are left to it."""
    snap = world.snap
    if snap is None:
        return []
    live = {(p.get("metadata") or {}).get("name"): p for p in snap.pods}
    failing = {n for n, p in live.items() if not any(c.get("type") == "Ready" and c.get("status") == "True"
                                                     for c in (p.get("status") or {}).get("conditions") or [])}
    failing_nodes = {(live[n].get("spec") or {}).get("nodeName") for n in failing}
    reported = {e.reason for e in ev.report.events} if ev.report is not None else set()
    groups: dict[str, list[dict[str, object]]] = {}
    for event in world.events():
        reason = str(event.get("reason") or "")
        if reason in ECHO_EVENTS or (reason in READ_EVENTS and reason in reported) or f"event {reason}" in quoted or (
                event.get("type") != "Warning" and reason not in TAKEN_AWAY):
            continue
        groups.setdefault(reason, []).append(event)
    out = []
    for reason, events in groups.items():
        objects = list(dict.fromkeys(((e.get("involvedObject") or {}).get("kind", ""),
                                      (e.get("involvedObject") or {}).get("name", "")) for e in events))
        touches = any((k == "Pod" and (n in failing or n not in live)) or (k == "Node" and n in failing_nodes)
                      for k, n in objects)
        count = sum(int(e.get("count") or 1) for e in events)  # type: ignore[call-overload]
        firsts = [t for e in events for t in [_when(e.get("firstTimestamp")) or event_time(e)] if t]
        lasts = [t for e in events for t in [event_time(e)] if t]
        newest = events[0]
        kind, name = objects[0]
        more = f" and {plural(len(objects) - 1, 'other')}" if len(objects) > 1 else ""
        span = f" (first {clock(min(firsts))}, last {clock(max(lasts))})" if firsts and lasts else ""
        message = short(_LONG_ID.sub("…", _named_pods(snap, str(newest.get("message") or ""))), 220)
        out.append(scored(
            "warning" if touches else "info", "kubernetes",
            f"{reason} ×{count} on {kind.lower()} {name}{more}{span}: {message}",
            evidence="; ".join(f"{k.lower()} {ev.namespace}/{n}" for k, n in objects[:5]), value=count,
            weight=3 if touches else 1, tag="events"))
    return out


# --- logs -----------------------------------------------------------------------------------------
_LEADING_NOISE = re.compile(
    r"^(?:(?:<ts>|<num>|\d{4}-\d{2}-\d{2}[T ][\d:.,]+(?:Z|[+-]\d{2}:?\d{2})?|"
    r"\[?(?:level=)?(?:TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\]?:?)\s+)+",
    re.IGNORECASE,
)


def strip_prefix(line: str) -> str:
    """A log line without the timestamp and level it starts with."""
    return _LEADING_NOISE.sub("", line.strip()) or line.strip()


def pattern_text(pattern: LogPattern) -> str:
    """The pattern without the timestamp and level it starts with ('panic: nil pointer … order=<num>')."""
    return short(redact(strip_prefix(pattern.pattern)), 140)


def trouble_over(ev: Evidence) -> tuple[datetime, datetime] | None:
    """(start, back) of the spike the user-facing signals had inside the window when it is over — each of them
    healthy now and back under its warning level since RECOVERED_FOR — else None (nothing went over, or it goes on)."""
    calls = [s for s in ev.signals or [] if s.name in World.USER_SIGNALS and s.value is not None]
    if not calls or any(s.health in ("warning", "critical") for s in calls):
        return None
    spans = [e for s in calls for e in [episode_span(s, ev.now)] if e is not None]
    return (min(e[0] for e in spans), max(e[1] for e in spans)) if spans else None


def in_span(when: datetime, span: tuple[datetime, datetime] | None, margin: timedelta) -> bool:
    return span is not None and span[0] - margin <= when <= span[1] + margin


def is_new(ev: Evidence, pattern: LogPattern) -> bool:
    """Whether an error pattern is new in the logs read: absent for a while after they start, frequent since, and
    still going on. Not when Loki cut the read short (older lines were not seen, so 'absent before' is unknown)."""
    logs = ev.logs
    if logs is None or logs.limit_hit or pattern.level not in ("error", "warning") or pattern.count < NEW_COUNT:
        return False
    quiet_before = max(NEW_AFTER, (logs.end - logs.start) / 10)
    return pattern.first_seen - logs.start >= quiet_before and ev.now - pattern.last_seen <= QUIET


def log_findings(ev: Evidence, patterns: list[LogPattern], troubled: bool) -> list[Scored]:
    if ev.logs is None:
        return []
    out = []
    spike = trouble_over(ev)
    for rank, pattern in enumerate(patterns[:3]):
        # lines that began and stopped with a spike that is over are that spike's, history: not something new now
        past = in_span(pattern.first_seen, spike, MARGIN) and in_span(pattern.last_seen, spike, MARGIN)
        new = is_new(ev, pattern) and not past
        noisy = not troubled and not new
        severity = "warning" if (troubled and pattern.level == "error") or new else "info"
        since = f", first at {clock(pattern.first_seen)}" if pattern.first_seen > ev.logs.start + timedelta(minutes=1) else ""
        title = f"Log pattern ×{pattern.count}{since}: “{pattern_text(pattern)}”"
        if new and not troubled:
            title += (f" (new: none in the {duration(pattern.first_seen - ev.logs.start)} before it, though the "
                      "signals I read stay within thresholds)")
        elif noisy and past and spike is not None:
            title += f" (over: they came with the spike of {clock(spike[0])}–{clock(spike[1])}, none since)"
        elif noisy and ev.now - pattern.last_seen > QUIET:
            title += f" (over: none since {clock(pattern.last_seen)}, and the signals are within thresholds)"
        elif noisy:
            title += " (noise: the service's signals are within thresholds)"
        out.append(
            scored(
                severity,
                "logs",
                title,
                evidence=f"{ev.logs.query} · e.g. {short(redact(pattern.sample), 300)}",
                value=pattern.count,
                weight=2 - rank * 0.1,
                tag="logs",
            )
        )
    return out


# --- changes --------------------------------------------------------------------------------------
def _verb(action: str) -> str:
    return {"update": "updated", "execute": "executed", "create": "created", "delete": "deleted"}.get(
        action, action + "ed"
    )


def collect_changes(ev: Evidence, kube: KubeView | None) -> list[Change]:
    """Rollouts (Kubernetes) and audit-log changes (control plane), newest first; an audit update right at a
    rollout is that rollout and names who did it."""
    changes: list[Change] = []
    rollout: Change | None = None
    if kube is not None and kube.current is not None and kube.current.created_at is not None:
        rev = kube.current
        replacing = f", replacing {kube.revision_text(kube.previous)}" if kube.previous else ""
        rollout = Change(
            at=rev.created_at,  # type: ignore[arg-type]
            what=f"{ev.service} {tags(rev.images)} rolled out",
            detail=f"revision {rev.number} ({', '.join(rev.images)}) created at {clock(rev.created_at)}{replacing}",  # type: ignore[arg-type]
            source="kubernetes",
            rollout=True,
        )
        changes.append(rollout)
    for entry in ev.audit or []:
        if entry.action not in CHANGE_ACTIONS or entry.result == "failure":
            continue
        who = entry.username or entry.user_id or "someone"
        detail = changes_text(entry.changes)
        if (
            rollout is not None
            and entry.action == "update"
            and abs(entry.timestamp - rollout.at) <= SAME_CHANGE
            and rollout.who is None
        ):
            rollout.who = who
            rollout.detail += f"; audit log: {who} updated {entry.resource_name} at {clock(entry.timestamp)}" + (
                f" ({detail})" if detail else ""
            )
            continue
        resource = entry.resource_name or ev.service
        if entry.resource_type and entry.resource_name not in (ev.service, ev.deployment):
            # a change next to the service says what it changed: "kim deleted rolebinding job-dispatcher-jobs"
            resource = f"{entry.resource_type.replace('_', ' ')} {resource}"
        changes.append(
            Change(
                at=entry.timestamp,
                what=f"{who} {_verb(entry.action)} {resource}",
                detail=f"audit log {entry.id}: {entry.action} by {who}" + (f" ({detail})" if detail else ""),
                source="control_plane",
                who=who,
                cause=f"{who}'s {entry.action} of {resource} at {clock(entry.timestamp)}"
                + (f" ({detail})" if detail else ""),
                entry=entry,
            )
        )
    return sorted(changes, key=lambda c: c.at, reverse=True)


def change_findings(ev: Evidence, changes: list[Change]) -> list[Scored]:
    out = []
    for change in changes:
        if change.source != "control_plane":
            continue
        out.append(
            scored(
                "info",
                "control_plane",
                f"{change.what} at {clock(change.at)} ({ago(change.at, ev.now)})",
                evidence=change.detail,
                weight=1,
                tag="audit",
            )
        )
    rollout = next((c for c in changes if c.rollout and c.who), None)
    if rollout is not None:
        out.append(
            scored(
                "info",
                "control_plane",
                f"{rollout.who} made the {rollout.what.split(' rolled out')[0]} rollout (audit log)",
                evidence=rollout.detail,
                weight=1,
                tag="audit",
            )
        )
    return out


def incident_findings(ev: Evidence) -> list[Scored]:
    out = []
    for incident in ev.incidents or []:
        opened = f", opened {ago(incident.created_at, ev.now)}" if incident.created_at else ""
        out.append(
            scored(
                "info",
                "control_plane",
                f"Open incident {incident.id} “{short(incident.title, 100)}” "
                f"({incident.severity}, {incident.status}{opened})",
                evidence=f"control plane incident {incident.id}",
                weight=1,
                tag="incident",
            )
        )
    return out


def stale_alerts(ev: Evidence) -> list[Alert]:
    """The firing alerts that fired for a spike of the user-facing signals that is over: they still fire while their
    rule's window holds the spike, and are history, not a current fault."""
    spike = trouble_over(ev)
    return [a for a in ev.alerts if a.fired_at is not None and in_span(a.fired_at, spike, ALERT_MARGIN)]


def unfelt_alerts(ev: Evidence) -> tuple[list[Alert], list[str]]:
    """The firing alerts users do not feel, with the healthy signals that show it: when the error rate and latency were
    read and are healthy and every pod is ready, an alert no cause explains (and that did not fire for a spike now over)
    measures something that does not reach the service's users now."""
    unaffected = world_of(ev).unaffected(World.USER_SIGNALS)
    stale = stale_alerts(ev)
    return ([a for a in ev.alerts if a not in stale], unaffected) if unaffected else ([], [])


def alert_findings(ev: Evidence, subjects: set[str], cause: str | None) -> list[Scored]:
    """The firing alerts about the service (one the question names among them), each tied to the cause when it
    is about what the cause is about (its claim, pod, dependency or the service itself)."""
    out = []
    spike = trouble_over(ev)
    stale = stale_alerts(ev) if cause is None else []
    unfelt, unaffected = unfelt_alerts(ev)
    for alert in ev.alerts:
        about = alert.resource_name or ev.service
        explained = cause is not None and (about in subjects or about in (ev.service, ev.deployment))
        named = alert.name.lower() in ev.question.lower()
        past = alert in stale
        quiet = cause is None and alert in unfelt
        # with no cause found, a firing alert is evidence the signals read do not show: it needs a look, unless the
        # signals users feel were read and are healthy (severity follows user impact, not the alert)
        unexplained = cause is None and not past and not quiet
        out.append(scored(
            "warning" if unexplained else "info", "control_plane",
            f"Alert {alert.name} ({alert.severity}) firing" + (f" since {clock(alert.fired_at)}" if alert.fired_at
                                                               else "")
            + f" on {about}" + (f": {short(alert.message, 140)}" if alert.message else "")
            + (f" — explained by {short(cause, 160)}" if explained and cause else "")
            + (" — not explained by the signals I read" if unexplained else "")
            + (f" — users are not affected now ({join(unaffected)}): not user-impacting; what it measures is not "
               "among the signals I read, so look at it when convenient" if quiet else "")
            + (f" — it fired for the spike of {clock(spike[0])}–{clock(spike[1])}, which is over; it resolves by "
               "itself once its rule's window no longer holds the spike: no action is needed now" if past and spike
               else ""),
            evidence=f"control plane alert {alert.id}" + (" (named in the question)" if named else ""),
            weight=3 if named or unexplained else 1, tag="alert"))
    return out


# --- what was checked -----------------------------------------------------------------------------
def checked(ev: Evidence, kube: KubeView | None, signals: dict[str, Signal], troubled: bool = False) -> list[str]:
    out = []
    if signals:
        parts = []
        for name in ("error_rate", "latency_p99", "request_rate", "cpu_ratio", "memory_ratio", "restarts"):
            signal = signals.get(name)
            if signal is None:
                continue
            if signal.value is None:
                parts.append(f"no data for {lower_first(label(name))}")
            elif name in ("cpu_ratio", "memory_ratio"):
                parts.append(f"{lower_first(label(name))} at {percent(signal.value)} of its limit")
            elif name == "restarts":
                parts.append(plural(int(signal.value), "restart"))
            else:
                parts.append(f"{lower_first(label(name))} {value_text(signal)}")
        if any(s.value is not None for s in signals.values()):
            out.append(join(parts))
    if kube is not None:
        r = kube.report
        rollout = ""
        if kube.current is not None and kube.current.created_at is not None:
            rollout = (
                f" on {tags(kube.current.images)} (revision {kube.current.number}, rolled out "
                f"{ago(kube.current.created_at, ev.now)})"
            )
        out.append(f"{r.ready}/{r.desired} pods ready{rollout}")
    if ev.logs is not None:
        patterns = [p for p in ev.logs.patterns if not is_new(ev, p)]  # new patterns are findings, not noise
        if not ev.logs.patterns:
            out.append(f"no error lines in its logs in the last {ev.window}")
        elif patterns:
            total = sum(p.count for p in patterns)
            out.append(
                f"{total} error-looking log lines in the last {ev.window} (top “{pattern_text(patterns[0])}” "
                f"×{patterns[0].count})" + ("" if troubled else ", noise while the signals stay within thresholds")
            )
    if ev.audit is not None:
        audit_changes = [a for a in ev.audit if a.action in CHANGE_ACTIONS]
        out.append("no changes in the audit log" if not audit_changes else f"{plural(len(audit_changes), 'change')} "
                   "in the audit log, none followed by trouble")
    if ev.incidents:
        out.append(join([f"incident {i.id} is open ({i.status})" for i in ev.incidents[:3]]))
    return out


