"""`srebot bench`: measures ack latency, time to first reply, throughput, fan-out, cache and session lookups.

The server is a child process, `python -m devtools.bench_server serve` (`srebot serve` with the bench engine
of devtools/bench_server.py, which answers after a fixed time), on 127.0.0.1: the load generator and the
loopback fakes (Slack Web API, Bot Connector) run in this process, so they neither share the server's
event loop nor count in its RSS. The database is a temporary PostgreSQL database (SREBOT_BENCH_PG,
default postgresql://postgres@127.0.0.1:5432/postgres), dropped at the end; without PostgreSQL a SQLite file.

The two diagnose figures (fan-out, backend calls) run the product's own `diagnose <service>`: a real
`bot.app.Runtime` (store on the same database, toolbox, DiagnosticEngine, dispatcher) in this process,
after the server has stopped, with its Metrics, Logs, Kubernetes and ControlPlane tools pointed at the
loopback Prometheus, Loki, Kubernetes API and control plane of devtools.loopback, each answering every
request after `tool_delay` (RealDiagnoses).

Every event sent ends in one outcome, read from what its thread shows: answered, told-failed,
told-interrupted, told-busy (the bot said it is overloaded) or silent; or unacked, when the server did not
answer its POST with 200 (Slack delivers such an event again, so it is not lost, but it is not taken either).
Silent is an acknowledged event whose thread was told nothing but progress within `answer_timeout`, which
is longer than the server's own bound on a request. The sustained phase runs twice: alone, and with a CPU
hog (a busy process) beside the server; silent must be 0 in both.

Load is bounded in count and time and goes to 127.0.0.1 only, over one aiohttp client session whose
connections are opened before a burst and reused. Timings are reported, never judged: each figure is
printed with its goal and whether this run met it, as information.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import aiohttp

from bot.answer import Answer
from devtools.bench_server import ANSWER_PATTERN, ENGINE_SECONDS_ENV
from bot.config import Settings, load_settings
from bot.engine.calls import Calls
from devtools.loopback.bot_connector import BotConnectorFake, personal_message
from devtools.loopback.control_plane import ControlPlaneFake
from devtools.loopback.kube import KubeFake
from devtools.loopback.loki import FakeLoki
from devtools.loopback.prometheus import PrometheusFake
from devtools.loopback.serving import QueryCounter
from devtools.loopback.slack import SlackFake, signed_headers
from bot.ports import Request
from tools.base import ToolResult

PG_ADMIN_ENV = "SREBOT_BENCH_PG"
PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
MAX_CONCURRENCY = 1000  # SREBOT_MAX_CONCURRENCY of the server: 200 events/s × 2 s is 400 requests at once
# the server's pool, sized to that work within its share of a PostgreSQL with max_connections 100 shared by
# two replicas: 20 + 20 places, plus the lease's and the claims' 2 + 2 each (88 of 100)
DB_POOL = {"SREBOT_DB_POOL_SIZE": "20", "SREBOT_DB_POOL_OVERFLOW": "20"}
CHANNEL = "C0BENCH"
# what a child process must not inherit: real platforms and backends, another config file
_CHILD_DROP = ("SLACK_APP_TOKEN", "SREBOT_CONFIG", "PROMETHEUS_URL", "LOKI_URL", "CONTROL_PLANE_URL",
               "CONTROL_PLANE_TOKEN_URL", "KUBECONFIG", "GOOGLE_API_KEY", "MICROSOFT_APP_PASSWORD",
               "MICROSOFT_APP_TENANT_ID", "MICROSOFT_APP_TYPE", "SREBOT_TEAMS", "SREBOT_TEAMS_OPENID_METADATA")


@dataclass(frozen=True)
class Plan:
    """How much load each figure gets."""

    mode: str
    burst: int  # concurrent activities (Teams)
    bursts: tuple[int, ...]  # concurrent signed Slack events, each size sent to srebot and to the anchor
    rounds: int  # of each Slack burst size, on each of the two, alternated
    sustained_rate: float  # events/s offered in the sustained phase (open loop)
    sustained_seconds: float
    diagnoses: int  # concurrent identical diagnose requests (real engine)
    fan_out_rounds: int  # diagnoses of the real engine with its fan-out, and as many without
    lookups: int  # session lookups of each kind
    settle: bool  # wait for every answer after each phase (full), or once at the end (quick)
    engine_seconds: float = 2.0
    tool_delay: float = 0.2  # seconds every loopback backend (Prometheus, Loki, Kubernetes, control plane) waits
    # Longer than the server can take to answer or tell a request of the bench engine: its claim, recording,
    # start and closing each wait for the database up to SREBOT_DB_DEADLINE (30 s), 122 s with the engine's
    # 2 s, and each message is a Slack call on a starved machine. An event still untold then counts as silent.
    answer_timeout: float = 180.0


# The sustained rate is offered a little above the 200/s goal, so a server that keeps up shows >= 200.
FULL = Plan(mode="full", burst=100, bursts=(30, 100), rounds=3, sustained_rate=220, sustained_seconds=10.0, diagnoses=100, fan_out_rounds=20,
            lookups=1000, settle=True)
QUICK = Plan(mode="quick", burst=20, bursts=(10, 20), rounds=1, sustained_rate=220, sustained_seconds=1.0, diagnoses=20, fan_out_rounds=2,
             lookups=100, settle=False)


# --- statistics ----------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def latency(values_s: list[float]) -> dict[str, Any]:
    """p50 / p99 / max in milliseconds (None without samples), and how many samples."""
    ms = [v * 1000 for v in values_s]
    if not ms:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "n": 0}
    return {"p50_ms": round(percentile(ms, 50) or 0.0, 3), "p99_ms": round(percentile(ms, 99) or 0.0, 3),
            "max_ms": round(max(ms), 3), "n": len(ms)}


def below(value: float | None, limit: float) -> bool:
    return value is not None and value < limit


def ratio(value: float | None, anchor: float | None) -> float | None:
    """srebot ÷ the anchor, to two decimals (None without both)."""
    return round(value / anchor, 2) if value is not None and anchor else None


def side_by_side(srebot: dict[str, Any], anchor: dict[str, Any]) -> dict[str, Any]:
    """A latency of srebot's beside the anchor's, with the ratios of their p50 and p99."""
    return {"srebot": srebot, "anchor": anchor,
            "ratio": {"p50": ratio(srebot["p50_ms"], anchor["p50_ms"]), "p99": ratio(srebot["p99_ms"], anchor["p99_ms"])}}


# --- the machine and the database ---------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "unknown")
    mem_kb = next((int(line.split()[1]) for line in _read_lines("/proc/meminfo") if line.startswith("MemTotal:")), 0)
    return {"cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_model": cpu, "memory_gb": round(mem_kb / 2**20, 1), "python": platform.python_version(),
            "platform": platform.platform()}


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc/<pid>/status."""
    values = {}
    for line in _read_lines(f"/proc/{pid}/status"):
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, amount, *_ = line.split()
            values[key[:-1]] = int(amount) / 1024
    return round(values.get("VmRSS", 0.0), 1), round(values.get("VmHWM", 0.0), 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def db_transactions(database_url: str) -> int | None:
    """Transactions committed or rolled back in the bench's PostgreSQL database so far (None on SQLite)."""
    if not database_url.startswith("postgresql"):
        return None
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return await conn.fetchval("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                   "WHERE datname = current_database()")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def temporary_database(workdir: Path) -> Any:
    """Yields (SQLAlchemy URL, "postgresql" | "sqlite"); a PostgreSQL database is dropped afterwards."""
    import asyncpg

    admin = os.environ.get(PG_ADMIN_ENV, PG_ADMIN_DEFAULT)
    name = f"srebot_bench_{secrets.token_hex(6)}"
    try:
        conn = await asyncio.wait_for(asyncpg.connect(admin), 5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        print(f"srebot bench: no PostgreSQL at {admin} ({exc.__class__.__name__}); using SQLite", file=sys.stderr)
        yield f"sqlite+aiosqlite:///{workdir / 'bench.db'}", "sqlite"
        return
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = f"{admin.rsplit('/', 1)[0]}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield url, "postgresql"
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def cpu_hog() -> AsyncIterator[None]:
    """One busy process beside the server for the duration: a machine where a neighbour takes a CPU."""
    hog = await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
    try:
        yield
    finally:
        hog.kill()
        await hog.wait()


# --- the server process -------------------------------------------------------------------------
class Server:
    """A server child process on 127.0.0.1 (by default `python -m devtools.bench_server serve`), its log in a file."""

    def __init__(self, env: dict[str, str], workdir: Path, command: tuple[str, ...] = ("devtools.bench_server", "serve"),
                 name: str = "server"):
        self.env = env
        self.workdir = workdir
        self.command = command
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, session: aiohttp.ClientSession, timeout: float = 60.0) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        env = {k: v for k, v in os.environ.items() if k not in _CHILD_DROP}
        env.update(self.env, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", *self.command, "--host", "127.0.0.1", "--port", str(self.port),
                cwd=self.workdir, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(f"the {self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the {self.name} did not answer /healthz within {timeout:g} s:\n{self.log_tail()}")

    async def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(_read_lines(str(self.log_path))[-lines:])

    def logged_errors(self) -> int:
        return sum('"level": "error"' in line or '"level": "critical"' in line for line in _read_lines(str(self.log_path)))


# --- watching the fakes -------------------------------------------------------------------------
OUTCOMES = ("answered", "told-failed", "told-interrupted", "told-busy", "silent", "unacked")


class Watch:
    """Reads a fake's record incrementally: the first message in each thread (Slack thread ts, Teams
    conversation id), the answer of each token, with the time the fake received them, and the last
    thing other than progress each thread was told."""

    def __init__(self, calls: list[Any], first: Callable[[Any], str | None], text: Callable[[Any], str],
                 thread: Callable[[Any], str | None]):
        self.calls = calls
        self._first, self._text, self._thread = first, text, thread
        self.first_in_thread: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self.told: dict[str, str] = {}
        self._seen = 0

    def scan(self) -> None:
        while self._seen < len(self.calls):
            call = self.calls[self._seen]
            self._seen += 1
            if call.status != 200:
                continue
            thread = self._first(call)
            if thread is not None:
                self.first_in_thread.setdefault(thread, call.at)
            text = self._text(call)
            for token in ANSWER_PATTERN.findall(text):
                self.answered.setdefault(token, call.at)
            where = self._thread(call)
            if where is not None and text and not _progress(text):
                self.told[where] = text

    def outcome(self, sent: Sent) -> str:
        """What the person who sent it saw in the end; "unacked" for an event the server did not answer 200
        (the platform delivers it again; the promise to answer or tell starts at the ack)."""
        if sent.status != 200:
            return "unacked"
        if sent.token in self.answered:
            return "answered"
        told = self.told.get(sent.key)
        if told is None:
            return "silent"
        lowered = told.lower()
        if "overloaded" in lowered:
            return "told-busy"
        if "restart" in lowered:
            return "told-interrupted"
        return "told-failed"

    def outcomes(self, sent: list[Sent]) -> dict[str, int]:
        counts = Counter(self.outcome(s) for s in sent)
        return {name: counts.get(name, 0) for name in OUTCOMES}

    def ended(self, sent: list[Sent]) -> bool:
        return all(self.outcome(s) != "silent" for s in sent if s.status == 200)


def _progress(text: str) -> bool:
    """A placeholder or progress line ("Looking into it…", "Waiting for…"), not an outcome."""
    return ":hourglass" in text or "Looking into it" in text


def slack_watch(fake: SlackFake) -> Watch:
    """Messages posted in a thread (the first is the placeholder); answers posted or replacing it."""
    threads: dict[str, str] = {}  # message ts -> its thread, to place the updates of a placeholder

    def thread(call: Any) -> str | None:
        if call.method == "chat.postMessage":
            where = call.args.get("thread_ts")
            if where and call.response.get("ts"):
                threads[call.response["ts"]] = where
            return where
        if call.method == "chat.update":
            return threads.get(call.args.get("ts"))
        return None

    return Watch(
        fake.calls,
        lambda call: call.args.get("thread_ts") if call.method == "chat.postMessage" else None,
        lambda call: call.text_blob() if call.method in ("chat.postMessage", "chat.update") else "",
        thread,
    )


def teams_watch(fake: BotConnectorFake) -> Watch:
    """Messages and replies sent to a conversation (the first is the acknowledgement)."""
    sent = ("send", "reply")
    return Watch(
        fake.calls,
        lambda call: call.conversation_id if call.kind in sent else None,
        lambda call: json.dumps(call.body) if call.kind in sent else "",
        lambda call: call.conversation_id if call.kind in sent else None,
    )


async def until(scan: Callable[[], None], done: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
    """Poll (without touching the server) until `done()`; False when `timeout` passed first."""
    deadline = time.monotonic() + timeout
    while True:
        scan()
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll)


# --- the server's own ack histogram (/metrics) -----------------------------------------------------
_BUCKET = re.compile(r'^srebot_ack_latency_seconds_bucket\{(?P<labels>[^}]*)\} (?P<count>[0-9.e+]+)$')


async def server_histogram(http: aiohttp.ClientSession, url: str, platform_name: str) -> dict[float, float]:
    """The cumulative ack-latency buckets the server exported for a platform: {upper bound s: count}."""
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        match = _BUCKET.match(line)
        if match and f'platform="{platform_name}"' in match["labels"]:
            bound = re.search(r'le="([^"]+)"', match["labels"])
            if bound:
                buckets[float(bound.group(1))] = float(match["count"])
    return buckets


def histogram_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """p50 / p99 of the requests between two scrapes, as the upper bound of their bucket (the server's
    own view: from its handler's start to its response, without the client's or the network's time)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    result: dict[str, Any] = {"n": int(total)}
    for name, q in (("p50_le_ms", 0.5), ("p99_le_ms", 0.99)):
        bound = next((b for b, c in zip(bounds, counts) if total and c >= q * total), None)
        result[name] = None if bound is None or bound == float("inf") else bound * 1000
    return result


# --- the real diagnose path ----------------------------------------------------------------------
# What every bench service reports: a healthy service, so a diagnosis reads everything and acts on nothing.
HEALTHY_SIGNALS = {"request_rate": 50.0, "error_rate": 0.002, "latency_p99": 0.12, "cpu_ratio": 0.3,
                   "memory_ratio": 0.4, "restarts": 0.0}
BENCH_NAMESPACE = "bench"


class SequentialCalls(Calls):
    """The engine's own `Calls` with the fan-out taken out: each named call of a playbook goes through
    `Calls.run` (bounded, recorded, reported the same) only after the previous one has finished."""

    async def run(
        self, calls: dict[str, Coroutine[Any, Any, ToolResult[Any]]], intro: str | None = None
    ) -> dict[str, ToolResult[Any]]:
        results: dict[str, ToolResult[Any]] = {}
        for index, (name, call) in enumerate(calls.items()):
            results.update(await super().run({name: call}, intro=intro if index == 0 else None))
        return results


@contextlib.contextmanager
def sequential_playbooks() -> Iterator[None]:
    """Inside, the engine (bot.engine.core makes one `Calls` per request) awaits a playbook's calls one by one."""
    from bot.engine import core

    saved, core.Calls = core.Calls, SequentialCalls  # type: ignore[misc]
    try:
        yield
    finally:
        core.Calls = saved  # type: ignore[misc]


class BenchPort:
    """A ReplyPort that keeps the answer of one request and when it came."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.answered = 0.0
        self.progressed: list[float] = []  # the dispatcher's acknowledgement, then the engine's lines
        self.answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

    async def progress(self, text: str) -> None:
        self.progressed.append(time.perf_counter())

    async def post(self, message: Answer | str) -> None:
        if not self.answer.done():
            self.answered = time.perf_counter()
            self.answer.set_result(message if isinstance(message, Answer) else Answer(summary=message))

    async def ask_approval(self, approval: Any) -> None:
        return None

    async def tell_privately(self, text: str) -> bool:
        return False  # nobody behind a benchmark's request

    @property
    def seconds(self) -> float:
        return self.answered - self.started

    @property
    def from_calls(self) -> float:
        """From the engine's first line (a playbook says what it reads just before its calls start) to the answer."""
        return self.answered - (self.progressed[1] if len(self.progressed) > 1 else self.started)


def _per_backend(counts: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    return {name: {"calls": sum(c.values()), "distinct": len(c)} for name, c in counts.items()}


class RealDiagnoses:
    """`diagnose <service>` as the product runs it: `bot.app.Runtime` (store, toolbox, DiagnosticEngine,
    dispatcher) in this process, requests submitted to its dispatcher, each in its own thread. Its tools read
    the loopback Prometheus (golden-signal PromQL answered from profiles), Loki, Kubernetes API and control
    plane, each answering every request after `delay`; every service is healthy and exists in all four. The
    servers count what they receive by method, path and query (devtools.loopback.serving.QueryCounter)."""

    def __init__(self, plan: Plan, workdir: Path, database_url: str):
        self.plan = plan
        self.workdir = workdir
        self.database_url = database_url
        self.rounds = [(f"fanpar{i}", f"fanseq{i}") for i in range(plan.fan_out_rounds)]
        self.services = ["warmup", "checkout", *(name for pair in self.rounds for name in pair)]
        self.prometheus = PrometheusFake()
        self.loki = FakeLoki()
        self.kube = KubeFake(delay=plan.tool_delay)
        self.control_plane = ControlPlaneFake(delay=plan.tool_delay)
        self.prometheus.delay = self.loki.delay = plan.tool_delay
        self.runtime: Any = None
        self._threads = 0

    def counters(self) -> dict[str, QueryCounter]:
        """Each tool's loopback server's count, by the tool's name."""
        return {"metrics": self.prometheus.per_query, "logs": self.loki.per_query,
                "kubernetes": self.kube.per_query, "control_plane": self.control_plane.per_query}

    def snapshot(self) -> dict[str, Counter[str]]:
        return {name: Counter(counter.counts) for name, counter in self.counters().items()}

    def since(self, before: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
        """The requests each server received since `before`, by query."""
        return {name: Counter(counter.counts) - before[name] for name, counter in self.counters().items()}

    async def __aenter__(self) -> Self:
        from bot.app import Runtime
        from devtools.deployments import (
            Clock,
            DeploymentSpec,
            KubernetesSpec,
            PodSpec,
            RevisionSpec,
            load_kubernetes,
        )
        from bot.toolbox import service_ref

        await self.prometheus.start()
        await self.loki.start()
        await self.kube.start()
        await self.control_plane.start()
        config = self.workdir / "srebot-real.toml"
        config.write_text("")  # the catalog below is the whole configuration
        catalog = {"services": {name: {"namespace": BENCH_NAMESPACE} for name in self.services},
                   "defaults": {"namespace": BENCH_NAMESPACE, "window": "15m"}}
        cp = self.control_plane
        settings = load_settings(env={
            "DATABASE_URL": self.database_url,
            "SREBOT_MAX_CONCURRENCY": str(MAX_CONCURRENCY),  # as the server's: every request of a burst at once
            "SREBOT_COST": "off",  # cost is not part of diagnose
            "PROMETHEUS_URL": self.prometheus.url,
            "LOKI_URL": self.loki.url,
            "KUBECONFIG": self.kube.kubeconfig_path,
            "SREBOT_KUBE_CONTEXT": self.kube.context,
            "CONTROL_PLANE_URL": cp.url,
            "CONTROL_PLANE_TOKEN_URL": cp.token_url,
            "CONTROL_PLANE_CLIENT_ID": cp.client_id,
            "CONTROL_PLANE_CLIENT_SECRET": cp.client_secret,
        }, config_path=str(config), **catalog)
        for name in self.services:
            self.prometheus.add_service(service_ref(settings, settings.services[name]), dict(HEALTHY_SIGNALS))
        load_kubernetes(self.kube, KubernetesSpec(deployments=[
            DeploymentSpec(name=name, namespace=BENCH_NAMESPACE, replicas=2, revisions=[
                RevisionSpec(revision=1, image=f"bench/{name}:1.0.0", created="-2d", pods=[PodSpec(count=2, created="-2d")]),
            ]) for name in self.services
        ]), Clock(datetime.now(UTC)))
        self.runtime = Runtime(settings)
        await self.runtime.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
        await self.control_plane.stop()
        await self.kube.stop()
        await self.loki.close()
        await self.prometheus.close()

    def submit(self, service: str) -> BenchPort:
        """`diagnose <service>` in a new thread, through the runtime's dispatcher."""
        from sessions.store import ConversationKey

        self._threads += 1
        port = BenchPort()
        self.runtime.dispatcher.submit(Request(
            key=ConversationKey("bench", "T0BENCH", CHANNEL, f"diagnose-{self._threads}"),
            user="bench-user", text=f"diagnose {service}", port=port,
        ))
        return port

    async def diagnose(self, service: str) -> tuple[Answer, BenchPort]:
        port = self.submit(service)
        answer = await asyncio.wait_for(port.answer, self.plan.answer_timeout)
        await self.runtime.dispatcher.wait_idle()  # its turn recorded before anything else is timed
        return answer, port

    async def run(self, figures: dict[str, dict[str, Any]]) -> None:
        warm, _ = await self.diagnose("warmup")  # connections, the control plane's token, lazy imports
        if warm.status != "completed" or not all(t.ok for t in warm.tools):
            raise RuntimeError(f"the warm-up diagnosis failed: {warm.summary} {[t.model_dump() for t in warm.tools]}")
        one = await self.fan_out(figures)
        await self.backend_calls(figures, one)

    async def fan_out(self, figures: dict[str, dict[str, Any]]) -> dict[str, Counter[str]]:
        """Each round: one diagnosis as the engine runs it (its playbook's tool calls at once), then one of
        another service with the same calls awaited one after another. A new service each time, so neither
        the tools' cache nor single-flight shortens a diagnosis. Returns the requests of the first diagnosis."""
        plan = self.plan
        parallel: list[BenchPort] = []
        sequential: list[BenchPort] = []
        tools_sum: list[float] = []
        tool_ms: dict[str, list[float]] = {}
        failed = 0
        one: dict[str, Counter[str]] = {}
        for together, alone in self.rounds:
            before = self.snapshot()
            answer, port = await self.diagnose(together)
            one = one or self.since(before)
            parallel.append(port)
            tools_sum.append(sum(t.ms or 0.0 for t in answer.tools))
            failed += sum(not t.ok for t in answer.tools)
            with sequential_playbooks():
                answer, port = await self.diagnose(alone)
            sequential.append(port)
            failed += sum(not t.ok for t in answer.tools)
            for t in answer.tools:
                tool_ms.setdefault(t.name, []).append(t.ms or 0.0)
        p, s = (statistics.median(port.seconds for port in ports) * 1000 for ports in (parallel, sequential))
        cp, cs = (statistics.median(port.from_calls for port in ports) * 1000 for ports in (parallel, sequential))
        each = {name: round(statistics.median(ms), 1) for name, ms in tool_ms.items()}
        requests = _per_backend(one)
        figures["fan_out"] = {
            "tools": len(each), "tool_names": list(each), "tool_delay_ms": plan.tool_delay * 1000,
            "http_requests_per_diagnose": sum(r["calls"] for r in requests.values()),
            "http_requests_by_tool": {name: r["calls"] for name, r in requests.items()},
            "rounds": len(self.rounds), "parallel_ms": round(p, 1), "sequential_ms": round(s, 1),
            "ratio": round(p / s, 3), "failed_calls": failed,
            # the same two diagnoses without the request's bookkeeping (dispatcher, database)
            "from_calls": {"parallel_ms": round(cp, 1), "sequential_ms": round(cs, 1), "ratio": round(cp / cs, 3)},
            "tool_ms_sequential": each,
            # the best any fan-out of these tools can do: the slowest tool alone
            "ratio_floor": round(max(each.values()) / sum(each.values()), 3) if each and sum(each.values()) else None,
            "tools_sum_ms": round(statistics.median(tools_sum), 1),
            "path": ("the real `diagnose <service>` (bot.engine.diagnosis.diagnose) of bot.app.Runtime's "
                     "DiagnosticEngine, submitted to its dispatcher, tools against the loopback servers"),
            "note": ("parallel: wall time of one diagnosis, submit to answer, as the engine runs it (its tools at "
                     "once through bot.engine.calls.Calls). sequential: wall time of the same diagnosis of another "
                     "service with Calls.run awaiting each tool call before the next (SequentialCalls); what a tool "
                     "does inside is unchanged in both (metrics' queries at once, Kubernetes' two dependent rounds, "
                     "the control plane's two reads at once), so this is the fan-out of the playbook's tools. "
                     "ratio_floor = slowest tool / sum of tools: no fan-out can go below it. tools_sum_ms: the "
                     "parallel run's per-tool times (Answer.tools) added up, a cross-check of sequential_ms. from_calls: "
                     "the same, timed from the engine's first progress line (its calls about to start) to the answer, "
                     "without the dispatcher's and the database's part of a request."),
            "goal": "<= 0.3", "meets_goal": p / s <= 0.3,
        }
        return one

    async def backend_calls(self, figures: dict[str, dict[str, Any]], one: dict[str, Counter[str]]) -> None:
        """`diagnoses` identical `diagnose checkout` at once, each in its own thread: the HTTP requests the
        loopback servers received, per distinct query (a service no diagnosis asked about before)."""
        count = self.plan.diagnoses
        before = self.snapshot()
        ports = [self.submit("checkout") for _ in range(count)]
        await asyncio.wait([p.answer for p in ports], timeout=self.plan.answer_timeout)
        answers = [p.answer.result() for p in ports if p.answer.done()]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.runtime.dispatcher.wait_idle(), self.plan.answer_timeout)
        received = self.since(before)
        by_query = Counter({f"{name} {query}": n for name, counts in received.items() for query, n in counts.items()})
        calls, distinct = sum(by_query.values()), len(by_query)
        completed = [a for a in answers if a.status == "completed"]
        figures["backend_calls"] = {
            "requests": count, "answered": len(completed), "lost": count - len(completed),
            "failed_tools": sum(not t.ok for a in answers for t in a.tools),
            "backend_calls": calls, "distinct_queries": distinct,
            "calls_per_distinct_query": round(calls / distinct, 3) if distinct else None,
            "max_calls_one_query": max(by_query.values(), default=0),
            "queries_per_diagnose": sum(len(c) for c in one.values()),  # one diagnosis alone, for comparison
            "by_tool": _per_backend(received),
            "repeated": dict(q for q in by_query.most_common(5) if q[1] > 1),
            "wall_ms": round(max((p.seconds for p in ports if p.answered), default=0.0) * 1000, 1),
            "path": ("the real `diagnose checkout` of bot.app.Runtime's DiagnosticEngine, submitted to its "
                     "dispatcher in different threads at once; counted by the loopback servers by method, path "
                     "and query, absolute times as minutes before arrival (devtools.loopback.serving.QueryCounter)"),
            "goal": "1 per distinct query", "meets_goal": calls == distinct and distinct > 0,
        }


# --- the bench ----------------------------------------------------------------------------------
@dataclass
class Sent:
    token: str
    key: str  # the Slack thread ts or the Teams conversation id
    started: float
    status: int = 0
    acked: float = 0.0


class Bench:
    def __init__(self, plan: Plan, workdir: Path):
        self.plan = plan
        self.workdir = workdir
        self.figures: dict[str, dict[str, Any]] = {}
        self.slack = SlackFake()
        self.connector = BotConnectorFake()
        self.slack_watch = slack_watch(self.slack)
        self.teams_watch = teams_watch(self.connector)
        # (where the outcomes go: a figure, or a figure and the side it counts, watch, sent)
        self.pending: list[tuple[tuple[str, ...], Watch, list[Sent]]] = []
        self.outcomes: dict[tuple[str, ...], Counter[str]] = {}
        self._tokens = 0

    def token(self, prefix: str) -> str:
        self._tokens += 1
        return f"{prefix}-{self._tokens:06d}"

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.slack)
            await stack.enter_async_context(self.connector)
            database_url, database = await stack.enter_async_context(temporary_database(self.workdir))
            http = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(plan.burst, *plan.bursts) + 16))
            )
            server = Server({
                "DATABASE_URL": database_url,
                "SLACK_BOT_TOKEN": self.slack.bot_token,
                "SLACK_SIGNING_SECRET": self.slack.signing_secret,
                "SLACK_API_URL": self.slack.api_url,
                # Teams without credentials (the server listens on 127.0.0.1), replying to the loopback Bot Connector
                "MICROSOFT_APP_ID": "",
                "SREBOT_TEAMS_INSECURE": "local",
                "SREBOT_TEAMS_SERVICE_URLS": self.connector.url,
                "SREBOT_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
                **DB_POOL,
                "SREBOT_KUBERNETES": "off",
                "SREBOT_COST": "off",
                ENGINE_SECONDS_ENV: str(plan.engine_seconds),
            }, self.workdir)
            anchor = Server({
                "SLACK_BOT_TOKEN": self.slack.bot_token,
                "SLACK_SIGNING_SECRET": self.slack.signing_secret,
                "SLACK_API_URL": self.slack.api_url,
                ENGINE_SECONDS_ENV: str(plan.engine_seconds),
            }, self.workdir, ("devtools.bench_anchor",), "anchor")
            started = time.monotonic()
            try:
                await server.start(http)
                startup_s = time.monotonic() - started
                await anchor.start(http)
                await self.warm_up(http, server.url, anchor.url)
                targets = {"srebot": server.url, "anchor": anchor.url}
                await self.slack_bursts(http, targets)
                await self.teams_burst(http, server.url)
                assert server.process is not None
                await self.sustained(http, targets, server.process.pid, database_url)
                async with cpu_hog():
                    await self.sustained(http, {"srebot": server.url}, server.process.pid, database_url,
                                         "sustained_cpu_hog")
                await self.settle()
                assert server.process is not None and anchor.process is not None
                rss, peak = rss_mb(server.process.pid)
                anchor_rss, anchor_peak = rss_mb(anchor.process.pid)
                self.figures["rss"] = {"rss_mb": rss, "peak_mb": peak, "goal": "< 300 MB", "meets_goal": rss < 300,
                                       "anchor": {"rss_mb": anchor_rss, "peak_mb": anchor_peak}}
            finally:
                exit_code = await server.stop()
                await anchor.stop()
            async with RealDiagnoses(plan, self.workdir, database_url) as real:
                await real.run(self.figures)
            await self.session_lookups(database_url, database)
        return {
            "mode": plan.mode,
            "machine": machine(),
            "conditions": {
                "server": "child process `python -m devtools.bench_server serve` (srebot serve with the bench engine)",
                "anchor": ("child process `python -m devtools.bench_anchor`: a bare Bolt AsyncApp that posts the "
                           "placeholder and, after the engine's time, the answer; same fake Slack, rounds alternated"),
                "diagnose": ("the real Runtime and DiagnosticEngine in this process, after the server stopped, "
                             "against the loopback Prometheus, Loki, Kubernetes API and control plane"),
                "load_generator": "this process, on the same machine (it and PostgreSQL share the CPUs with the server)",
                "database": database,
                "max_concurrency": MAX_CONCURRENCY,
                "db_pool": DB_POOL,
                "engine_seconds": plan.engine_seconds,
                "tool_delay_ms": plan.tool_delay * 1000,
                "server_startup_s": round(startup_s, 2),
                "server_exit_code": exit_code,
                "server_log_errors": server.logged_errors(),
                "plan": asdict(plan),
            },
            "figures": self.figures,
        }

    # --- load ------------------------------------------------------------------------------------
    async def open_connections(self, http: aiohttp.ClientSession, url: str, count: int) -> None:
        """Open `count` keep-alive connections, so a burst measures requests, not TCP handshakes."""

        async def one() -> None:
            async with http.get(f"{url}/healthz") as response:
                await response.read()

        await asyncio.gather(*(one() for _ in range(count)))

    def slack_event(self, token: str, text: str) -> tuple[str, str, dict[str, str]]:
        """(thread ts, body, signed headers) of a mention that starts a new thread."""
        event = self.slack.app_mention(f"<@{self.slack.bot_user_id}> {token} {text}", channel=CHANNEL)
        body = self.slack.event_body(event)
        return event["ts"], body, signed_headers(body, self.slack.signing_secret)

    async def post(self, http: aiohttp.ClientSession, url: str, sent: Sent, body: str | bytes,
                   headers: dict[str, str]) -> Sent:
        sent.started = time.monotonic()
        try:
            async with http.post(url, data=body if isinstance(body, bytes) else body.encode(), headers=headers) as response:
                await response.read()
                sent.status = response.status
        except aiohttp.ClientError:
            sent.status = 0
        sent.acked = time.monotonic()
        return sent

    async def send_slack(self, http: aiohttp.ClientSession, url: str, prefix: str, text: str) -> Sent:
        token = self.token(prefix)
        ts, body, headers = self.slack_event(token, text)
        return await self.post(http, f"{url}/slack/events", Sent(token, ts, 0.0), body, headers)

    async def slack_wave(self, http: aiohttp.ClientSession, url: str, prefix: str, text: str, count: int) -> list[Sent]:
        """`count` events at once, each in a new thread (bodies signed before the clock starts)."""
        await self.open_connections(http, url, count)
        prepared = []
        for _ in range(count):
            token = self.token(prefix)
            ts, body, headers = self.slack_event(token, text)
            prepared.append((Sent(token, ts, 0.0), body, headers))
        return list(await asyncio.gather(*(self.post(http, f"{url}/slack/events", s, b, h) for s, b, h in prepared)))

    async def answers(self, where: tuple[str, ...], watch: Watch, sent: list[Sent]) -> None:
        """Every answer of `sent` is waited for now (full) or at the end (quick); its outcomes count
        toward `where` (a figure, or a figure and a side of it), whose `lost` is set once it exists."""
        self.pending.append((where, watch, sent))
        if self.plan.settle:
            await self.settle()

    async def settle(self) -> None:
        pending, self.pending = self.pending, []
        for where, watch, sent in pending:
            await until(watch.scan, lambda w=watch, ss=sent: w.ended(ss),  # type: ignore[misc]
                        self.plan.answer_timeout, poll=0.1)
            self.outcomes.setdefault(where, Counter()).update(watch.outcomes(sent))
        self.record_outcomes()

    def record_outcomes(self) -> None:
        """The outcomes counted so far, into the figures (and sides) that exist."""
        for (figure, *side), counts in self.outcomes.items():
            target = self.figures.get(figure)
            for name in side:
                target = (target or {}).get(name)
            if target is not None:
                target["outcomes"] = {name: counts.get(name, 0) for name in OUTCOMES}
                target["lost"] = counts.get("silent", 0)

    async def warm_up(self, http: aiohttp.ClientSession, url: str, anchor_url: str) -> None:
        """A few requests of each kind first: imports and pools warm, as in a server that has been up (and
        Bolt's auth.test, which both apps ask on their first request, out of the way)."""
        sent = await self.slack_wave(http, url, "w", "sleep", 3)
        anchored = await self.slack_wave(http, anchor_url, "wa", "sleep", 3)
        tsent = await self.teams_wave(http, url, "wt", 3)
        for slack in (sent, anchored):
            await until(self.slack_watch.scan, lambda: all(s.key in self.slack_watch.first_in_thread for s in slack), 30)
        await until(self.teams_watch.scan, lambda: all(s.key in self.teams_watch.first_in_thread for s in tsent), 30)
        await self.answers(("warm_up",), self.slack_watch, sent + anchored)
        await self.answers(("warm_up",), self.teams_watch, tsent)

    async def slack_bursts(self, http: aiohttp.ClientSession, targets: dict[str, str]) -> None:
        """Each burst size `rounds` times on srebot and on the anchor, alternated (srebot first in even
        rounds, the anchor in odd ones); each wave's placeholders (and, in a full run, its answers) are
        in before the next wave, so neither app's work overlaps the other's measurement."""
        watch, plan = self.slack_watch, self.plan
        acks: dict[str, dict[str, Any]] = {}
        placeholders: dict[str, dict[str, Any]] = {}
        for burst in plan.bursts:
            sent: dict[str, list[Sent]] = {name: [] for name in targets}
            before = await server_histogram(http, targets["srebot"], "slack")
            for index in range(plan.rounds):
                for name in (list(targets) if index % 2 == 0 else list(reversed(targets))):
                    wave = await self.slack_wave(http, targets[name], f"b{burst}{name[0]}", "sleep", burst)
                    await until(watch.scan, lambda: all(s.key in watch.first_in_thread for s in wave), 30.0)
                    sent[name] += wave
                    await self.answers(("slack_placeholder",) if name == "srebot" else ("slack_placeholder", name),
                                       watch, wave)
            after = await server_histogram(http, targets["srebot"], "slack")
            ack = {name: {**latency([s.acked - s.started for s in waves if s.status == 200]),
                          "non_200": sum(s.status != 200 for s in waves)} for name, waves in sent.items()}
            first = {name: {**latency([watch.first_in_thread[s.key] - s.started
                                       for s in waves if s.key in watch.first_in_thread]),
                            "missing": sum(s.key not in watch.first_in_thread for s in waves)}
                     for name, waves in sent.items()}
            acks[str(burst)] = {"concurrent": burst, **side_by_side(ack["srebot"], ack["anchor"]),
                                "server_side": histogram_quantiles(before, after)}
            placeholders[str(burst)] = {"concurrent": burst, **side_by_side(first["srebot"], first["anchor"])}
        largest = str(max(plan.bursts))
        self.figures["slack_ack"] = {
            **acks[largest]["srebot"], "concurrent": int(largest), "rounds": plan.rounds,
            "server_side": acks[largest]["server_side"], "by_burst": acks,
            "goal": "p99 <= 1.2x the bare Bolt app's, at every burst",
            "meets_goal": all(below(b["ratio"]["p99"], 1.2000001) for b in acks.values()),
        }
        self.figures["slack_placeholder"] = {
            **placeholders[largest]["srebot"], "concurrent": int(largest), "rounds": plan.rounds,
            "by_burst": placeholders,
            # what every wave ended in (answered, told or silent), srebot's and the anchor's, all bursts
            "lost": None, "anchor": {"lost": None},
            "goal": "p99 <= 1.5x the bare Bolt app's, at every burst",
            "meets_goal": all(below(b["ratio"]["p99"], 1.5000001) for b in placeholders.values()),
        }
        self.record_outcomes()

    async def teams_wave(self, http: aiohttp.ClientSession, url: str, prefix: str, count: int) -> list[Sent]:
        await self.open_connections(http, url, count)
        prepared = []
        for _ in range(count):
            token = self.token(prefix)
            conversation = f"a:bench-{token}"
            activity = personal_message(self.connector.url, f"{token} sleep", conversation_id=conversation)
            prepared.append((Sent(token, conversation, 0.0), json.dumps(activity)))
        headers = {"Content-Type": "application/json"}
        return list(await asyncio.gather(*(self.post(http, f"{url}/api/messages", s, b, headers) for s, b in prepared)))

    async def teams_burst(self, http: aiohttp.ClientSession, url: str) -> None:
        watch = self.teams_watch
        before = await server_histogram(http, url, "teams")
        sent = await self.teams_wave(http, url, "t", self.plan.burst)
        after = await server_histogram(http, url, "teams")
        await until(watch.scan, lambda: all(s.key in watch.first_in_thread for s in sent), 30.0)
        acks = latency([s.acked - s.started for s in sent if s.status == 200])
        firsts = latency([watch.first_in_thread[s.key] - s.started for s in sent if s.key in watch.first_in_thread])
        self.figures["teams_ack"] = {**acks, "concurrent": len(sent), "non_200": sum(s.status != 200 for s in sent),
                                     "server_side": histogram_quantiles(before, after), "goal": None, "meets_goal": None}
        self.figures["teams_first_reply"] = {
            **firsts, "missing": sum(s.key not in watch.first_in_thread for s in sent), "lost": None,
            "goal": None, "meets_goal": None,
        }
        await self.answers(("teams_first_reply",), watch, sent)

    async def sustained(self, http: aiohttp.ClientSession, targets: dict[str, str], pid: int, database_url: str,
                        figure: str = "sustained") -> None:
        """The open-loop phase (`offer`) on srebot, with its server's CPU and database transactions per
        event, then, when `targets` has one, the same on the anchor."""
        cpu_before, xacts_before = cpu_seconds(pid), await db_transactions(database_url)
        measured = await self.offer(http, targets["srebot"], "u")
        cpu = cpu_seconds(pid) - cpu_before
        await asyncio.sleep(1.2)  # PostgreSQL publishes a backend's counters at most once a second
        xacts_after = await db_transactions(database_url)
        sent, lost, answered_rate = measured["sent"], measured["lost"], measured["answered_per_s"]
        self.figures[figure] = {
            **measured, "offered_per_s": self.plan.sustained_rate, "cpu_hog": figure != "sustained",
            "seconds": self.plan.sustained_seconds, "engine_seconds": self.plan.engine_seconds,
            # the cost of one event on the server: what bounds throughput on a given CPU
            "server_cpu_ms_per_event": round(cpu * 1000 / sent, 2) if sent else None,
            "db_transactions_per_event": (round((xacts_after - xacts_before) / sent, 1)
                                          if sent and xacts_after is not None and xacts_before is not None else None),
            "goal": "answered >= 150/s, none silent", "meets_goal": answered_rate >= 150 and lost == 0,
        }
        if "anchor" in targets:
            anchor = await self.offer(http, targets["anchor"], "v")
            self.figures[figure]["anchor"] = anchor
            self.figures[figure]["ratio"] = {
                **{f"{name}_{q}": ratio(measured[name][f"{q}_ms"], anchor[name][f"{q}_ms"])
                   for name in ("ack", "placeholder") for q in ("p50", "p99")},
                "answered_per_s": ratio(measured["answered_per_s"], anchor["answered_per_s"]),
            }

    async def offer(self, http: aiohttp.ClientSession, url: str, prefix: str) -> dict[str, Any]:
        """Open loop: events offered at `sustained_rate` for `sustained_seconds`, each in a new thread,
        whatever the server's pace; every one must be acked 200 and end answered or told (silent = 0).
        Its rate = the lower of the rate they were acked at and the rate their answers completed at."""
        plan = self.plan
        watch = self.slack_watch
        count = int(plan.sustained_rate * plan.sustained_seconds)
        await self.open_connections(http, url, min(count, 64))
        tasks: list[asyncio.Task[Sent]] = []
        start = time.monotonic()
        for index in range(count):
            delay = start + index / plan.sustained_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            token = self.token(prefix)
            ts, body, headers = self.slack_event(token, "sleep")
            tasks.append(asyncio.create_task(self.post(http, f"{url}/slack/events", Sent(token, ts, 0.0), body, headers)))
        sent = list(await asyncio.gather(*tasks))
        ok = [s for s in sent if s.status == 200]
        acked_window = max((s.acked for s in ok), default=start) - start
        await until(watch.scan, lambda: watch.ended(ok), plan.answer_timeout, poll=0.2)
        answered = [s for s in ok if s.token in watch.answered]
        outcomes = watch.outcomes(sent)
        last_answer = max((watch.answered[s.token] for s in answered), default=start)
        acked_rate = len(ok) / acked_window if acked_window > 0 else 0.0
        answered_rate = len(answered) / max(last_answer - start - plan.engine_seconds, 1e-9) if answered else 0.0
        return {
            "events_per_s": round(min(acked_rate, answered_rate), 1), "acked_per_s": round(acked_rate, 1),
            "answered_per_s": round(answered_rate, 1),
            "sent": len(sent), "acked": len(ok), "answered": len(answered), "lost": outcomes["silent"],
            "outcomes": outcomes,
            "ack": latency([s.acked - s.started for s in ok]),
            "placeholder": latency([watch.first_in_thread[s.key] - s.started for s in ok if s.key in watch.first_in_thread]),
            # how long after its request an answer came, beyond the engine's own time: the backlog
            "answer_lag": latency([watch.answered[s.token] - s.started - plan.engine_seconds for s in answered]),
        }

    async def session_lookups(self, database_url: str, database: str) -> None:
        """Store.session_id_for one call at a time: new threads (insert), cached (warm), and the same
        threads again after clearing the cache (cold: one database round trip each)."""
        from sessions.store import ConversationKey, Store

        store = Store(database_url)
        try:
            keys = [ConversationKey("bench", "T0BENCH", CHANNEL, f"lookup-{i}") for i in range(self.plan.lookups)]
            await store.session_id_for(ConversationKey("bench", "T0BENCH", CHANNEL, "warm-up"))
            create = await _timed(store.session_id_for, keys)
            warm = await _timed(store.session_id_for, keys)
            store._thread_cache.clear()  # the bench looks behind the cache on purpose
            cold = await _timed(store.session_id_for, keys)
        finally:
            await store.close()
        figure: dict[str, Any] = {"database": database}
        for name, values in (("warm", warm), ("cold", cold), ("create", create)):
            stats = latency(values)
            figure[name] = stats
        figure["goal"] = "p99 < 5 ms (warm and cold)"
        figure["meets_goal"] = below(figure["warm"]["p99_ms"], 5) and below(figure["cold"]["p99_ms"], 5)
        self.figures["session_lookup"] = figure


async def _timed(fn: Callable[[Any], Awaitable[Any]], items: list[Any]) -> list[float]:
    times = []
    for item in items:
        started = time.perf_counter()
        await fn(item)
        times.append(time.perf_counter() - started)
    return times


# --- output -------------------------------------------------------------------------------------
def _ms(stats: dict[str, Any]) -> str:
    return f"{_num(stats['p50_ms'])} / {_num(stats['p99_ms'])} ms"


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if value < 1 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def rows(report: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """(figure, value, goal, meets goal) for the table."""
    f = report["figures"]

    def verdict(figure: dict[str, Any]) -> str:
        return {True: "yes", False: "NO", None: "-"}[figure.get("meets_goal")]

    if "slack_ack" in f:
        a, p = f["slack_ack"], f["slack_placeholder"]
        yield (f"Slack ack p99 / the bare Bolt app's, bursts of {', '.join(a['by_burst'])} (side by side below)",
               ", ".join(f"{_times(b['ratio']['p99'])}" for b in a["by_burst"].values()), a["goal"], verdict(a))
        yield ("Slack event -> placeholder in thread p99 / the bare Bolt app's",
               ", ".join(f"{_times(b['ratio']['p99'])}" for b in p["by_burst"].values())
               + (f" ({p['lost']} silent)" if p["lost"] else ""), p["goal"], verdict(p))
    if "teams_ack" in f:
        a, p = f["teams_ack"], f["teams_first_reply"]
        yield (f"Teams /api/messages ack p50 / p99, {a['concurrent']} concurrent", _ms(a) +
               (f" ({a['non_200']} not 200)" if a["non_200"] else ""), "- (info)", verdict(a))
        yield ("Teams activity -> first reply p50 / p99", _ms(p) + (f" ({p['missing']} missing)" if p["missing"] else "")
               + (f" ({p['lost']} lost)" if p["lost"] else ""), "- (info)", verdict(p))
    for name in ("sustained", "sustained_cpu_hog"):
        if name not in f:
            continue
        s = f[name]
        beside = ", a CPU hog beside the server" if s.get("cpu_hog") else ""
        yield ((f"sustained events/s, engine {s['engine_seconds']:g} s each, offered {s['offered_per_s']:g}/s "
                f"for {s['seconds']:g} s (SREBOT_MAX_CONCURRENCY={report['conditions']['max_concurrency']}, "
                f"{' + '.join(report['conditions']['db_pool'].values())} database places){beside}"),
               (f"{s['events_per_s']:.0f}/s (acked {s['acked_per_s']:.0f}/s, answered {s['answered_per_s']:.0f}/s); "
               f"{s['lost']} silent of {s['acked']} acked ({s['sent']} sent)"), s["goal"], verdict(s))
        yield ("  outcomes", ", ".join(f"{k} {v}" for k, v in s["outcomes"].items()), "silent = 0",
               "yes" if s["lost"] == 0 else "NO")
        yield ("  its ack p50 / p99, answer lag beyond the engine p50 / p99",
               f"{_ms(s['ack'])}; {_ms(s['answer_lag'])}", "- (info)", "-")
        yield ("  server CPU per event, database transactions per event",
               f"{s['server_cpu_ms_per_event']} ms, {s['db_transactions_per_event']}", "- (info)", "-")
    if "fan_out" in f:
        o = f["fan_out"]
        yield ((f"diagnose fan-out parallel / sequential, real engine: {o['tools']} tools, "
                f"{o['http_requests_per_diagnose']} requests of {o['tool_delay_ms']:g} ms each"),
               (f"{_num(o['parallel_ms'])} / {_num(o['sequential_ms'])} ms = {o['ratio']:.2f} "
                f"(floor {o['ratio_floor']:.2f}: slowest tool / sum)" if o["ratio_floor"] is not None else
                f"{_num(o['parallel_ms'])} / {_num(o['sequential_ms'])} ms = {o['ratio']:.2f}"), o["goal"], verdict(o))
    if "backend_calls" in f:
        b = f["backend_calls"]
        per = b["calls_per_distinct_query"]
        yield (f"backend calls for {b['requests']} concurrent identical diagnoses (real engine)",
               (f"{b['backend_calls']} calls / {b['distinct_queries']} queries = {'n/a' if per is None else f'{per:g}'}"
                + (f" (most for one query: {b['max_calls_one_query']})" if b["max_calls_one_query"] > 1 else "")
                + (f" ({b['lost']} lost)" if b["lost"] else "")),
               b["goal"], verdict(b))
    if "session_lookup" in f:
        s = f["session_lookup"]
        db = s["database"]
        yield (f"session lookup p50 / p99 on {db}, warm (cached)", _ms(s["warm"]), "p99 < 5 ms",
               "yes" if below(s["warm"]["p99_ms"], 5) else "NO")
        yield (f"session lookup p50 / p99 on {db}, cold (cache cleared)", _ms(s["cold"]), "p99 < 5 ms",
               "yes" if below(s["cold"]["p99_ms"], 5) else "NO")
        yield (f"session create (new thread) p50 / p99 on {db}", _ms(s["create"]), "- (info)", "-")
    if "rss" in f:
        r = f["rss"]
        yield ("server RSS at the end of the load (peak)", f"{r['rss_mb']:.0f} MB ({r['peak_mb']:.0f} MB)", r["goal"],
               verdict(r))


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _ms_n(stats: dict[str, Any]) -> str:
    """p50 / p99 ms, and what went wrong (not acked 200, no placeholder) if anything."""
    problems = [f"{stats[k]} {what}" for k, what in (("non_200", "not 200"), ("missing", "missing")) if stats.get(k)]
    return _ms(stats) + (f" ({', '.join(problems)})" if problems else "")


ANCHOR_HEADER = ("Slack figure", "srebot", "bare Bolt", "ratio p50 / p99", "target")


def anchored_rows(report: dict[str, Any]) -> Iterator[tuple[str, str, str, str, str]]:
    """(figure, srebot, bare Bolt, ratio, target): every Slack figure beside the anchor's, measured in the same run."""
    f = report["figures"]

    def pair(name: str, side: dict[str, Any], target: str) -> tuple[str, str, str, str, str]:
        r = side["ratio"]
        return (name, _ms_n(side["srebot"]), _ms_n(side["anchor"]), f"{_times(r['p50'])} / {_times(r['p99'])}", target)

    if "slack_ack" in f:
        rounds = f["slack_ack"]["rounds"]
        for burst, side in f["slack_ack"]["by_burst"].items():
            yield pair(f"Slack ack latency p50 / p99, burst of {burst} x {rounds} rounds", side, "p99 <= 1.2x")
        for burst, side in f["slack_placeholder"]["by_burst"].items():
            yield pair(f"Slack event -> placeholder p50 / p99, burst of {burst}", side, "p99 <= 1.5x")
    s = f.get("sustained")
    if s is not None and "anchor" in s:
        a, r = s["anchor"], s["ratio"]
        offered = f"{s['offered_per_s']:g}/s for {s['seconds']:g} s"
        yield (f"sustained ({offered}) ack p50 / p99", _ms(s["ack"]), _ms(a["ack"]),
               f"{_times(r['ack_p50'])} / {_times(r['ack_p99'])}", "-")
        yield ("sustained placeholder p50 / p99", _ms(s["placeholder"]), _ms(a["placeholder"]),
               f"{_times(r['placeholder_p50'])} / {_times(r['placeholder_p99'])}", "-")
        yield (f"sustained answers completed/s, engine {s['engine_seconds']:g} s; silent",
               f"{s['answered_per_s']:.0f}/s; {s['lost']} silent", f"{a['answered_per_s']:.0f}/s; {a['lost']} silent",
               _times(r["answered_per_s"]), ">= 150/s, 0 silent")
    if "rss" in f and "anchor" in f["rss"]:
        r = f["rss"]
        yield ("RSS at the end of the load (peak)", f"{r['rss_mb']:.0f} MB ({r['peak_mb']:.0f} MB)",
               f"{r['anchor']['rss_mb']:.0f} MB ({r['anchor']['peak_mb']:.0f} MB)", "-", "< 300 MB")


def _grid(header: tuple[str, ...], body: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), "-+-".join("-" * w for w in widths)]
    return lines + [" | ".join(v.ljust(w) for v, w in zip(row, widths)) for row in body]


def table(report: dict[str, Any]) -> str:
    m, c = report["machine"], report["conditions"]
    lines = [
        (f"srebot bench ({report['mode']}): {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']}; "
        f"database {c['database']}; server log errors: {c['server_log_errors']}"),
        *_grid(("figure", "value", "goal", "meets goal"), list(rows(report))),
    ]
    anchored = list(anchored_rows(report))
    if anchored:
        lines += ["", "srebot beside a bare Bolt AsyncApp that only posts the placeholder (and, after the engine's time, "
                  "the answer): same fake Slack, same run, rounds alternated; ratio = srebot / bare Bolt",
                  *_grid(ANCHOR_HEADER, anchored)]
    lines.append("Timings are information, not a verdict: goals are for 2 cores.")
    return "\n".join(lines)


async def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="srebot-bench-") as workdir:
        try:
            report = await Bench(plan, Path(workdir)).run()
        except RuntimeError as exc:
            print(f"srebot bench: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0
