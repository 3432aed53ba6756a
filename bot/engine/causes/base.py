"""The failure catalogue's vocabulary: the `World` a rule reads (API objects, logs, metrics, alerts, at a moment),
the `Verdict` it returns (the cause, its evidence, what it rules out, what fixes it) and the `Rule` it declares.

A rule is one module of this package with a module-level `RULE`; bot.engine.causes finds them all. Rules are pure
functions of the World: they never do I/O, so each is unit-tested on API objects as the server returns them.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.answer import Action
from bot.engine.text import label, value_text
from tools.control_plane import Alert, AuditLog, Resource
from tools.kubernetes import WORKLOAD_KINDS, Snapshot
from tools.logs import LogLine, LogReport
from tools.metrics import QueryResult, Signal

Obj = dict[str, Any]

# Restarts or failures longer ago than this, that did not repeat, are history rather than a current fault.
SETTLED = timedelta(minutes=10)

# How the kubelet says a probe got no answer in time (HTTP client deadline, exec/gRPC timeout).
TIMED_OUT = re.compile(r"(?i)context deadline exceeded|Client\.Timeout|timed? ?out|timeout")
# Effects a mechanism produces and a symptom observes (Rule.explains, Verdict.shows): failed answers, slow answers.
ERRORS, SLOW = "errors", "slow"


@dataclass
class Plan:
    """A recommendation before it is proposed: `action` None for advice that is no write action."""

    title: str
    action: Action | None = None


@dataclass
class Verdict:
    """One cause a rule found. `current` False: it explains history (it happened, it is not failing now)."""

    family: str
    cause: str  # a noun phrase that follows "because of": "its readiness probe failing (exec `sh -c exit 1`)"
    title: str  # the finding: what is wrong, where
    evidence: list[str]  # each names its source: object and field, event reason and message, log line, metric
    severity: str = "critical"  # critical | warning | info
    current: bool = True
    ruled_out: list[tuple[str, str]] = field(default_factory=list)  # (cause, why)
    plans: list[Plan] = field(default_factory=list)
    sources: set[str] = field(default_factory=lambda: {"kubernetes"})
    subjects: set[str] = field(default_factory=set)  # names of the objects it is about (pods, nodes, alerts)
    # True: what is wrong is next to the service (a drain it blocks, a schedule paused on purpose) while the service
    # itself is not impaired, so the answer does not call it degraded
    service_ok: bool = False
    # The effects this verdict observes rather than explains: a probe that times out observes the process answering
    # slowly (SLOW), a container that exits after writing a line observes that line. A current verdict whose rule
    # explains one of them (Rule.explains, or a log line it quotes as its evidence) is its mechanism: it leads, this
    # one is said as its consequence.
    shows: set[str] = field(default_factory=set)
    # the healthy user-facing signals that show its users do not feel it ("error rate 0.05%", "3/3 pods ready"): set by
    # the catalogue for a rule whose `impact` signals were all read and are healthy (see Rule.impact)
    unaffected: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Query:
    """A PromQL instant query a rule needs, with {namespace} {workload} {service} placeholders."""

    key: str
    promql: str


@dataclass(frozen=True)
class Rule:
    """A cause family. `rank`: where it stands among causes of equal severity — lower is closer to the root (a
    missing StorageClass before the Pending pod it leaves). `reads` says what evidence it needs, for the README
    and for the engine to skip a rule whose evidence could not be read."""

    family: str
    rank: int
    reads: tuple[str, ...]
    detect: Callable[["World"], list[Verdict]]
    describe: str  # one line for the README's catalogue
    queries: tuple[Query, ...] = ()
    # The effects this family produces when it is the mechanism (ERRORS, SLOW): a verdict that shows one of them
    # (Verdict.shows) is its consequence.
    explains: tuple[str, ...] = ()
    # The user-facing signals (World.USER_SIGNALS) through which this family hurts users: a measurement such as CPU
    # throttling matters to users only as latency. When each of them was read and is healthy and every replica is
    # ready, its verdict is not user-impacting — a tuning matter, not an incident. Empty: the family is a fault
    # whatever the signals say (a crash loop, an expired certificate).
    impact: tuple[str, ...] = ()


@dataclass
class World:
    """What the tools returned about one service at `now`."""

    service: str
    namespace: str
    now: datetime
    window_seconds: float
    snap: Snapshot | None = None
    logs: LogReport | None = None
    pod_logs: dict[str, str] = field(default_factory=dict)  # "pod/container" -> the failed run's output
    tail: list[LogLine] = field(default_factory=list)  # the service's newest log lines (Loki), oldest first
    signals: dict[str, Signal] = field(default_factory=dict)
    metrics: dict[str, QueryResult] = field(default_factory=dict)  # Query.key -> result
    alerts: list[Alert] = field(default_factory=list)  # firing alerts that concern the service
    resolved_alerts: list[Alert] = field(default_factory=list)  # alerts about it that fired and resolved
    resources: list[Resource] = field(default_factory=list)  # control-plane resources the logs name
    audit: list[AuditLog] = field(default_factory=list)  # changes the control plane recorded
    # changes it recorded on what the service depends on: the hosts its pods are configured to reach
    # (configured_hosts: a flushed cache), the controllers that would remove its finalizers (one scaled to 0)
    dependency_audit: list[AuditLog] = field(default_factory=list)
    known: set[str] = field(default_factory=set)  # services of the catalog
    question: str = ""

    # --- the workload and its pods ------------------------------------------------------------------
    @property
    def kind(self) -> str | None:
        return self.snap.kind if self.snap else None

    @property
    def workload(self) -> Obj | None:
        return self.snap.workload if self.snap else None

    def pods(self) -> list[Obj]:
        """The workload's pods that are not being deleted, of its current ReplicaSet for a Deployment."""
        if self.snap is None:
            return []
        live = [p for p in self.snap.pods if not meta(p).get("deletionTimestamp")]
        current = self.current_replicaset()
        if current is None:
            return live
        uid = meta(current).get("uid")
        return [p for p in live if any(r.get("uid") == uid for r in meta(p).get("ownerReferences") or [])] or [
            p for p in live if not self.old_replicaset_pod(p)]

    def old_pods(self) -> list[Obj]:
        """Pods of earlier ReplicaSets, or being deleted."""
        if self.snap is None:
            return []
        current = {name(p) for p in self.pods()}
        return [p for p in self.snap.pods if name(p) not in current]

    def current_replicaset(self) -> Obj | None:
        if self.snap is None or not self.snap.replicasets or self.workload is None:
            return None
        wanted = meta(self.workload).get("annotations", {}).get("deployment.kubernetes.io/revision")
        by_revision = {meta(rs).get("annotations", {}).get("deployment.kubernetes.io/revision"): rs
                       for rs in self.snap.replicasets}
        if wanted in by_revision:
            return by_revision[wanted]
        return max(self.snap.replicasets, key=lambda rs: meta(rs).get("creationTimestamp") or "")

    def old_replicaset_pod(self, pod: Obj) -> bool:
        current = self.current_replicaset()
        owners = [r for r in meta(pod).get("ownerReferences") or [] if r.get("kind") == "ReplicaSet"]
        return current is not None and bool(owners) and all(r.get("uid") != meta(current).get("uid") for r in owners)

    def template(self) -> Obj:
        """The pod spec the workload creates pods from (the pod's own for a bare pod)."""
        spec = (self.workload or {}).get("spec") or {}
        if self.kind == "Pod":
            return spec
        if self.kind == "CronJob":
            return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
        if spec.get("template"):
            return spec["template"].get("spec") or {}
        pods = self.snap.pods if self.snap else []
        return (pods[0].get("spec") or {}) if pods else {}

    # --- events ---------------------------------------------------------------------------------------
    def involved(self) -> set[tuple[str, str]]:
        """(kind, name) of every object this workload involves: itself, ReplicaSets, pods, claims, nodes, HPAs."""
        wanted = self.snap.name if self.snap else self.service
        # a workload that no longer exists is whichever kind left events under its name
        out = {(self.kind, wanted)} if self.kind else {(k, wanted) for k in WORKLOAD_KINDS}
        if self.snap is None:
            return out
        out |= {("ReplicaSet", name(rs)) for rs in self.snap.replicasets}
        out |= {("Pod", name(p)) for p in self.snap.pods}
        out |= {("Job", name(j)) for j in self.snap.items("jobs")}
        for pod in self.snap.pods:
            for volume in (pod.get("spec") or {}).get("volumes") or []:
                claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                if claim:
                    out.add(("PersistentVolumeClaim", claim))
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                out.add(("Node", node))
        for hpa in self.snap.items("horizontalpodautoscalers"):
            if (hpa.get("spec") or {}).get("scaleTargetRef", {}).get("name") == self.service:
                out.add(("HorizontalPodAutoscaler", name(hpa)))
        return out

    def events(self, *reasons: str, kind: str | None = None) -> list[Obj]:
        """Events of the involved objects (and of pods named after the workload, deleted ones included),
        newest first; only `reasons` when given."""
        if self.snap is None:
            return []
        involved = self.involved()
        prefixes = tuple(f"{n}-" for k, n in involved if k in ("ReplicaSet", "Job", self.kind or "")) + (
            f"{self.snap.name}-",)
        out = []
        for event in self.snap.events:
            obj = event.get("involvedObject") or {}
            ok = (obj.get("kind"), obj.get("name")) in involved or (
                obj.get("kind") == "Pod" and str(obj.get("name", "")).startswith(prefixes))
            if ok and (not reasons or event.get("reason") in reasons) and (kind is None or obj.get("kind") == kind):
                out.append(event)
        return sorted(out, key=lambda e: event_time(e) or datetime.min.replace(tzinfo=self.now.tzinfo), reverse=True)

    def ago(self, when: datetime | None) -> timedelta | None:
        return None if when is None else self.now - when

    # --- logs -----------------------------------------------------------------------------------------
    def log_lines(self) -> list[tuple[str, str]]:
        """(where, line) of every log line read, oldest first within each source: failed runs' output, Loki's
        newest lines, then a sample of each of Loki's error patterns not already among them."""
        out = [(key, line.strip()) for key, text in self.pod_logs.items() for line in text.splitlines()
               if line.strip() and not line.startswith("[")]
        out += [(f"Loki, {line.labels.get('pod') or self.service}", line.line) for line in self.tail]
        seen = {line for _, line in out}
        if self.logs is not None:
            out += [(f"Loki, ×{p.count} in the window", p.sample) for p in self.logs.patterns if p.sample not in seen]
        return out

    def find_lines(self, pattern: re.Pattern[str]) -> list[tuple[str, str, re.Match[str]]]:
        return [(where, line, m) for where, line in self.log_lines() for m in [pattern.search(line)] if m]


    def calls_healthy(self) -> bool:
        """True when the error rate and latency have data and are within thresholds: error lines are then noise."""
        calls = [self.signals.get(n) for n in ("error_rate", "latency_p99")]
        with_data = [s for s in calls if s is not None and s.value is not None]
        return bool(with_data) and all(s.health not in ("warning", "critical") for s in with_data)

    # What the users of a service feel: its answers' error rate and latency (and, below, its ready replicas).
    USER_SIGNALS = ("error_rate", "latency_p99")

    def unaffected(self, impact: tuple[str, ...]) -> list[str]:
        """The healthy user-facing signals as clauses ("error rate 0.05%", "p99 latency 180 ms", "3/3 pods ready")
        when every `impact` signal has data, no user-facing signal is unhealthy and every pod is ready; [] otherwise."""
        read = [self.signals.get(n) for n in self.USER_SIGNALS]
        read = [s for s in read if s is not None and s.value is not None]
        pods = self.pods()
        if not impact or not pods or not all(ready(p) for p in pods) \
                or any(self.signals.get(n) is None or self.signals[n].value is None for n in impact) \
                or any(s.health in ("warning", "critical") for s in read):
            return []
        return [f"{label(s.name)[0].lower()}{label(s.name)[1:]} {value_text(s)}" for s in read] + [f"{len(pods)}/{len(pods)} pods ready"]

    def pods_fine(self) -> tuple[str, str] | None:
        """('Crashing pods', '2/2 pods running and ready, 0 restarts') when every pod runs fine."""
        pods = self.pods()
        if not pods or not all(ready(p) for p in pods):
            return None
        count = sum(restarts(p) for p in pods)
        return ("Crashing pods", f"{len(pods)}/{len(pods)} pods are running and ready, {count} restarts: the "
                                 "containers do not crash")


def quoted(evidence: list[str]) -> set[str]:
    """The log lines a verdict quotes as evidence ('log (Loki, pod): …', 'log of the crashed container …: …'), cut
    to their start so that differently shortened quotes of one line compare equal."""
    return {e.split(": ", 1)[1][:100] for e in evidence if e.startswith("log") and ": " in e}


def explains(verdict: Verdict, effects: tuple[str, ...]) -> set[str]:
    """What a current verdict accounts for: its family's effects (Rule.explains) and the log lines it reads as its
    cause."""
    return set(effects) | quoted(verdict.evidence)


# --- API object helpers -------------------------------------------------------------------------------
def meta(obj: Obj | None) -> Obj:
    return (obj or {}).get("metadata") or {}


def name(obj: Obj | None) -> str:
    return str(meta(obj).get("name", ""))


def when(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def set_true_by(world: World, obj: Obj, field: str) -> tuple[str, datetime | None, str]:
    """(who, when, why) set spec.`field` true on `obj` (a CronJob's suspend, a Deployment's paused): the audit log's
    change of it (recorded as `field` or `spec.field`), else the manager that owns it in managedFields; ('', None, '')
    when neither says."""
    for entry in sorted(world.audit, key=lambda a: a.timestamp, reverse=True):
        changes = entry.changes or {}
        change = changes.get(field) or changes.get(f"spec.{field}")
        if entry.resource_name == name(obj) and isinstance(change, dict) and change.get("to") in (True, "true"):
            reason = changes.get("reason")
            why = reason.get("to") if isinstance(reason, dict) else None
            return entry.username or entry.user_id or "someone", entry.timestamp, str(why or "")
    owners = [m for m in meta(obj).get("managedFields") or []
              if f'"f:{field}"' in json.dumps((m.get("fieldsV1") or {}).get("f:spec") or {})]
    if owners:
        latest = max(owners, key=lambda m: m.get("time") or "")
        return f"field manager {latest.get('manager')}", when(latest.get("time")), ""
    return "", None, ""


def event_time(event: Obj) -> datetime | None:
    return when(event.get("lastTimestamp")) or when(event.get("eventTime")) or when(
        (event.get("series") or {}).get("lastObservedTime")) or when(meta(event).get("creationTimestamp"))


def event_text(event: Obj) -> str:
    obj = event.get("involvedObject") or {}
    count = event.get("count") or (event.get("series") or {}).get("count") or 1
    return (f"event {event.get('reason')} on {str(obj.get('kind', '')).lower()} {obj.get('name')}"
            + (f" ×{count}" if count > 1 else "") + f": {event.get('message') or ''}".rstrip(": "))


def statuses(pod: Obj, *, init: bool = False) -> list[Obj]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses" if init else "containerStatuses") or [])


def spec_container(pod_spec: Obj, container: str) -> Obj:
    for c in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        if c.get("name") == container:
            return c
    return {}


def ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def restarts(pod: Obj) -> int:
    return sum(int(c.get("restartCount") or 0) for c in statuses(pod) + statuses(pod, init=True))


def waiting(status: Obj) -> Obj | None:
    return (status.get("state") or {}).get("waiting")


def terminated(status: Obj) -> Obj | None:
    return (status.get("state") or {}).get("terminated")


def last_terminated(status: Obj) -> Obj | None:
    return (status.get("lastState") or {}).get("terminated")


def condition(obj: Obj, kind: str) -> Obj | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20,
          "Gi": 2**30, "Ti": 2**40}


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity ("250m", "512Mi", "2") as a number; None when absent or unreadable."""
    if value is None:
        return None
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in _UNITS:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


def pod_list(pods: Iterable[Obj], limit: int = 3) -> str:
    names = [name(p) for p in pods]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def probe_text(probe: Obj) -> str:
    """'exec `sh -c exit 1`', 'HTTP GET :8081/healthz', 'TCP :5432'."""
    if "exec" in probe:
        return "exec `" + " ".join(probe["exec"].get("command") or []) + "`"
    if "httpGet" in probe:
        http = probe["httpGet"]
        return f"HTTP GET :{http.get('port')}{http.get('path', '/')}"
    if "tcpSocket" in probe:
        return f"TCP :{probe['tcpSocket'].get('port')}"
    if "grpc" in probe:
        return f"gRPC :{probe['grpc'].get('port')}"
    return "probe"


def short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# How a container runtime (runc, crun, containerd, Docker) says it could not exec the container's command.
EXEC_FAILED = re.compile(r'exec(?::\s*|\s+)"?(?P<command>[^":\s]+)"?:\s*(?P<why>executable file not found in \$PATH|'
                         r'no such file or directory|permission denied)', re.IGNORECASE)
_EXEC_MEANING = {"executable file not found in $path": "is not found in the image",
                 "no such file or directory": "does not exist in the image",
                 "permission denied": "is not executable in the image"}


@dataclass(frozen=True)
class StartFailure:
    """A container whose process never started: the runtime could not exec its command."""

    pod: str
    container: str
    command: str  # what the runtime tried to exec: "python"
    meaning: str  # "the command python is not found in the image"
    words: str  # the runtime's words that say it: 'exec: "python": executable file not found in $PATH'
    message: str  # its whole message
    source: str  # where they were read: "state.terminated.message", "event Failed"
    spec: str  # the container's command and args as the spec has them, "" when it sets none
    image: str

    @property
    def fix(self) -> str:
        given = f" (now `{self.spec}`)" if self.spec else " (it runs the image's ENTRYPOINT/CMD)"
        return (f"Fix container {self.container}'s command/args{given} or the image ({self.image}) so that "
                f"{self.command} exists in it")


def start_failures(world: World, *, init: bool = False) -> list[StartFailure]:
    """Containers the runtime could not start, from the terminated or waiting state's message (state and
    lastState) and from the pods' Failed events, whichever carries the runtime's words."""
    if world.snap is None:
        return []
    failed_events = {}
    for event in world.events("Failed", kind="Pod"):
        obj = event.get("involvedObject") or {}
        container = re.search(r"\{(.+)\}", obj.get("fieldPath") or "")
        failed_events.setdefault((obj.get("name"), container.group(1) if container else None), event)
    out = []
    for pod in world.snap.pods:
        spec = pod.get("spec") or {}
        for status in statuses(pod, init=init):
            states = [(terminated(status), "state.terminated.message"),
                      (last_terminated(status), "lastState.terminated.message"), (waiting(status), "state.waiting.message")]
            found = [(state.get("message") or "", where) for state, where in states if state]
            event = failed_events.get((name(pod), status.get("name"))) or failed_events.get((name(pod), None))
            if event:
                found.append((event.get("message") or "", "event Failed"))
            match, message, source = next(((m, text, where) for text, where in found
                                           for m in [EXEC_FAILED.search(text)] if m), (None, "", ""))
            if match is None:
                continue
            container = spec_container(spec, str(status.get("name")))
            command = " ".join(map(str, (container.get("command") or []) + (container.get("args") or [])))
            out.append(StartFailure(
                pod=name(pod), container=str(status.get("name")), command=match.group("command"),
                meaning=f"the command {match.group('command')} {_EXEC_MEANING[match.group('why').lower()]}",
                words=match.group(0), message=message, source=source, spec=command,
                image=str(container.get("image") or status.get("image") or "its image")))
    return out


# How runtimes log a stop-the-world collection pause and its length: JDK unified logging ("Pause Full (G1 Compaction
# Pause) 3921M->3874M(4096M) 2700.400ms"), JDK 8 ("[Full GC (Allocation Failure) …, 2.7654321 secs]"),
# -XX:+PrintGCApplicationStoppedTime, Elasticsearch's JvmGcMonitorService ("[gc][old][944] duration [3.2s]",
# "[gc][944] overhead, spent [3.2s] collecting in the last [3.5s]"), V8's
# --trace-gc ("Mark-Compact 2000.1 (2050.3) -> 1990.2 (2051.3) MB, 2345.6 / 0.0 ms") and .NET's "GC pause".
GC_PAUSE = re.compile(
    r"(?i)(?:\bPause (?:Full|Young|Mixed|Remark|Cleanup|Initial Mark)\b.*?(?P<a>\d+(?:\.\d+)?)\s?(?P<au>ms|s)\b\s*$"
    r"|\b(?:Full )?GC\b[^\]]*?,\s*(?P<b>\d+(?:\.\d+)?) secs\]"
    r"|application threads were stopped:\s*(?P<c>\d+(?:\.\d+)?) seconds"
    r"|\[gc\](?:\[[a-z]\w*\])?(?:\[\d+\]){1,2} (?:duration|overhead, spent) \[(?P<d>\d+(?:\.\d+)?)(?P<du>ms|s|m)\]"
    r"|\b(?:Mark-Compact|Mark-sweep|Scavenge)\b.*?MB,\s*(?P<e>\d+(?:\.\d+)?) / [\d.]+ ms"
    r"|\bGC pause\w*\W+(?P<f>\d+(?:\.\d+)?)\s?(?P<fu>ms|s)\b)")
_PAUSE_UNIT = {"ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class Pause:
    """A garbage-collection pause a container logged: the process answered nothing for `seconds`."""

    where: str
    line: str
    seconds: float


def gc_pauses(world: World) -> list[Pause]:
    """Every garbage-collection pause in the logs read, longest first."""
    out = []
    for where, line, m in world.find_lines(GC_PAUSE):
        groups = m.groupdict()
        number = next(groups[k] for k in "abcdef" if groups[k])
        unit = groups["au"] or groups["du"] or groups["fu"] or ("ms" if groups["e"] else "s")
        out.append(Pause(where, line, float(number) * _PAUSE_UNIT[unit.lower()]))
    return sorted(out, key=lambda p: p.seconds, reverse=True)


# Environment variables that name where a dependency is: DB_HOST, CACHE_URL, REDIS_ADDR, AUTH_ENDPOINT, KAFKA_SERVERS.
_HOST_VARIABLE = re.compile(r"(?i)(?:host|url|uri|addr|address|endpoint|dsn|servers?)$")
_HOST = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:[^@/\s]*@)?(?P<host>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)"
                   r"(?:\.[a-z0-9.-]+)?(?::\d+)?(?:[/?].*)?$", re.IGNORECASE)


def configured_hosts(world: World) -> list[str]:
    """The first DNS label of every host the workload's containers are configured to reach through their
    environment (catalog-cache of `CACHE_URL=redis://catalog-cache.storefront.svc:6379/0`), in the order given."""
    out: list[str] = []
    for container in (world.template().get("containers") or []) + (world.template().get("initContainers") or []):
        for variable in container.get("env") or []:
            value = str(variable.get("value") or "")
            match = _HOST.match(value) if _HOST_VARIABLE.search(str(variable.get("name", ""))) else None
            host = match.group("host").lower() if match else None
            if host and host not in out and host not in (world.service, "localhost") and not host.isdigit():
                out.append(host)
    return out


def selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects an object with `labels`; an empty one
    selects everything, as the API server reads it."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, values = expr.get("key"), set(expr.get("values") or [])
        tests = {"In": lambda: labels.get(key) in values, "NotIn": lambda: labels.get(key) not in values,
                 "Exists": lambda: key in labels, "DoesNotExist": lambda: key not in labels}
        if not tests.get(expr.get("operator"), lambda: False)():
            return False
    return True
