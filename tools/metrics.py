"""Metrics tool: golden signals and free PromQL over the Prometheus HTTP API (also VictoriaMetrics)."""

from __future__ import annotations

import asyncio
import math
import re
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


from tools.base import (
    HttpBackend,
    ErrorCode,
    ServiceRef,
    ToolError,
    ToolResult,
    bound_list,
    exception_error,
    http_error,
)

_POD = 'namespace="{namespace}",pod=~"{deployment}-.*"'
# Series of the pause container and the pod-level cgroup (container="" / "POD") would count a pod twice.
_CONTAINER = _POD + ',container!="",container!="POD"'

# str.format templates: placeholders {service} {namespace} {deployment} {window}; PromQL braces doubled.
BUILTIN_TEMPLATES: dict[str, str] = {
    "request_rate": 'sum(rate(http_requests_total{{service="{service}"}}[{window}]))',
    # `or vector(0)`: a service without a single 5xx has no 5xx series, and that is a 0 % error rate, not "no data".
    "error_rate": (
        '(sum(rate(http_requests_total{{service="{service}",status=~"5.."}}[{window}])) or vector(0))'
        ' / sum(rate(http_requests_total{{service="{service}"}}[{window}]))'
    ),
    "latency_p99": (
        "histogram_quantile(0.99, sum by (le) ("
        'rate(http_request_duration_seconds_bucket{{service="{service}"}}[{window}])))'
    ),
    # The worst pod, not the deployment average: one pod at its limit is what throttles or gets OOM-killed.
    "cpu_ratio": (
        "max(sum by (pod) (rate(container_cpu_usage_seconds_total{{" + _CONTAINER + "}}[{window}]))"
        ' / sum by (pod) (kube_pod_container_resource_limits{{' + _POD + ',resource="cpu"}}))'
    ),
    "memory_ratio": (
        "max(sum by (pod) (container_memory_working_set_bytes{{" + _CONTAINER + "}})"
        ' / sum by (pod) (kube_pod_container_resource_limits{{' + _POD + ',resource="memory"}}))'
    ),
    "restarts": "sum(increase(kube_pod_container_status_restarts_total{{" + _POD + "}}[{window}]))",
}

UNITS = {
    "request_rate": "req/s",
    "error_rate": "ratio",
    "latency_p99": "s",
    "cpu_ratio": "ratio",
    "memory_ratio": "ratio",
    "restarts": "count",
}

# signal -> key of the [thresholds] table (DESIGN 3.4); request_rate has no health of its own.
THRESHOLD_KEYS = {
    "error_rate": "error_rate",
    "latency_p99": "latency_p99_seconds",
    "cpu_ratio": "cpu_ratio",
    "memory_ratio": "memory_ratio",
    "restarts": "restarts",
}

BASELINE_OFFSET = timedelta(hours=1)
TREND_POINTS = 60
# What users feel is over when its rate is; the window's average lags by a whole window. Restarts and memory are left
# out: a crash loop's backoff leaves quiet minutes that are not a recovery.
RECOVERABLE = ("error_rate", "latency_p99")
RECOVERED_FOR = timedelta(minutes=2)
# A fitted change across the window smaller than this share of the mean is noise, not a trend.
TREND_MIN_RELATIVE = 0.2

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


@dataclass
class Sample:
    time: datetime
    value: float


@dataclass
class Series:
    labels: dict[str, str]
    samples: list[Sample]


@dataclass
class QueryResult:
    query: str
    result_type: str  # vector | matrix | scalar
    series: list[Series]
    notes: list[str] = field(default_factory=list)


@dataclass
class Signal:
    """One golden signal of a service. `value` None means no data (never read as 0)."""

    name: str
    query: str
    unit: str
    value: float | None = None
    baseline: float | None = None  # the same query an hour earlier
    trend: str | None = None  # increasing | decreasing | stable; None without enough range data
    health: str = "no_data"  # healthy | warning | critical | no_data
    thresholds: tuple[float, float] | None = None  # (warning, critical)
    onset: datetime | None = None  # first time in the window the series reached the warning threshold
    recovered: datetime | None = None  # back under the warning level since then: `value` is now's, `peak` the window's
    peak: float | None = None
    error: str | None = None  # why this signal has no value when its query failed
    points: list[Sample] = field(default_factory=list)  # the worst series over the window, for a chart


class Metrics(HttpBackend):
    name = "metrics"

    def __init__(
        self,
        url: str | None,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        cache_ttl: float = 15.0,
        max_series: int = 50,
        max_points: int = 500,
    ):
        super().__init__(url, timeout=timeout, attempts=attempts, cache_ttl=cache_ttl)
        self.max_series = max_series
        self.max_points = max_points

    async def ping(self) -> ToolResult[str]:
        """A trivial instant query: works the same on Prometheus and VictoriaMetrics."""

        async def fetch() -> str:
            await self._api("query", {"query": "vector(1)"})
            return "query API answers"

        return await self.run("ping", fetch)

    async def query(self, promql: str, *, time: datetime | None = None) -> ToolResult[QueryResult]:
        """An instant query; `time` defaults to the server's now."""

        async def fetch() -> QueryResult:
            return self._bounded(promql, await self._api("query", _params(query=promql, time=time)))

        return await self.run("query", fetch, key=(promql, time))

    async def query_range(
        self, promql: str, start: datetime, end: datetime, step: float | str
    ) -> ToolResult[QueryResult]:
        """A range query; `step` in seconds or as a PromQL duration ("30s")."""

        async def fetch() -> QueryResult:
            body = await self._api("query_range", _params(query=promql, start=start, end=end, step=step))
            return self._bounded(promql, body)

        return await self.run("query_range", fetch, key=(promql, start, end, step))

    async def golden_signals(
        self,
        service: ServiceRef,
        window: str,
        thresholds: dict[str, tuple[float, float]],
        *,
        now: datetime | None = None,
        span: str | None = None,
    ) -> ToolResult[list[Signal]]:
        """Every signal of `service` over `window`, each with value, baseline, trend, health and onset; `span`, when
        longer, is how far back the points go (an episode earlier than the window), the value staying the window's.

        A failing signal carries its own error; only when all fail alike is the whole result an error."""
        limits = {key: (float(value[0]), float(value[1])) for key, value in thresholds.items()}

        async def fetch() -> list[Signal]:
            window_seconds = max(_duration_seconds(window), _duration_seconds(span) if span else 0.0)
            at = now or datetime.now(UTC)
            templates = BUILTIN_TEMPLATES | dict(service.metric_templates)
            outcomes = await asyncio.gather(
                *(
                    self._signal(
                        name, template, service, window, window_seconds, limits.get(THRESHOLD_KEYS.get(name, "")), at
                    )
                    for name, template in templates.items()
                )
            )
            failures = [error for _, error in outcomes if error is not None]
            # The same failure everywhere is the server's (down, slow, refusing us), not the signals'.
            if (
                len(failures) == len(outcomes)
                and len({error.code for error in failures}) == 1
                and failures[0].code is not ErrorCode.BAD_QUERY
            ):
                raise failures[0]
            return [signal for signal, _ in outcomes]

        return await self.run("golden_signals", fetch, key=(service, window, tuple(sorted(limits.items())), now, span))

    async def _signal(
        self,
        name: str,
        template: str,
        service: ServiceRef,
        window: str,
        window_seconds: float,
        thresholds: tuple[float, float] | None,
        now: datetime,
    ) -> tuple[Signal, ToolError | None]:
        signal = Signal(name=name, query="", unit=UNITS.get(name, ""), thresholds=thresholds)
        step = max(15.0, window_seconds / TREND_POINTS)
        try:
            signal.query = _render(name, template, service, window)
            # The range uses a short rate window, so trend and onset follow the shape inside the look-back
            # instead of a moving average that reaches a whole window further back.
            range_query = _render(name, template, service, f"{int(max(4 * step, 120))}s")
            answers = await asyncio.gather(
                self._api("query", _params(query=signal.query, time=now)),
                self._api("query", _params(query=signal.query, time=now - BASELINE_OFFSET)),
                self._api(
                    "query_range",
                    _params(query=range_query, start=now - timedelta(seconds=window_seconds), end=now, step=step),
                ),
                return_exceptions=True,
            )
            failed = next((answer for answer in answers if isinstance(answer, BaseException)), None)
            if failed is not None:
                raise failed
            current, baseline, history = (_parse(body) for body in answers)  # type: ignore[arg-type]
        except Exception as exc:  # one signal's failure is recorded in it; golden_signals decides about the rest
            error = exception_error(exc, f"{self.name} {name}")
            signal.error = str(error)
            return signal, error
        signal.value = _worst_latest(current)
        signal.baseline = _worst_latest(baseline)
        points = _worst_points(history)
        signal.points = points
        signal.trend = _trend(points)
        if thresholds is not None:
            signal.onset = next((sample.time for sample in points if sample.value >= thresholds[0]), None)
        signal.health = _health(signal.value, thresholds)
        if thresholds is not None and name in RECOVERABLE and signal.health != "healthy":
            since = _recovered(points, thresholds[0], now, step)
            if since is not None:
                signal.peak, signal.value, signal.recovered = signal.value, points[-1].value, since
                signal.health = _health(signal.value, thresholds)
        return signal, None

    async def _api(self, endpoint: str, params: dict[str, str]) -> dict[str, Any]:
        response = await self._http().get(f"/api/v1/{endpoint}", params=params)
        if response.status_code >= 400:
            raise http_error(response, f"{self.name} {endpoint}")
        body = response.json()
        if body.get("status") != "success":
            raise ToolError(ErrorCode.BACKEND_ERROR, f"{self.name} {endpoint}: {body.get('error') or body}")
        return body

    def _bounded(self, promql: str, body: dict[str, Any]) -> QueryResult:
        series = _parse(body)
        notes = [f"server warning: {warning}" for warning in body.get("warnings") or []]
        if len(series) > self.max_series:
            # What has to go is the quietest: the series with the highest latest values stay.
            series.sort(key=_rank, reverse=True)
        series, cut = bound_list(series, self.max_series, "series")
        notes += cut
        long = sum(len(one.samples) > self.max_points for one in series)
        if long:
            notes.append(f"points: kept the latest {self.max_points} of each series ({long} series were longer)")
        for one in series:
            # The newest points stay: they are what a diagnosis is about.
            one.samples = one.samples[-self.max_points :]
        return QueryResult(query=promql, result_type=body["data"]["resultType"], series=series, notes=notes)


def _render(name: str, template: str, service: ServiceRef, window: str) -> str:
    try:
        return template.format(
            service=service.name, namespace=service.namespace, deployment=service.deployment, window=window
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise ToolError(ErrorCode.BAD_QUERY, f"metric template for {name} is not valid: {exc!r}") from exc


def _params(**values: datetime | float | str | None) -> dict[str, str]:
    return {
        key: (f"{value.timestamp():.3f}" if isinstance(value, datetime) else str(value))
        for key, value in values.items()
        if value is not None
    }


def _parse(body: dict[str, Any]) -> list[Series]:
    data = body["data"]
    result = data["result"]
    if data["resultType"] == "scalar":
        return [Series(labels={}, samples=[_sample(result)])]
    return [
        Series(
            labels=item.get("metric", {}),
            samples=[_sample(pair) for pair in item["values"]] if "values" in item else [_sample(item["value"])],
        )
        for item in result
    ]


def _sample(pair: list[Any]) -> Sample:
    return Sample(time=datetime.fromtimestamp(float(pair[0]), UTC), value=float(pair[1]))


def _worst_latest(series: list[Series]) -> float | None:
    # A template may yield several series (e.g. per pod); the worst one decides the signal's health.
    values = [s.samples[-1].value for s in series if s.samples and not math.isnan(s.samples[-1].value)]
    return max(values) if values else None


def _rank(series: Series) -> float:
    latest = _worst_latest([series])
    return -math.inf if latest is None else latest


def _worst_points(series: list[Series]) -> list[Sample]:
    worst: dict[datetime, float] = {}
    for one in series:
        for sample in one.samples:
            if math.isfinite(sample.value):
                worst[sample.time] = max(worst.get(sample.time, -math.inf), sample.value)
    return [Sample(time, value) for time, value in sorted(worst.items())]


def _recovered(points: list[Sample], warning: float, now: datetime, step: float) -> datetime | None:
    """When the series fell back under `warning` after being over it, if it has stayed under for RECOVERED_FOR up
    to now (its last point is at most two steps old); else None."""
    if not points or (now - points[-1].time).total_seconds() > 2 * step:
        return None
    since = None
    for sample in reversed(points):
        if sample.value >= warning:
            break
        since = sample.time
    else:
        return None  # never over the warning level inside the window: nothing to recover from
    return since if since is not None and now - since >= RECOVERED_FOR else None


def _trend(points: list[Sample]) -> str | None:
    if len(points) < 3:
        return None
    xs = [p.time.timestamp() for p in points]
    ys = [p.value for p in points]
    slope, _ = statistics.linear_regression(xs, ys)
    change = slope * (xs[-1] - xs[0])
    if abs(change) <= TREND_MIN_RELATIVE * abs(statistics.fmean(ys)) or abs(change) < 1e-12:
        return "stable"
    return "increasing" if change > 0 else "decreasing"


def _health(value: float | None, thresholds: tuple[float, float] | None) -> str:
    if value is None:
        return "no_data"
    if thresholds is None:
        return "healthy"
    warning, critical = thresholds
    if value >= critical:
        return "critical"
    return "warning" if value >= warning else "healthy"


def _duration_seconds(window: str) -> float:
    parts = _DURATION.findall(window)
    if not parts or "".join(number + unit for number, unit in parts) != window.strip():
        raise ToolError(ErrorCode.BAD_QUERY, f"window {window!r} is not a PromQL duration such as 15m or 1h30m")
    return sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)
