"""`srebot eval DIR [--json]`: runs the real engine, through the real dispatcher, against scenario files and
checks each answer for the facts it must state and the claims it must not make.

A scenario file (TOML, or the same structure as JSON) holds the backends' data and the question:

    name = "bad rollout"                 # default: the file name
    question = "why is checkout failing?"
    window = "15m"                       # [defaults].window of the engine (default 15m)
    approvers = ["bob"]                  # SREBOT_APPROVERS (default ["eval-approver"])

    [services.checkout]                  # the catalog, exactly as in srebot.toml
    namespace = "shop"

    [metrics.checkout]                   # signal profiles: a number, or [time, value] steps (value from then on)
    request_rate = 100
    error_rate = [["-2h", 0.001], ["-8m", 0.08]]

    [[kubernetes.deployments]]           # a deployment, its revisions (ReplicaSets) with pods, and events
    name = "checkout"
    namespace = "shop"
    replicas = 3
    [[kubernetes.deployments.revisions]]
    revision = 7
    image = "shop/checkout:v2.1.0"
    created = "-10m"
    pods = [{count = 3, ready = false, restarts = 4, waiting = "CrashLoopBackOff", exit_code = 1, reason = "Error"}]
    [[kubernetes.deployments.events]]
    on = "pods:7"                        # deployment | revision:N | pods:N
    reason = "BackOff"
    message = "Back-off restarting failed container"

    [[logs]]                             # Loki streams: `text` every `every` from `from` until `until`, or `lines`
    labels = {namespace = "shop", app = "checkout"}
    text = "ERROR panic: nil pointer dereference"
    from = "-8m"

    [control_plane]                      # incidents, alerts, audit_logs, scripts
    audit_logs = [{at = "-11m", user = "alice", action = "update", resource = "checkout"}]

    [backends]
    down = ["logs"]                      # pointed at a closed port
    slow = {kubernetes = 2.0}            # seconds every request waits
    off = ["control_plane"]              # not configured

    [expect]                             # all must hold
    intent = "diagnose"
    top_severity = "critical"
    actions = ["rollback"]               # recommended action kinds
    contains = ["CrashLoopBackOff"]      # anywhere in the answer (summary, findings, recommendations, ruled out)
    summary_contains = ["v2.1.0"]
    matches = ['rolled out at \\d\\d:\\d\\d']   # regular expressions, anywhere
    tools_failed = ["logs"]
    ruled_out = ["OOM"]
    min_confidence = 0.5

    [forbid]                             # none may hold
    actions = ["rollback"]
    severities = ["critical"]
    contains = ["0%"]
    matches = []

    [[followups]]                        # further questions in the same thread, each with expect/forbid
    question = "and its logs?"

Times are relative to the start of the scenario ("-3m", "-2h", "-6d", "now") or RFC 3339. The backends
are loopback servers of devtools.loopback: the Kubernetes API fake (the real kubernetes client talks to it),
the Loki fake, the control-plane fake with its token endpoint, and a Prometheus HTTP API that answers
the engine's golden-signal PromQL from the profiles (devtools.loopback.prometheus explains why not raw
samples). Cost Explorer is not simulated: cost is off in every scenario.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sys
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.answer import SEVERITY_RANK, Answer
from bot.config import (
    ConfigError,
    ServiceConfig,
    Settings,
    load_settings,
    parse_duration,
)
from devtools.loopback.control_plane import ControlPlaneFake, rfc3339
from devtools.loopback.kube import KubeFake, condition
from devtools.loopback.loki import FakeLoki
from devtools.loopback.prometheus import Profile, PrometheusFake
from bot.ports import Request
from bot.toolbox import service_ref
from sessions.store import ApprovalRecord, ConversationKey, new_id

BACKENDS = ("metrics", "logs", "kubernetes", "control_plane")
TURN_TIMEOUT = 120.0


# --- the scenario format --------------------------------------------------------------------------
class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PodSpec(_Spec):
    count: int = 1
    ready: bool = True
    restarts: int = 0
    waiting: str | None = None  # CrashLoopBackOff, ImagePullBackOff, CreateContainerConfigError, ...
    message: str | None = None  # of the waiting state
    exit_code: int | None = None  # of the last termination
    reason: str | None = None  # of the last termination: Error, OOMKilled
    finished: str | None = None  # when it last terminated (default: 1 minute ago)
    terminating: str | None = None  # being deleted since
    node: str = "node-1"
    created: str | None = None  # default: shortly after its revision
    phase: str | None = None  # e.g. Pending (then it has no container state)
    previous_log: str | None = None  # log of the crashed container (kubectl logs --previous)


class RevisionSpec(_Spec):
    revision: int
    image: str
    created: str
    replicas: int | None = None  # default: the deployment's for the newest revision, else 0
    pods: list[PodSpec] = []


class EventSpec(_Spec):
    on: str = "deployment"  # deployment | revision:N | pods:N
    reason: str
    message: str = ""
    last_seen: str = "-1m"
    count: int = 1
    type: str = "Warning"


class DeploymentSpec(_Spec):
    name: str
    namespace: str = "default"
    replicas: int = 1
    revisions: list[RevisionSpec]
    events: list[EventSpec] = []
    progress_deadline_exceeded: bool = False


class KubernetesSpec(_Spec):
    deployments: list[DeploymentSpec] = []


class LogSpec(_Spec):
    labels: dict[str, str]
    text: str | None = None
    start: str = Field("-15m", alias="from")
    until: str = "now"
    every: str = "30s"
    lines: list[tuple[str, str]] = []  # [time, line]


class IncidentSpec(_Spec):
    id: str | None = None
    title: str
    severity: str = "critical"
    status: str = "new"
    affected: list[str] = []
    tags: dict[str, str] = {}
    created: str = "-5m"


class AlertSpec(_Spec):
    id: str | None = None
    name: str
    severity: str = "P1"
    status: str = "firing"
    resource: str | None = None
    message: str | None = None
    fired: str = "-5m"


class AuditSpec(_Spec):
    at: str
    user: str
    action: str = "update"
    resource: str
    resource_type: str = "application"
    changes: dict[str, Any] = {}
    result: str = "success"


class ScriptSpec(_Spec):
    id: str
    name: str
    category: str = "remediation"
    language: str = "bash"
    parameters: list[dict[str, Any]] = []


class ControlPlaneSpec(_Spec):
    incidents: list[IncidentSpec] = []
    alerts: list[AlertSpec] = []
    audit_logs: list[AuditSpec] = []
    scripts: list[ScriptSpec] = []


class BackendsSpec(_Spec):
    down: list[str] = []
    slow: dict[str, float] = {}
    off: list[str] = []


class Expect(_Spec):
    intent: str | None = None
    status: str = "completed"
    service: str | None = None
    top_severity: str | None = None
    actions: list[str] = []
    contains: list[str] = []
    summary_contains: list[str] = []
    matches: list[str] = []
    tools_failed: list[str] = []
    ruled_out: list[str] = []
    min_confidence: float | None = None


class Forbid(_Spec):
    actions: list[str] = []
    severities: list[str] = []
    contains: list[str] = []
    matches: list[str] = []


class Turn(_Spec):
    question: str
    user: str | None = None
    expect: Expect = Expect()
    forbid: Forbid = Forbid()


class Scenario(_Spec):
    name: str = ""
    description: str = ""
    question: str
    user: str = "eval-user"
    approvers: list[str] = ["eval-approver"]
    window: str = "15m"
    thresholds: dict[str, tuple[float, float]] = {}
    services: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, float | None | list[tuple[str, float | None]]]] = {}
    kubernetes: KubernetesSpec = KubernetesSpec()
    logs: list[LogSpec] = []
    control_plane: ControlPlaneSpec = ControlPlaneSpec()
    backends: BackendsSpec = BackendsSpec()
    expect: Expect = Expect()
    forbid: Forbid = Forbid()
    followups: list[Turn] = []

    def turns(self) -> list[Turn]:
        return [Turn(question=self.question, user=self.user, expect=self.expect, forbid=self.forbid), *self.followups]


class ScenarioError(Exception):
    """A scenario file that cannot be read; the message names the file and the problem."""


def load_scenario(path: Path) -> Scenario:
    try:
        raw = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ScenarioError(f"{path}: {problems}") from None
    for bad in set(scenario.backends.down + scenario.backends.off + list(scenario.backends.slow)) - set(BACKENDS):
        raise ScenarioError(f"{path}: backends: unknown backend {bad!r} (one of {', '.join(BACKENDS)})")
    scenario.name = scenario.name or path.stem
    return scenario


def scenario_files(where: Path) -> list[Path]:
    if where.is_file():
        return [where]
    return sorted(p for p in where.iterdir() if p.suffix in (".toml", ".json"))


# --- booting the backends -------------------------------------------------------------------------
class Clock:
    """Scenario times: "-3m", "now", "+1m" relative to the scenario's start, or RFC 3339."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self, text: str) -> datetime:
        text = text.strip()
        if text == "now":
            return self.now
        if text[:1] in "+-":
            seconds = parse_duration(text[1:])
            return self.now + timedelta(seconds=seconds if text[0] == "+" else -seconds)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def closed_port_url() -> str:
    """A URL nothing listens on: a backend that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _profile(value: Any, clock: Clock) -> Profile:
    if value is None or isinstance(value, (int, float)):
        return value
    return sorted(((clock(at), v) for at, v in value), key=lambda step: step[0])


def load_kubernetes(kube: KubeFake, spec: KubernetesSpec, clock: Clock) -> None:
    for dep in spec.deployments:
        revisions = sorted(dep.revisions, key=lambda r: r.revision)
        if not revisions:
            continue
        current = revisions[-1]
        live = [p for p in current.pods if not p.terminating]
        # like the deployment controller: ready counts every revision's pods, updated only the newest's
        ready = sum(p.count for rev in revisions for p in rev.pods if p.ready and not p.terminating)
        obj = kube.add_deployment(
            dep.namespace,
            dep.name,
            image=current.image,
            replicas=dep.replicas,
            revision=current.revision,
            ready=ready,
            updated=sum(p.count for p in live),
            created=clock(revisions[0].created),
            conditions=_conditions(dep, ready, clock(current.created)),
        )
        replicasets: dict[int, dict[str, Any]] = {}
        pods: dict[int, list[dict[str, Any]]] = {}
        for rev in revisions:
            replicas = rev.replicas if rev.replicas is not None else (dep.replicas if rev is current else 0)
            rs = kube.add_replicaset(
                obj,
                revision=rev.revision,
                image=rev.image,
                created=clock(rev.created),
                replicas=replicas,
                ready=sum(p.count for p in rev.pods if p.ready and not p.terminating),
            )
            replicasets[rev.revision] = rs
            pods[rev.revision] = [
                _add_pod(kube, rs, pod, clock, clock(rev.created)) for pod in rev.pods for _ in range(pod.count)
            ]
        for event in dep.events:
            kind, _, number = event.on.partition(":")
            targets: list[dict[str, Any]]
            if kind == "deployment":
                targets = [obj]
            elif kind == "revision":
                targets = [replicasets[int(number)]]
            elif kind == "pods":
                targets = pods[int(number)]
            else:
                raise ScenarioError(f"event on {event.on!r}: use deployment, revision:N or pods:N")
            for target in targets:
                kube.add_event(
                    target,
                    reason=event.reason,
                    message=event.message,
                    last_seen=clock(event.last_seen),
                    count=event.count,
                    type=event.type,
                )


def _conditions(dep: DeploymentSpec, ready: int, rolled: datetime) -> list[dict[str, Any]]:
    available = ready > 0 and ready >= dep.replicas - dep.replicas // 4
    conditions = [
        condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", rolled)
        if available
        else condition(
            "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", rolled
        )
    ]
    if dep.progress_deadline_exceeded:
        conditions.append(
            condition("Progressing", "False", "ProgressDeadlineExceeded", f"deployment {dep.name} exceeded its "
                      "progress deadline", rolled)
        )
    else:
        conditions.append(condition("Progressing", "True", "NewReplicaSetAvailable", "progressing", rolled))
    return conditions


def _add_pod(kube: KubeFake, rs: dict[str, Any], pod: PodSpec, clock: Clock, rolled: datetime) -> dict[str, Any]:
    created = clock(pod.created) if pod.created else rolled + timedelta(seconds=5)
    last = None
    if pod.exit_code is not None or pod.reason is not None:
        finished = clock(pod.finished or "-1m")
        last = {
            "exitCode": pod.exit_code if pod.exit_code is not None else 1,
            "reason": pod.reason or "Error",
            "startedAt": rfc3339(finished - timedelta(seconds=5)),
            "finishedAt": rfc3339(finished),
        }
    obj = kube.add_pod(
        rs,
        created=created,
        ready=pod.ready,
        restarts=pod.restarts,
        waiting=(pod.waiting, pod.message or "") if pod.waiting else None,
        last_terminated=last,
        terminating_since=clock(pod.terminating) if pod.terminating else None,
        node=pod.node,
    )
    if pod.phase:
        obj["status"]["phase"] = pod.phase
        if pod.phase == "Pending":
            obj["status"].pop("containerStatuses", None)
            obj["spec"].pop("nodeName", None)
    if pod.previous_log:
        kube.set_logs(rs["metadata"]["namespace"], obj["metadata"]["name"], pod.previous_log, previous=True)
    return obj


def load_control_plane(cp: ControlPlaneFake, spec: ControlPlaneSpec, clock: Clock) -> None:
    for incident in spec.incidents:
        added = cp.add_incident(
            incident.title,
            severity=incident.severity,
            status=incident.status,
            affected=incident.affected,
            tags=incident.tags,
            created=clock(incident.created),
        )
        if incident.id:
            added["id"] = incident.id
    for n, alert in enumerate(spec.alerts, 1):
        cp.alerts.append(
            {
                "id": alert.id or f"alert-{n}",
                "name": alert.name,
                "severity": alert.severity,
                "status": alert.status,
                "resource_name": alert.resource,
                "message": alert.message,
                "fired_at": rfc3339(clock(alert.fired)),
                "resolved_at": None,
            }
        )
    for n, entry in enumerate(spec.audit_logs, 1):
        cp.audit_logs.append(
            {
                "id": f"audit-{n}",
                "timestamp": rfc3339(clock(entry.at)),
                "user_id": f"u-{entry.user}",
                "username": entry.user,
                "action": entry.action,
                "resource_type": entry.resource_type,
                "resource_id": f"res-{entry.resource}",
                "resource_name": entry.resource,
                "changes": entry.changes,
                "result": entry.result,
            }
        )
    cp.scripts += [script.model_dump() for script in spec.scripts]


def load_logs(loki: FakeLoki, specs: list[LogSpec], clock: Clock) -> None:
    for spec in specs:
        lines = [(clock(at), text) for at, text in spec.lines]
        if spec.text:
            at, until, every = clock(spec.start), clock(spec.until), timedelta(seconds=parse_duration(spec.every))
            n = 0
            while at < until:
                lines.append((at, f"{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')} " + spec.text.replace("{n}", str(n))))
                at += every
                n += 1
        loki.add(spec.labels, lines)


@asynccontextmanager
async def backends(scenario: Scenario, root: Path) -> AsyncIterator[Settings]:
    """The scenario's loopback backends, running; yields the Settings that point srebot at them."""
    clock = Clock(datetime.now(UTC))
    down, off, slow = set(scenario.backends.down), set(scenario.backends.off), scenario.backends.slow
    config = root / "srebot.toml"
    config.write_text("")  # the scenario is the whole configuration: never a srebot.toml of the current directory
    catalog = {
        "services": scenario.services,
        "defaults": {"namespace": "default", "window": scenario.window},
        "thresholds": scenario.thresholds,
    }
    base = load_settings(env={}, config_path=str(config), **catalog)
    env: dict[str, str] = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{root / 'srebot.db'}",
        "SREBOT_APPROVERS": ",".join(scenario.approvers),
        "SREBOT_COST": "off",
        "SREBOT_TOOL_TIMEOUT": "5",
    }
    async with AsyncExitStack() as stack:
        if "metrics" not in off:
            prometheus = PrometheusFake()
            prometheus.delay = slow.get("metrics", 0.0)
            for name, profiles in scenario.metrics.items():
                ref = service_ref(base, base.service(name) or _deployment_config(scenario, name))
                prometheus.add_service(ref, {signal: _profile(v, clock) for signal, v in profiles.items()})
            await prometheus.start()
            stack.push_async_callback(prometheus.close)
            env["PROMETHEUS_URL"] = closed_port_url() if "metrics" in down else prometheus.url
        if "logs" not in off:
            loki = FakeLoki()
            loki.delay = slow.get("logs", 0.0)
            load_logs(loki, scenario.logs, clock)
            await loki.start()
            stack.push_async_callback(loki.close)
            env["LOKI_URL"] = closed_port_url() if "logs" in down else loki.url
        if "kubernetes" in off:
            env["SREBOT_KUBERNETES"] = "off"
        else:
            kube = KubeFake(delay=slow.get("kubernetes", 0.0))
            load_kubernetes(kube, scenario.kubernetes, clock)
            await kube.start()
            stack.push_async_callback(kube.stop)
            kubeconfig = kube.kubeconfig_path
            if "kubernetes" in down:
                broken = kube.kubeconfig()
                broken["clusters"][0]["cluster"]["server"] = closed_port_url()
                kubeconfig = str(root / "kubeconfig-down")
                Path(kubeconfig).write_text(yaml.safe_dump(broken))
            env |= {"KUBECONFIG": kubeconfig, "SREBOT_KUBE_CONTEXT": kube.context}
        if "control_plane" not in off:
            cp = ControlPlaneFake(delay=slow.get("control_plane", 0.0))
            load_control_plane(cp, scenario.control_plane, clock)
            await cp.start()
            stack.push_async_callback(cp.stop)
            url = closed_port_url() if "control_plane" in down else cp.url
            env |= {
                "CONTROL_PLANE_URL": url,
                "CONTROL_PLANE_TOKEN_URL": f"{url}/token",
                "CONTROL_PLANE_CLIENT_ID": cp.client_id,
                "CONTROL_PLANE_CLIENT_SECRET": cp.client_secret,
            }
        yield load_settings(env=env, config_path=str(config), **catalog)


def _deployment_config(scenario: Scenario, name: str) -> ServiceConfig:
    namespace = next((d.namespace for d in scenario.kubernetes.deployments if d.name == name), "default")
    return ServiceConfig(name=name, namespace=namespace, deployment=name)


# --- running and judging --------------------------------------------------------------------------
class EvalPort:
    """A ReplyPort that keeps the answer of one request."""

    def __init__(self) -> None:
        self.progress_lines: list[str] = []
        self.approvals: list[ApprovalRecord] = []
        self.answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

    async def progress(self, text: str) -> None:
        self.progress_lines.append(text)

    async def post(self, message: Answer | str) -> None:
        if not self.answer.done():
            self.answer.set_result(message if isinstance(message, Answer) else Answer(summary=message))

    async def ask_approval(self, approval: ApprovalRecord) -> None:
        self.approvals.append(approval)


def answer_text(answer: Answer) -> str:
    """Everything a person reads in an answer, as one text."""
    parts = [answer.summary]
    parts += [f"{f.title} {f.evidence or ''}" for f in answer.findings]
    parts += [r.title for r in answer.recommendations]
    parts += [f"{r.cause}: {r.why}" for r in answer.ruled_out]
    return "\n".join(parts)


def judge(answer: Answer, expect: Expect, forbid: Forbid) -> list[str]:
    """Why `answer` fails its expectations; empty when it passes."""
    reasons: list[str] = []
    text = answer_text(answer)
    lowered = text.lower()
    top = min((f.severity for f in answer.findings), key=SEVERITY_RANK.__getitem__, default=None)
    kinds = [r.action.kind for r in answer.recommendations if r.action is not None]
    failed = [t.name for t in answer.tools if not t.ok]
    if expect.intent and answer.intent != expect.intent:
        reasons.append(f"intent is {answer.intent}, expected {expect.intent}")
    if answer.status != expect.status:
        reasons.append(f"status is {answer.status}, expected {expect.status}")
    if expect.service and answer.service != expect.service:
        reasons.append(f"service is {answer.service}, expected {expect.service}")
    if expect.top_severity and top != expect.top_severity:
        reasons.append(f"top severity is {top or 'none (no findings)'}, expected {expect.top_severity}")
    for kind in expect.actions:
        if kind not in kinds:
            reasons.append(f"no {kind} recommended (recommended: {', '.join(kinds) or 'no action'})")
    for needle in expect.contains:
        if needle.lower() not in lowered:
            reasons.append(f"the answer does not say “{needle}”")
    for needle in expect.summary_contains:
        if needle.lower() not in answer.summary.lower():
            reasons.append(f"the summary does not say “{needle}”")
    for pattern in expect.matches:
        if not re.search(pattern, text):
            reasons.append(f"nothing in the answer matches /{pattern}/")
    for tool in expect.tools_failed:
        if tool not in failed:
            reasons.append(f"tools do not show {tool} as failed (failed: {', '.join(failed) or 'none'})")
        elif tool not in answer.summary:
            reasons.append(f"the summary does not name {tool}, which failed")
    ruled = [r.cause.lower() for r in answer.ruled_out]
    for cause in expect.ruled_out:
        if not any(cause.lower() in r for r in ruled):
            reasons.append(f"{cause} is not ruled out (ruled out: {', '.join(ruled) or 'nothing'})")
    if expect.min_confidence is not None and answer.confidence < expect.min_confidence:
        reasons.append(f"confidence {answer.confidence:.2f} is below {expect.min_confidence:.2f}")
    for kind in forbid.actions:
        if kind in kinds:
            reasons.append(f"recommends {kind}, which it must not")
    for severity in forbid.severities:
        if any(f.severity == severity for f in answer.findings):
            titles = "; ".join(f.title for f in answer.findings if f.severity == severity)
            reasons.append(f"raises a {severity} finding, which it must not: {titles}")
    for needle in forbid.contains:
        if needle.lower() in lowered:
            reasons.append(f"the answer says “{needle}”, which it must not")
    for pattern in forbid.matches:
        if re.search(pattern, text):
            reasons.append(f"the answer matches /{pattern}/, which it must not")
    return reasons


@dataclass
class Result:
    name: str
    path: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    answers: list[Answer] = field(default_factory=list)


async def run_scenario(path: Path) -> Result:
    from bot.app import Runtime

    started = time.monotonic()
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        return Result(path.stem, str(path), False, [str(exc)])
    result = Result(scenario.name, str(path), False)
    with tempfile.TemporaryDirectory(prefix="srebot-eval-") as tmp:
        try:
            async with backends(scenario, Path(tmp)) as settings:
                runtime = Runtime(settings)
                await runtime.start()
                try:
                    thread = new_id("eval")
                    for n, turn in enumerate(scenario.turns(), 1):
                        port = EvalPort()
                        runtime.dispatcher.submit(
                            Request(
                                key=ConversationKey("cli", "eval", scenario.name, thread),
                                user=turn.user or scenario.user,
                                text=turn.question,
                                port=port,
                            )
                        )
                        answer = await asyncio.wait_for(port.answer, TURN_TIMEOUT)
                        await runtime.dispatcher.wait_idle()
                        result.answers.append(answer)
                        prefix = f"turn {n} (“{turn.question}”): " if len(scenario.followups) else ""
                        result.reasons += [prefix + reason for reason in judge(answer, turn.expect, turn.forbid)]
                finally:
                    await runtime.stop()
        except (ScenarioError, ConfigError) as exc:
            result.reasons.append(str(exc))
        except TimeoutError:
            result.reasons.append(f"no answer within {TURN_TIMEOUT:g} s")
    result.passed = not result.reasons
    result.seconds = time.monotonic() - started
    return result


def report(results: list[Result], *, as_json: bool, out: Any = None) -> None:
    out = out or sys.stdout
    passed = sum(r.passed for r in results)
    if as_json:
        body = {
            "scenarios": [
                {
                    "name": r.name,
                    "file": r.path,
                    "passed": r.passed,
                    "reasons": r.reasons,
                    "seconds": round(r.seconds, 2),
                    "answers": [a.to_json() for a in r.answers],
                }
                for r in results
            ],
            "passed": passed,
            "failed": len(results) - passed,
        }
        print(json.dumps(body, indent=2, ensure_ascii=False), file=out)
        return
    width = max((len(r.name) for r in results), default=0)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  ({r.seconds:.1f} s)", file=out)
        for reason in r.reasons:
            print(f"      - {reason}", file=out)
        if r.answers:  # what it found, pass or fail
            print(f"      answer: {r.answers[-1].summary[:400]}", file=out)
    print(f"{passed} passed, {len(results) - passed} failed", file=out)


async def evaluate(where: Path, *, as_json: bool = False, only: str | None = None) -> int:
    """Run every scenario under `where` (or the one file); 0 when all pass, 1 otherwise."""
    if not where.exists():
        print(f"srebot eval: {where} does not exist", file=sys.stderr)
        return 2
    files = [p for p in scenario_files(where) if only is None or only in p.stem]
    if not files:
        print(f"srebot eval: no scenario files (*.toml, *.json) in {where}", file=sys.stderr)
        return 2
    # tool failures are what some scenarios are about; their log lines would only clutter the report
    logging.getLogger("srebot.tools").setLevel(logging.ERROR)
    results = [await run_scenario(path) for path in files]
    report(results, as_json=as_json)
    return 0 if all(r.passed for r in results) else 1
