"""A real Prometheus and a real VictoriaMetrics on 127.0.0.1, filled with the same synthetic history.

Services (namespace "shop"): `checkout` runs healthy until SPIKE before the newest sample, then serves 8 % 5xx
with a p99 of about 3 s; `catalog` stays healthy (0.1 % errors, p99 about 0.1 s); `ghost` has no data at all.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

STEP = 15  # seconds between samples, a usual scrape interval
HISTORY = 2 * 3600
SPIKE = 8 * 60
NAMESPACE = "shop"
MEMORY_LIMIT = 512 * 2**20
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)
# cumulative share of requests at or below each bucket bound
HEALTHY_LATENCY = (0.9, 0.995, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
SPIKE_LATENCY = (0.5, 0.7, 0.8, 0.85, 0.9, 0.985, 1.0, 1.0)


@dataclass(frozen=True)
class MetricsServer:
    url: str
    now: datetime  # the newest sample: pass it as `now` so results do not depend on when a test runs
    spike_start: datetime  # when checkout's errors and latency jump


@dataclass(frozen=True)
class _Service:
    name: str
    pods: tuple[str, ...]
    rps: float
    error_ratio: float
    cpu_cores: float  # per pod, of a 1-core limit
    memory_bytes: float  # per pod
    spikes: bool = False


SERVICES = (
    _Service(
        "checkout", ("checkout-6f7d8c9b5-x2k4p", "checkout-6f7d8c9b5-q9w8e"), 100.0, 0.001, 0.3, 200 * 2**20, spikes=True
    ),
    _Service("catalog", ("catalog-5c4b7f9d8-m3n4b",), 50.0, 0.001, 0.2, 150 * 2**20),
)

Samples = dict[str, list[tuple[int, float]]]  # series ('name{labels}') -> [(unix seconds, value)]


def synthetic_samples(end: int) -> Samples:
    """STEP-spaced samples over HISTORY seconds up to `end`."""
    spike_start = end - SPIKE
    samples: Samples = {}
    counters: dict[str, float] = {}

    def add(series: str, t: int, value: float) -> None:
        samples.setdefault(series, []).append((t, value))

    def count(series: str, t: int, per_second: float) -> None:
        counters[series] = counters.get(series, 0.0) + per_second * STEP
        add(series, t, counters[series])

    for t in range(end - HISTORY, end + 1, STEP):
        for svc in SERVICES:
            spiking = svc.spikes and t > spike_start
            errors = svc.rps * (0.08 if spiking else svc.error_ratio)
            count(f'http_requests_total{{service="{svc.name}",status="500"}}', t, errors)
            count(f'http_requests_total{{service="{svc.name}",status="200"}}', t, svc.rps - errors)
            shares = SPIKE_LATENCY if spiking else HEALTHY_LATENCY
            for bound, share in zip(BUCKETS, shares, strict=True):
                le = "+Inf" if math.isinf(bound) else repr(bound)
                count(f'http_request_duration_seconds_bucket{{service="{svc.name}",le="{le}"}}', t, svc.rps * share)
            cores = svc.cpu_cores * (1.5 if spiking else 1.0)
            for pod in svc.pods:
                where = f'namespace="{NAMESPACE}",pod="{pod}"'
                count(f'container_cpu_usage_seconds_total{{{where},container="app"}}', t, cores)
                # the pod-level cgroup repeats its containers' usage; the templates must not count it twice
                count(f'container_cpu_usage_seconds_total{{{where},container=""}}', t, cores)
                add(f'container_memory_working_set_bytes{{{where},container="app"}}', t, svc.memory_bytes)
                add(f'container_memory_working_set_bytes{{{where},container=""}}', t, svc.memory_bytes)
                add(f'kube_pod_container_resource_limits{{{where},container="app",resource="cpu",unit="core"}}', t, 1.0)
                add(
                    f'kube_pod_container_resource_limits{{{where},container="app",resource="memory",unit="byte"}}',
                    t,
                    MEMORY_LIMIT,
                )
                add(f'kube_pod_container_status_restarts_total{{{where},container="app"}}', t, 0.0)
    return samples


def exposition(samples: Samples, *, unit: float) -> str:
    """Text exposition with timestamps in seconds (unit=1, OpenMetrics) or milliseconds (unit=1000, Prometheus)."""
    return "".join(f"{series} {value!r} {t * unit:.0f}\n" for series, points in samples.items() for t, value in points)


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(path).exists():
        pytest.fail(f"{name} is missing: these tests need a real server (apt-get install {package})", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text()[-3000:]
            pytest.fail(f"{process.args[0]} exited with {process.returncode}:\n{output}", pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    pytest.fail(f"{url} was not ready after {timeout} s:\n{log.read_text()[-3000:]}", pytrace=False)


def _serve(command: list[str], ready_path: str, port: int, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = root / "server.log"
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url + ready_path, process, log)
    except BaseException:
        _stop(process)
        raise
    return process, url


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _history() -> tuple[Samples, datetime, datetime]:
    end = int(time.time()) // STEP * STEP
    now = datetime.fromtimestamp(end, UTC)
    return synthetic_samples(end), now, now - timedelta(seconds=SPIKE)


@pytest.fixture(scope="session", name="prometheus_server")
def prometheus_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsServer]:
    """Prometheus serving the synthetic history, backfilled into its TSDB with promtool."""
    prometheus = _binary("prometheus", "prometheus")
    promtool = _binary("promtool", "prometheus")
    root = tmp_path_factory.mktemp("prometheus")
    samples, now, spike_start = _history()
    source = root / "history.om"
    source.write_text(exposition(samples, unit=1) + "# EOF\n")
    backfill = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(root / "data")],
        capture_output=True,
        text=True,
    )
    if backfill.returncode != 0:
        pytest.fail(f"promtool backfill failed:\n{backfill.stdout}\n{backfill.stderr}", pytrace=False)
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\n")
    port = free_port()
    process, url = _serve(
        [
            prometheus,
            f"--storage.tsdb.path={root / 'data'}",
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        "/-/ready",
        port,
        root,
    )
    try:
        yield MetricsServer(url, now, spike_start)
    finally:
        _stop(process)


@pytest.fixture(scope="session", name="victoria_metrics_server")
def victoria_metrics_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsServer]:
    """VictoriaMetrics serving the same synthetic history, imported over its Prometheus-format import API."""
    binary = _binary("victoria-metrics", "victoria-metrics")
    root = tmp_path_factory.mktemp("victoria-metrics")
    samples, now, spike_start = _history()
    port = free_port()
    process, url = _serve(
        [
            binary,
            f"-storageDataPath={root / 'data'}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-search.disableCache",
            # the newest samples are seconds old; by default VictoriaMetrics hides the last 30 s
            "-search.latencyOffset=1s",
        ],
        "/health",
        port,
        root,
    )
    try:
        request = urllib.request.Request(
            f"{url}/api/v1/import/prometheus", data=exposition(samples, unit=1000).encode(), method="POST"
        )
        urllib.request.urlopen(request, timeout=30).close()
        # imported rows become searchable only once flushed
        urllib.request.urlopen(f"{url}/internal/force_flush", timeout=30).close()
        yield MetricsServer(url, now, spike_start)
    finally:
        _stop(process)
