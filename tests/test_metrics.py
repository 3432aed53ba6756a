"""Metrics tool against a real Prometheus and a real VictoriaMetrics holding the same synthetic history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.prometheus import (
    MetricsServer,
    free_port,
)
from tools.base import ErrorCode, ServiceRef
from tools.metrics import BUILTIN_TEMPLATES, Metrics, Sample, Signal, _recovered

THRESHOLDS = {
    "error_rate": (0.01, 0.05),
    "latency_p99_seconds": (0.5, 2.0),
    "cpu_ratio": (0.8, 0.95),
    "memory_ratio": (0.85, 0.95),
    "restarts": (1, 5),
}
WINDOW = "10m"  # reaches back past the start of checkout's spike, 8 minutes before the newest sample
SIGNALS = set(BUILTIN_TEMPLATES)


def service(name: str, **overrides: str) -> ServiceRef:
    return ServiceRef(
        name, "shop", name, f'{{namespace="shop", app="{name}"}}', metric_templates=tuple(overrides.items())
    )


@pytest.fixture
async def metrics(prometheus_server: MetricsServer) -> AsyncIterator[Metrics]:
    tool = Metrics(prometheus_server.url)
    try:
        yield tool
    finally:
        await tool.aclose()


async def signals_of(tool: Metrics, server: MetricsServer, ref: ServiceRef) -> dict[str, Signal]:
    result = await tool.golden_signals(ref, WINDOW, THRESHOLDS, now=server.now)
    assert result.ok, result.error_text
    assert result.data is not None
    return {signal.name: signal for signal in result.data}


async def test_checkout_is_critical_on_errors_and_latency_from_the_spike(
    metrics: Metrics, prometheus_server: MetricsServer
) -> None:
    signals = await signals_of(metrics, prometheus_server, service("checkout"))

    assert set(signals) == SIGNALS
    errors, latency = signals["error_rate"], signals["latency_p99"]
    assert errors.health == "critical" and latency.health == "critical"
    # 8 of the 10 minutes at 8 % errors; p99 of about 3 s
    assert 0.05 < errors.value < 0.08  # type: ignore[operator]
    assert 2.0 < latency.value < 3.5  # type: ignore[operator]
    assert errors.unit == "ratio" and latency.unit == "s"
    assert errors.baseline == pytest.approx(0.001, rel=0.05)
    assert latency.baseline is not None and latency.baseline < 0.5
    assert errors.trend == "increasing" and latency.trend == "increasing"
    for signal in (errors, latency):
        assert signal.onset is not None
        assert timedelta(0) <= signal.onset - prometheus_server.spike_start <= timedelta(minutes=2)
    assert 'service="checkout"' in errors.query and "[10m]" in errors.query
    assert errors.thresholds == (0.01, 0.05)
    for name in ("request_rate", "cpu_ratio", "memory_ratio", "restarts"):
        assert signals[name].health == "healthy", signals[name]
        assert signals[name].error is None
    assert signals["request_rate"].value == pytest.approx(100.0)
    assert signals["restarts"].value == 0.0  # zero restarts is data, not no_data
    # the pod-level cgroup series (container="") is not counted on top of the container's
    assert signals["cpu_ratio"].value == pytest.approx(0.42, rel=0.05)


async def test_catalog_is_healthy_on_every_signal(metrics: Metrics, prometheus_server: MetricsServer) -> None:
    signals = await signals_of(metrics, prometheus_server, service("catalog"))

    assert {name: s.health for name, s in signals.items()} == dict.fromkeys(SIGNALS, "healthy")
    assert all(s.trend == "stable" and s.onset is None and s.value is not None for s in signals.values())
    assert signals["error_rate"].value == pytest.approx(0.001, rel=0.05)
    assert signals["latency_p99"].value < 0.15  # type: ignore[operator]


async def test_ghost_has_no_data_rather_than_zero(metrics: Metrics, prometheus_server: MetricsServer) -> None:
    signals = await signals_of(metrics, prometheus_server, service("ghost"))

    for signal in signals.values():
        assert signal.value is None and signal.baseline is None, signal
        assert signal.health == "no_data" and signal.error is None and signal.onset is None


async def test_without_now_it_asks_about_the_present(metrics: Metrics) -> None:
    result = await metrics.golden_signals(service("catalog"), WINDOW, THRESHOLDS)

    assert result.ok, result.error_text
    assert {s.name: s.health for s in result.data or []}["error_rate"] == "healthy"
    again = await metrics.golden_signals(service("catalog"), WINDOW, THRESHOLDS)
    assert again.cached and again.data is result.data


async def test_victoria_metrics_gives_the_same_verdicts(
    metrics: Metrics, prometheus_server: MetricsServer, victoria_metrics_server: MetricsServer
) -> None:
    victoria = Metrics(victoria_metrics_server.url)
    try:
        for name in ("checkout", "catalog", "ghost"):
            ours = await signals_of(victoria, victoria_metrics_server, service(name))
            theirs = await signals_of(metrics, prometheus_server, service(name))
            assert {n: s.health for n, s in ours.items()} == {n: s.health for n, s in theirs.items()}, name
            assert {n: s.trend for n, s in ours.items()} == {n: s.trend for n, s in theirs.items()}, name
        onset = (await signals_of(victoria, victoria_metrics_server, service("checkout")))["error_rate"].onset
        assert onset is not None
        assert abs(onset - victoria_metrics_server.spike_start) <= timedelta(minutes=2)

        bad = await victoria.query("rate(http_requests_total[5m)")
        assert bad.error is not None and bad.error.code is ErrorCode.BAD_QUERY
        assert "unexpected token" in bad.error.message
    finally:
        await victoria.aclose()


async def test_a_service_template_overrides_the_builtin(metrics: Metrics, prometheus_server: MetricsServer) -> None:
    template = (
        'sum(rate(http_requests_total{{service="{service}",status=~"5.."}}[{window}]))'
        ' / sum(rate(http_requests_total{{service="{service}"}}[{window}]))'
    )
    signals = await signals_of(metrics, prometheus_server, service("checkout", error_rate=template))

    assert signals["error_rate"].query == (
        'sum(rate(http_requests_total{service="checkout",status=~"5.."}[10m]))'
        ' / sum(rate(http_requests_total{service="checkout"}[10m]))'
    )
    assert signals["error_rate"].health == "critical"


async def test_one_bad_signal_does_not_fail_the_others(metrics: Metrics, prometheus_server: MetricsServer) -> None:
    ref = service("catalog", latency_p99="histogram_quantile(0.99, rate(x[{window}])", cpu_ratio="up{{job={nope}}}")
    result = await metrics.golden_signals(ref, WINDOW, THRESHOLDS, now=prometheus_server.now)

    assert result.ok, result.error_text
    signals = {s.name: s for s in result.data or []}
    latency, cpu = signals["latency_p99"], signals["cpu_ratio"]
    assert latency.error is not None and latency.error.startswith("bad_query") and "parse error" in latency.error
    assert cpu.error is not None and cpu.error.startswith("bad_query") and "nope" in cpu.error
    assert latency.health == cpu.health == "no_data" and latency.value is None
    assert signals["error_rate"].health == "healthy" and signals["error_rate"].error is None


async def test_bad_promql_is_a_bad_query_with_prometheus_message(metrics: Metrics) -> None:
    result = await metrics.query("sum(rate(http_requests_total[5m)")

    assert result.error is not None and result.error.code is ErrorCode.BAD_QUERY
    assert 'parse error: unexpected ")" in subquery or range' in result.error.message
    assert metrics.backend_calls == 1  # a bad query is not retried


async def test_a_bad_window_is_a_bad_query(metrics: Metrics) -> None:
    result = await metrics.golden_signals(service("catalog"), "ten minutes", THRESHOLDS)

    assert result.error is not None and result.error.code is ErrorCode.BAD_QUERY


async def test_free_queries_are_parsed_and_bounded(prometheus_server: MetricsServer) -> None:
    now = prometheus_server.now
    tool = Metrics(prometheus_server.url, max_series=3, max_points=5)
    try:
        instant = await tool.query("sum by (service) (rate(http_requests_total[5m]))", time=now)
        assert instant.ok and instant.data is not None
        assert instant.data.result_type == "vector"
        rates = {s.labels["service"]: s.samples[0].value for s in instant.data.series}
        assert rates == {"checkout": pytest.approx(100.0), "catalog": pytest.approx(50.0)}
        assert instant.data.series[0].samples[0].time == now

        buckets = await tool.query_range(
            "rate(http_request_duration_seconds_bucket[1m])", now - timedelta(minutes=10), now, 60
        )
        assert buckets.ok and buckets.data is not None
        assert buckets.data.result_type == "matrix"
        assert len(buckets.data.series) == 3
        assert all(len(s.samples) == 5 and s.samples[-1].time == now for s in buckets.data.series)
        assert "series: showing 3 of 16" in buckets.notes
        assert any(note.startswith("points: kept the latest 5") for note in buckets.notes)
        # the highest series are the ones kept: checkout's +Inf bucket rate (100/s) leads
        assert buckets.data.series[0].labels == {"service": "checkout", "le": "+Inf"}
    finally:
        await tool.aclose()


async def test_an_unreachable_server_fails_the_whole_result() -> None:
    tool = Metrics(f"http://127.0.0.1:{free_port()}", attempts=1)
    try:
        result = await tool.golden_signals(service("checkout"), WINDOW, THRESHOLDS)
        assert result.error is not None and result.error.code is ErrorCode.UNREACHABLE
        assert result.data is None
        free = await tool.query("up")
        assert free.error is not None and free.error.code is ErrorCode.UNREACHABLE
    finally:
        await tool.aclose()


async def test_without_a_url_metrics_are_not_configured() -> None:
    tool = Metrics(None)

    assert not tool.configured
    result = await tool.golden_signals(service("checkout"), WINDOW, THRESHOLDS)
    assert result.error is not None and result.error.code is ErrorCode.NOT_CONFIGURED
    assert (await tool.query("up")).error.code is ErrorCode.NOT_CONFIGURED  # type: ignore[union-attr]


# --- recovery: a rate back under its warning level for minutes is over, whatever the window's average says ----------
def points(now: datetime, values: list[float], step: float = 15) -> list[Sample]:
    return [Sample(now - timedelta(seconds=step * (len(values) - 1 - i)), v) for i, v in enumerate(values)]


NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_a_rate_under_its_warning_level_for_three_minutes_has_recovered() -> None:
    series = points(NOW, [0.001] * 10 + [0.2] * 20 + [0.001] * 13)  # the last 13 points: 3 minutes
    assert _recovered(series, 0.01, NOW, 15) == NOW - timedelta(minutes=3)


@pytest.mark.parametrize(
    "values, why",
    [
        ([0.001] * 10 + [0.2] * 20 + [0.001] * 5, "back under for only a minute"),
        ([0.2] * 40, "still over"),
        ([0.001] * 40, "never over inside the window: nothing to recover from"),
        ([0.2] * 20 + [0.001] * 10 + [0.2], "over again at the last point"),
    ],
)
def test_what_is_not_a_recovery(values: list[float], why: str) -> None:
    assert _recovered(points(NOW, values), 0.01, NOW, 15) is None, why


def test_a_series_that_stopped_reporting_has_not_recovered() -> None:
    stale = points(NOW - timedelta(minutes=5), [0.2] * 20 + [0.001] * 20)
    assert _recovered(stale, 0.01, NOW, 15) is None

