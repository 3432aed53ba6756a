"""A real Prometheus holding exactly a scenario world's samples (shared/scenarios/FORMAT.md, "metrics.json").

The generators are sampled at now + offset, written as OpenMetrics, turned into TSDB blocks by
`promtool tsdb create-blocks-from openmetrics`, and a `prometheus` process is started on those blocks on a free
loopback port, so the engine's PromQL (and a scenario's `signals`) runs on the real query engine:

    async with BackfilledPrometheus(world.metrics, now, workdir) as prometheus:
        prometheus.url; await prometheus.instant('up')
"""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

READY_TIMEOUT = 60.0


class MetricsError(Exception):
    """A metrics.json series that cannot be sampled, or a Prometheus that would not start."""


def samples(series: dict[str, Any], now: float) -> list[tuple[float, float]]:
    """(unix seconds, value) of one generator, every `step` from `start` until (not including) `end`."""
    step = float(series.get("step", 15))
    start, end = float(series.get("start", -10800)), float(series.get("end", 900))
    if step <= 0 or end <= start:
        raise MetricsError(f"{series.get('name')}: step must be > 0 and end after start")
    generators = [key for key in ("const", "points", "ramp", "rate") if key in series]
    if len(generators) != 1:
        raise MetricsError(f"{series.get('name')}: exactly one of const, points, ramp, rate (has {generators or 'none'})")
    offsets = [start + n * step for n in range(int(math.ceil((end - start) / step)))]
    kind = generators[0]
    values: list[tuple[float, float | None]]
    if kind == "const":
        values = [(t, float(series["const"])) for t in offsets]
    elif kind == "points":
        points = sorted((float(t), float(v)) for t, v in series["points"])
        linear = series.get("interpolate") == "linear"
        values = [(t, _held(points, t, linear)) for t in offsets]
    elif kind == "ramp":
        ramp = series["ramp"]
        low, high = float(ramp["from"]), float(ramp["to"])
        t0, t1 = (float(x) for x in ramp["between"])
        values = [(t, low if t <= t0 else high if t >= t1 else low + (high - low) * (t - t0) / (t1 - t0)) for t in offsets]
    else:
        values = _integrated(series, offsets)
    return [(now + t, v) for t, v in values if v is not None]


def _held(points: list[tuple[float, float]], t: float, linear: bool) -> float | None:
    before = [p for p in points if p[0] <= t]
    if not before:
        return None
    t0, v0 = before[-1]
    after = [p for p in points if p[0] > t]
    if linear and after:
        t1, v1 = after[0]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return v0


def _integrated(series: dict[str, Any], offsets: list[float]) -> list[tuple[float, float | None]]:
    """A counter from its per-second rate: constant, or [[t, r], …] held between points (nothing before the first)."""
    rate = series["rate"]
    steps = [(-math.inf, float(rate))] if isinstance(rate, (int, float)) else sorted((float(t), float(r)) for t, r in rate)
    total = float(series.get("initial", 0.0))
    out: list[tuple[float, float | None]] = []
    previous: float | None = None
    for t in offsets:
        if t < steps[0][0]:
            out.append((t, None))
            continue
        if previous is not None:
            total += _area(steps, previous, t)
        previous = t
        out.append((t, total))
    return out


def _area(steps: list[tuple[float, float]], a: float, b: float) -> float:
    """The integral of the step function `steps` over [a, b]."""
    area = 0.0
    for index, (t, r) in enumerate(steps):
        until = steps[index + 1][0] if index + 1 < len(steps) else math.inf
        lo, hi = max(a, t), min(b, until)
        if hi > lo:
            area += r * (hi - lo)
    return area


def openmetrics(series_list: list[dict[str, Any]], now: float) -> str:
    """The world's series as an OpenMetrics text promtool backfills (timestamps in seconds)."""
    by_family: dict[str, list[str]] = {}
    for series in series_list:
        name = series.get("name")
        if not isinstance(name, str) or not name:
            raise MetricsError(f"a series without a name: {series}")
        labels = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted((series.get("labels") or {}).items()))
        head = f"{name}{{{labels}}}" if labels else name
        by_family.setdefault(name, []).extend(f"{head} {v!r} {t:.3f}" for t, v in samples(series, now))
    return "".join(line + "\n" for lines in by_family.values() for line in lines) + "# EOF\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class BackfilledPrometheus:
    """A `prometheus` process on 127.0.0.1 serving `series` sampled around `now` (module docstring)."""

    series: list[dict[str, Any]]
    now: datetime
    workdir: Path
    url: str = ""
    _process: asyncio.subprocess.Process | None = field(default=None, repr=False)

    async def start(self) -> BackfilledPrometheus:
        prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
        if not prometheus or not promtool:
            raise MetricsError("prometheus and promtool are needed to serve a world's metrics (apt-get install prometheus)")
        data = self.workdir / "tsdb"
        data.mkdir(parents=True, exist_ok=True)
        if self.series:
            source = self.workdir / "metrics.om"
            source.write_text(openmetrics(self.series, self.now.timestamp()))
            backfill = await asyncio.create_subprocess_exec(
                promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await backfill.communicate()
            if backfill.returncode != 0:
                raise MetricsError(f"promtool could not backfill the series: {output.decode()[-2000:]}")
        config = self.workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1m\n")
        port = _free_port()
        log = (self.workdir / "prometheus.log").open("wb")
        self._process = await asyncio.create_subprocess_exec(
            prometheus, f"--storage.tsdb.path={data}", f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d",
            stdout=log, stderr=asyncio.subprocess.STDOUT,
        )
        log.close()
        self.url = f"http://127.0.0.1:{port}"
        try:
            await self._wait_ready()
        except BaseException:
            await self.close()
            raise
        return self

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                if self._process is not None and self._process.returncode is not None:
                    tail = (self.workdir / "prometheus.log").read_text()[-2000:]
                    raise MetricsError(f"prometheus exited with {self._process.returncode}: {tail}")
                try:
                    async with session.get(f"{self.url}/-/ready", timeout=aiohttp.ClientTimeout(total=2)) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        raise MetricsError(f"prometheus was not ready after {READY_TIMEOUT:g} s")

    async def instant(self, query: str, at: datetime | None = None) -> list[tuple[dict[str, str], float]]:
        """The result of an instant query (at `now` by default): (labels, value) per series."""
        params = {"query": query, "time": f"{(at or self.now).timestamp():.3f}"}
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/api/v1/query", params=params) as response:
            body = await response.json(content_type=None)
        if body.get("status") != "success":
            raise MetricsError(f"{query}: {body.get('error', body)}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def __aenter__(self) -> BackfilledPrometheus:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
