"""`srebot eval DIR [--json] [--only NAME]`: asks the real engine, through the real dispatcher and the real tool
clients, each scenario world's question, and grades the answer by the world's answer key
(shared/scenarios/FORMAT.md, "Grading").

For every scenario directory (devtools.world) the backends are booted from its data: the Kubernetes API
(devtools.loopback.kubeworld), Loki (devtools.loopback.loki), a real Prometheus backfilled with its series
(devtools.loopback.backfilled; the world's `signals` are checked against it before the question is asked) and the
control plane with its token endpoint (devtools.loopback.control_plane). The catalog is the world's config.toml.
Cost Explorer is not simulated: cost is off.

Grading serialises the answer with `json.dumps(answer, ensure_ascii=False)`; the scenario passes when the status is
"completed", every `expect.required` regex is found and no `expect.forbidden` one (case-insensitive), `critical`
matches "some finding is critical" when set, and some recommendation carries `expect.action` when set.
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
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.answer import Answer
from bot.config import ConfigError, Settings, load_settings
from bot.ports import Request
from devtools.loopback.backfilled import BackfilledPrometheus, MetricsError
from devtools.loopback.control_plane import ControlPlaneFake
from devtools.loopback.kubeworld import KubeWorld
from devtools.loopback.loki import FakeLoki
from devtools.world import Expect, ScenarioError, World, load_world, scenario_dirs
from sessions.store import ApprovalRecord, ConversationKey, new_id

TURN_TIMEOUT = 120.0
EXCERPT = 60  # characters either side of a forbidden claim, in a failure message


# --- grading ---------------------------------------------------------------------------------------
def grade(answer: dict[str, Any], expect: Expect, name_of: Any = None) -> list[str]:
    """Why `answer` (Answer JSON) fails `expect`; empty when it passes. `name_of(regex)` names a required fact."""
    name_of = name_of or (lambda pattern: pattern)
    text = json.dumps(answer, ensure_ascii=False)
    reasons: list[str] = []
    if answer.get("status") != "completed":
        reasons.append(f"status is {answer.get('status')!r}, not 'completed'")
    for pattern in expect.required:
        if not re.search(pattern, text, re.IGNORECASE):
            label = name_of(pattern)
            reasons.append(f"missing fact: {label}" + (f"  /{_short(pattern)}/" if label == pattern else ""))
    for pattern in expect.forbidden:
        if found := re.search(pattern, text, re.IGNORECASE):
            start, end = max(found.start() - EXCERPT, 0), min(found.end() + EXCERPT, len(text))
            reasons.append(f"forbidden claim: …{text[start:end]}…  /{_short(pattern)}/")
    findings = answer.get("findings") or []
    critical = any(f.get("severity") == "critical" for f in findings)
    if expect.critical is not None and critical != expect.critical:
        reasons.append("a critical finding was expected, none was raised" if expect.critical
                       else "no critical finding was expected: " + "; ".join(
                           f.get("title", "") for f in findings if f.get("severity") == "critical"))
    kinds = [(r.get("action") or {}).get("kind") for r in answer.get("recommendations") or []]
    if expect.action and expect.action not in kinds:
        reasons.append(f"no {expect.action} recommended (actions: {', '.join(k for k in kinds if k) or 'none'})")
    return reasons


def _short(pattern: str, width: int = 100) -> str:
    return pattern if len(pattern) <= width else pattern[: width - 1] + "…"


# --- the backends of a world ------------------------------------------------------------------------
def closed_port_url() -> str:
    """A URL nothing listens on: a backend that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Backends:
    settings: Settings
    prometheus: BackfilledPrometheus | None = None
    kube: KubeWorld | None = None
    control_plane: ControlPlaneFake | None = None


@asynccontextmanager
async def world_backends(
    world: World, root: Path, *, metrics_url: str | None = None, overrides: dict[str, str] | None = None
) -> AsyncIterator[Backends]:
    """The world's backends, running; yields the Settings that point srebot at them. `metrics_url` is a metrics
    server already running, used instead of backfilling a real Prometheus from metrics.json (the demo's, which
    needs no binary); `overrides` are settings of the caller's own."""
    down, off, slow = set(world.spec.backends.down), set(world.spec.backends.off), world.spec.backends.slow
    config = root / "srebot.toml"
    config.write_text(world.config)
    env: dict[str, str] = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{root / 'srebot.db'}",
        "SREBOT_APPROVERS": ",".join(world.spec.approvers),
        "SREBOT_COST": "off",
        "SREBOT_TOOL_TIMEOUT": "5",
        **(overrides or {}),
    }
    running: dict[str, Any] = {}
    async with AsyncExitStack() as stack:
        if metrics_url is not None:
            env["PROMETHEUS_URL"] = metrics_url
        elif "metrics" not in off:
            prometheus = BackfilledPrometheus(world.metrics, world.now, root / "prometheus")
            await prometheus.start()
            stack.push_async_callback(prometheus.close)
            running["prometheus"] = prometheus
            env["PROMETHEUS_URL"] = closed_port_url() if "metrics" in down else prometheus.url
            if slow.get("metrics"):
                raise ScenarioError(f"{world.path}: backends.slow.metrics: a real Prometheus cannot be slowed")
        if "logs" not in off:
            loki = FakeLoki()
            loki.delay = slow.get("logs", 0.0)
            streams: dict[tuple[tuple[str, str], ...], list[Any]] = {}
            for entry in world.logs:
                streams.setdefault(tuple(sorted(entry.labels.items())), []).append((entry.at, entry.line))
            for labels, lines in streams.items():
                loki.add(dict(labels), lines)
            await loki.start()
            stack.push_async_callback(loki.close)
            env["LOKI_URL"] = closed_port_url() if "logs" in down else loki.url
        if "kubernetes" in off:
            env["SREBOT_KUBERNETES"] = "off"
        else:
            kube = KubeWorld(world.k8s, world.logs, namespace=world.spec.namespace, delay=slow.get("kubernetes", 0.0))
            await kube.start()
            stack.push_async_callback(kube.close)
            running["kube"] = kube
            kubeconfig = kube.kubeconfig_path
            if "kubernetes" in down:
                kubeconfig = str(root / "kubeconfig-down")
                Path(kubeconfig).write_text(yaml.safe_dump(kube.kubeconfig(server=closed_port_url())))
            env |= {"KUBECONFIG": kubeconfig, "SREBOT_KUBE_CONTEXT": kube.context}
        if "control_plane" not in off:
            cp = ControlPlaneFake(delay=slow.get("control_plane", 0.0), frozen=True)
            for key in ("incidents", "alerts", "audit_logs", "resources", "scripts"):
                getattr(cp, key).extend(world.control_plane.get(key, []))
            await cp.start()
            stack.push_async_callback(cp.stop)
            running["control_plane"] = cp
            url = closed_port_url() if "control_plane" in down else cp.url
            env |= {
                "CONTROL_PLANE_URL": url,
                "CONTROL_PLANE_TOKEN_URL": f"{url}/token",
                "CONTROL_PLANE_CLIENT_ID": cp.client_id,
                "CONTROL_PLANE_CLIENT_SECRET": cp.client_secret,
            }
        yield Backends(load_settings(env=env, config_path=str(config)), **running)


async def check_signals(world: World, prometheus: BackfilledPrometheus | None) -> list[str]:
    """The world's `signals` that its Prometheus does not bear out: the data is not what the author meant."""
    problems: list[str] = []
    if prometheus is None:
        return problems
    for signal in world.spec.signals:
        lo, hi = signal.range
        try:
            values = [value for _, value in await prometheus.instant(signal.query)]
        except MetricsError as exc:
            problems.append(f"world: signal {signal.query} fails: {exc}")
            continue
        if not values:
            problems.append(f"world: signal {signal.query} has no data (expected {lo:g}…{hi:g})")
        elif bad := [v for v in values if not lo - 1e-9 <= v <= hi + 1e-9]:
            problems.append(f"world: signal {signal.query} = {', '.join(f'{v:g}' for v in bad)}, expected {lo:g}…{hi:g}")
    return problems


# --- running -----------------------------------------------------------------------------------------
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

    async def tell_privately(self, text: str) -> bool:
        return False  # a scenario's answer is graded as a whole: refusals stay in it


@dataclass
class Result:
    name: str
    path: str
    passed: bool
    reasons: list[str] = field(default_factory=list)  # where the answers miss their key
    seconds: float = 0.0
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the world could not be loaded, served or checked
    writes: list[str] = field(default_factory=list)  # what the run asked the backends to change


async def ask(settings: Settings, name: str, questions: list[tuple[str, str]]) -> list[Answer]:
    """Each (user, question) asked in turn in one thread of a fresh Runtime; their answers."""
    from bot.app import Runtime

    runtime = Runtime(settings)
    await runtime.start()
    answers: list[Answer] = []
    try:
        thread = new_id("eval")
        for user, question in questions:
            port = EvalPort()
            runtime.dispatcher.submit(
                Request(key=ConversationKey("cli", "eval", name, thread), user=user, text=question, port=port)
            )
            answers.append(await asyncio.wait_for(port.answer, TURN_TIMEOUT))
            await runtime.dispatcher.wait_idle()
    finally:
        await runtime.stop()
    return answers


async def run_world(path: Path) -> Result:
    started = time.monotonic()
    result = Result(path.name, str(path), False)
    try:
        world = load_world(path)
        result.name = world.name
        with tempfile.TemporaryDirectory(prefix="srebot-eval-") as tmp:
            async with world_backends(world, Path(tmp)) as backends:
                result.errors += await check_signals(world, backends.prometheus)
                turns = [(world.spec.question, world.spec.expect)] + [(f.question, f.expect) for f in world.spec.followups]
                result.answers = await ask(backends.settings, world.name, [("eval-user", q) for q, _ in turns])
                for n, ((question, expect), answer) in enumerate(zip(turns, result.answers, strict=True), 1):
                    prefix = f"turn {n} (“{question}”): " if len(turns) > 1 else ""
                    result.reasons += [prefix + r for r in grade(answer.to_json(), expect, world.fact)]
                if backends.kube is not None:
                    result.writes += [f"kubernetes PATCH {p.path}" for p in backends.kube.patches]
                    result.writes += [f"kubernetes {m} {p} (refused)" for m, p in backends.kube.forbidden_writes]
                if backends.control_plane is not None:
                    result.writes += [f"control plane {a.method} {a.path}" for a in backends.control_plane.actions]
    except (ScenarioError, ConfigError, MetricsError) as exc:
        result.errors.append(str(exc))
    except TimeoutError:
        result.reasons.append(f"no answer within {TURN_TIMEOUT:g} s")
    result.passed = not result.reasons and not result.errors
    result.seconds = time.monotonic() - started
    return result


# --- reporting ---------------------------------------------------------------------------------------
def _finding_lines(answer: Answer) -> list[str]:
    lines = [f"answer: {answer.summary[:300]}"]
    for finding in answer.findings[:6]:
        evidence = f" — {finding.evidence[:160]}" if finding.evidence else ""
        lines.append(f"  [{finding.severity}] {finding.title}{evidence}")
    for rec in answer.recommendations[:3]:
        kind = f" ({rec.action.kind})" if rec.action else ""
        lines.append(f"  → {rec.title}{kind}")
    return lines


def report(results: list[Result], *, as_json: bool, out: Any = None) -> None:
    out = out or sys.stdout
    passed = sum(r.passed for r in results)
    if as_json:
        body = {
            "scenarios": [
                {"name": r.name, "path": r.path, "passed": r.passed, "reasons": r.reasons, "errors": r.errors,
                 "seconds": round(r.seconds, 2), "writes": r.writes, "answers": [a.to_json() for a in r.answers]}
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
        for error in r.errors:
            print(f"      ! {error}", file=out)
        for reason in r.reasons:
            print(f"      - {reason}", file=out)
        if r.answers:
            for line in _finding_lines(r.answers[-1]):
                print(f"      {line}", file=out)
        for write in r.writes:
            print(f"      write: {write}", file=out)
    print(f"{passed} passed, {len(results) - passed} failed", file=out)


async def evaluate(where: Path, *, as_json: bool = False, only: str | None = None) -> int:
    """Run every scenario under `where` (or the one scenario); 0 when all pass, 1 otherwise, 2 when there are none."""
    if not where.is_dir():
        print(f"srebot eval: {where} is not a directory", file=sys.stderr)
        return 2
    worlds = [p for p in scenario_dirs(where) if only is None or only in p.name]
    if not worlds:
        print(f"srebot eval: no scenarios (directories with scenario.yaml) in {where}", file=sys.stderr)
        return 2
    # tool failures are what some scenarios are about; their log lines would only clutter the report
    logging.getLogger("srebot.tools").setLevel(logging.ERROR)
    results = [await run_world(path) for path in worlds]
    report(results, as_json=as_json)
    return 0 if all(r.passed for r in results) else 1
