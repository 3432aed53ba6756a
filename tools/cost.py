"""AWS cost: spend by service or tag, period over period, and a forecast, from Cost Explorer.

Cost Explorer bills every request, so answers are cached for an hour and one request covers both
the period and the one before it. boto3 blocks, so each call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from botocore.exceptions import ClientError, ConnectionClosedError, NoCredentialsError, PartialCredentialsError
from botocore.exceptions import ConnectionError as BotoConnectionError

from tools.base import Backend, ErrorCode, ToolError, ToolResult

if TYPE_CHECKING:
    import boto3

UNTAGGED = "(untagged)"
_TOTAL = ""
_MAX_PERIOD_DAYS = 365

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
_UNAUTHENTICATED = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
}
_THROTTLED = {"LimitExceededException", "ThrottlingException", "TooManyRequestsException"}


@dataclass
class GroupCost:
    name: str  # service ("Amazon EC2") or tag value ("checkout", or "(untagged)")
    current: float
    previous: float
    change: float
    change_pct: float | None  # None when nothing was spent before


@dataclass
class DailyCost:
    day: date
    amount: float


@dataclass
class CostReport:
    period_days: int
    start: date  # first day of the period
    end: date  # day after the period (today: today's partial spend is left out)
    previous_start: date
    group_by: Literal["service", "tag"]
    tag_key: str | None
    currency: str
    total: float
    previous_total: float
    change_pct: float | None
    groups: list[GroupCost]  # by current spend, largest first
    daily: list[DailyCost]  # total of each day of the period
    top_movers: list[GroupCost]  # largest absolute change first
    estimated: bool  # AWS has not finalised some of these days
    notes: list[str] = field(default_factory=list)


@dataclass
class ServiceCost:
    tag_key: str
    tag_value: str
    period_days: int
    start: date
    end: date
    currency: str
    cost: GroupCost
    daily: list[DailyCost]
    estimated: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class CostForecast:
    period_days: int
    start: date
    end: date
    currency: str
    amount: float
    method: Literal["cost_explorer", "projection_from_daily_trend"]
    lower: float | None  # Cost Explorer's 80 % prediction interval; None for a projection
    upper: float | None
    basis: str  # how the number was made, in words


@dataclass
class _Usage:
    """Cost Explorer rows flattened to (day, group, amount)."""

    entries: list[tuple[date, str, float]]
    currency: str
    estimated: bool
    notes: list[str]


class Cost(Backend):
    """Credentials come from boto3's standard chain (or the given `session`)."""

    name = "cost"

    def __init__(
        self,
        *,
        region: str | None,
        endpoint_url: str | None = None,
        enabled: bool = True,
        tag_key: str = "service",
        cache_ttl: float = 3600.0,
        timeout: float = 20.0,
        attempts: int = 3,
        backoff: float = 0.5,
        session: boto3.session.Session | None = None,
        max_groups: int = 25,
        max_movers: int = 5,
        max_pages: int = 10,
    ):
        super().__init__(timeout=timeout, attempts=attempts, backoff=backoff, cache_ttl=cache_ttl)
        self.region = region or "us-east-1"  # Cost Explorer has one endpoint, in us-east-1
        self.endpoint_url = endpoint_url
        self.enabled = enabled
        self.tag_key = tag_key
        self.max_groups = max_groups
        self.max_movers = max_movers
        self.max_pages = max_pages
        self._session = session
        self._client: Any = None
        self._client_lock = asyncio.Lock()

    @property
    def configured(self) -> bool:
        return self.enabled

    def not_configured_reason(self) -> str:
        return "cost is disabled"

    async def aclose(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None

    async def ping(self) -> ToolResult[str]:
        """Yesterday's total: proves credentials and ce:GetCostAndUsage (one billed request)."""

        async def fetch() -> str:
            today = _today(None)
            usage = await self._usage(today - timedelta(days=1), today)
            return f"Cost Explorer: yesterday {sum(a for _, _, a in usage.entries):.2f} {usage.currency}"

        # cached like every cost read: /readyz and `srebot check` must not run up the Cost Explorer bill
        return await self.run("ping", fetch, key=())

    async def cost_by(
        self,
        period_days: int = 7,
        *,
        group_by: Literal["service", "tag"] = "service",
        tag_key: str | None = None,
        now: datetime | None = None,
    ) -> ToolResult[CostReport]:
        """Daily unblended cost of the last `period_days` full days by AWS service or by a tag,
        against the period before."""
        key_name = (tag_key or self.tag_key) if group_by == "tag" else None
        today = _today(now)

        async def fetch() -> CostReport:
            start, mid = _periods(period_days, today)
            grouping = {"Type": "TAG", "Key": key_name} if key_name else {"Type": "DIMENSION", "Key": "SERVICE"}
            usage = await self._usage(start, today, GroupBy=[grouping])
            current, previous, daily = _split(usage.entries, mid, today)
            groups = sorted(
                (
                    _group(name, current.get(name, 0.0), previous.get(name, 0.0))
                    for name in current.keys() | previous.keys()
                ),
                key=lambda g: (-g.current, g.name),
            )
            movers = sorted((g for g in groups if round(g.change, 2)), key=lambda g: -abs(g.change))[: self.max_movers]
            notes = usage.notes + (
                [f"groups: showing {self.max_groups} of {len(groups)}"] if len(groups) > self.max_groups else []
            )
            overall = _group("total", sum(current.values()), sum(previous.values()))
            return CostReport(
                period_days=period_days,
                start=mid,
                end=today,
                previous_start=start,
                group_by=group_by,
                tag_key=key_name,
                currency=usage.currency,
                total=overall.current,
                previous_total=overall.previous,
                change_pct=overall.change_pct,
                groups=groups[: self.max_groups],
                daily=daily,
                top_movers=movers,
                estimated=usage.estimated,
                notes=notes,
            )

        return await self.run("cost_by", fetch, key=(period_days, group_by, key_name, today))

    async def service_cost(
        self, tag_value: str, period_days: int = 7, tag_key: str | None = None, *, now: datetime | None = None
    ) -> ToolResult[ServiceCost]:
        """Cost of the resources tagged `tag_key=tag_value`, this period against the one before."""
        key_name = tag_key or self.tag_key
        today = _today(now)

        async def fetch() -> ServiceCost:
            start, mid = _periods(period_days, today)
            tag_filter = {"Tags": {"Key": key_name, "Values": [tag_value], "MatchOptions": ["EQUALS"]}}
            usage = await self._usage(start, today, Filter=tag_filter)
            current, previous, daily = _split(usage.entries, mid, today)
            return ServiceCost(
                tag_key=key_name,
                tag_value=tag_value,
                period_days=period_days,
                start=mid,
                end=today,
                currency=usage.currency,
                cost=_group(tag_value, current.get(_TOTAL, 0.0), previous.get(_TOTAL, 0.0)),
                daily=daily,
                estimated=usage.estimated,
                notes=usage.notes,
            )

        return await self.run("service_cost", fetch, key=(tag_value, period_days, key_name, today))

    async def forecast(self, period_days: int = 30, *, now: datetime | None = None) -> ToolResult[CostForecast]:
        """Spend of the next `period_days` days: Cost Explorer's forecast, or, when that fails, a projection
        of the last `period_days` days' trend, labelled as such in `method` and `basis`."""
        today = _today(now)

        async def fetch() -> CostForecast:
            end = today + timedelta(days=period_days)
            try:
                answer = await self._call(
                    "get_cost_forecast",
                    TimePeriod={"Start": today.isoformat(), "End": end.isoformat()},
                    Metric="UNBLENDED_COST",
                    Granularity="DAILY",
                    PredictionIntervalLevel=80,
                )
            except ToolError as exc:
                return await self._projection(period_days, today, why=exc.message)
            by_time = answer.get("ForecastResultsByTime", [])
            return CostForecast(
                period_days=period_days,
                start=today,
                end=end,
                currency=answer.get("Total", {}).get("Unit", "USD"),
                amount=round(float(answer.get("Total", {}).get("Amount", 0.0)), 2),
                method="cost_explorer",
                lower=_sum_field(by_time, "PredictionIntervalLowerBound"),
                upper=_sum_field(by_time, "PredictionIntervalUpperBound"),
                basis="AWS Cost Explorer forecast (80 % prediction interval)",
            )

        return await self.run("forecast", fetch, key=(period_days, today))

    async def _projection(self, period_days: int, today: date, *, why: str) -> CostForecast:
        start = today - timedelta(days=period_days)
        usage = await self._usage(start, today)
        _, _, daily = _split(usage.entries, start, today)
        amounts = [d.amount for d in daily]
        slope, intercept = _linear_fit(amounts)
        n = len(amounts)
        projected = sum(max(0.0, intercept + slope * x) for x in range(n, n + period_days))
        return CostForecast(
            period_days=period_days,
            start=today,
            end=today + timedelta(days=period_days),
            currency=usage.currency,
            amount=round(projected, 2),
            method="projection_from_daily_trend",
            lower=None,
            upper=None,
            basis=(
                f"projection of the linear trend of daily cost from {start} to {today - timedelta(days=1)} "
                f"(a rough estimate: Cost Explorer's forecast was unavailable: {why})"
            ),
        )

    async def _usage(self, start: date, end: date, **query: Any) -> _Usage:
        """get_cost_and_usage, DAILY UnblendedCost, following pages up to `max_pages`."""
        params = {
            "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
            "Granularity": "DAILY",
            "Metrics": ["UnblendedCost"],
            **query,
        }
        entries: list[tuple[date, str, float]] = []
        currency, estimated, notes = "USD", False, []
        for _ in range(self.max_pages):
            page = await self._call("get_cost_and_usage", **params)
            for row in page.get("ResultsByTime", []):
                day = date.fromisoformat(row["TimePeriod"]["Start"])
                estimated = estimated or bool(row.get("Estimated"))
                groups = row.get("Groups") or [{"Keys": [_TOTAL], "Metrics": row.get("Total", {})}]
                for group in groups:
                    metric = group.get("Metrics", {}).get("UnblendedCost")
                    if metric is None:
                        continue
                    currency = metric.get("Unit", currency)
                    entries.append((day, _group_name(group["Keys"][0]), float(metric["Amount"])))
            token = page.get("NextPageToken")
            if not token:
                break
            params["NextPageToken"] = token
        else:
            notes.append(f"cost data cut after {self.max_pages} pages of Cost Explorer results")
        return _Usage(entries, currency, estimated, notes)

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        ce = await self._ce()
        try:
            return await asyncio.to_thread(getattr(ce, operation), **params)
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise ToolError(
                ErrorCode.UNAUTHORIZED,
                f"AWS credentials not found ({exc}): give srebot credentials through the standard AWS chain "
                "(environment, shared profile, or an IAM role)",
            ) from exc
        except ClientError as exc:
            raise _client_error(exc) from exc
        except (BotoConnectionError, ConnectionClosedError) as exc:
            raise ToolError(ErrorCode.UNREACHABLE, f"Cost Explorer: cannot connect ({exc})") from exc

    async def _ce(self) -> Any:
        async with self._client_lock:
            if self._client is None:
                # imported on the first cost query, not with the toolbox: most processes never ask one
                import boto3
                from botocore.config import Config

                # Backend.run retries; botocore retrying too would multiply the attempts (and the bill).
                settings = Config(
                    retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=self.timeout
                )
                session = self._session or await asyncio.to_thread(boto3.session.Session)
                self._client = await asyncio.to_thread(
                    session.client, "ce", region_name=self.region, endpoint_url=self.endpoint_url, config=settings
                )
        return self._client


R = TypeVar("R", CostReport, ServiceCost)


def _client_error(exc: ClientError) -> ToolError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    message = _clean(str(error.get("Message", "")))
    operation = exc.operation_name
    if code in _DENIED or status == 403:
        return ToolError(
            ErrorCode.FORBIDDEN, f"not allowed to call Cost Explorer (needs IAM permission ce:{operation}): {message}"
        )
    if code in _UNAUTHENTICATED or status == 401:
        return ToolError(ErrorCode.UNAUTHORIZED, f"AWS rejected the credentials: {message}")
    if code in _THROTTLED or status == 429:
        return ToolError(ErrorCode.RATE_LIMITED, f"Cost Explorer throttled {operation}: {message}")
    if status >= 500 or not status:
        return ToolError(ErrorCode.BACKEND_ERROR, f"Cost Explorer {operation} failed ({code}): {message}")
    return ToolError(ErrorCode.BAD_QUERY, f"Cost Explorer refused {operation} ({code}): {message}")


def _clean(message: str) -> str:
    """AWS-compatible endpoints sometimes answer JSON services in XML or HTML; keep the words."""
    inner = re.search(r"<Message>(.*?)</Message>", message, re.S)
    text = inner.group(1) if inner else re.sub(r"<[^>]+>", " ", message)
    return " ".join(text.split())[:300]


def _today(now: datetime | None) -> date:
    return (now or datetime.now(UTC)).astimezone(UTC).date()


def _periods(period_days: int, today: date) -> tuple[date, date]:
    """Start of the previous period and start of the current one; both are `period_days` long and end before today."""
    if not 1 <= period_days <= _MAX_PERIOD_DAYS:
        raise ToolError(ErrorCode.BAD_QUERY, f"period must be 1 to {_MAX_PERIOD_DAYS} days, not {period_days}")
    mid = today - timedelta(days=period_days)
    return mid - timedelta(days=period_days), mid


def _split(
    entries: Iterable[tuple[date, str, float]], mid: date, end: date
) -> tuple[dict[str, float], dict[str, float], list[DailyCost]]:
    """Per-group sums from `mid` on and before it, and the daily totals from `mid` to `end`."""
    current: dict[str, float] = defaultdict(float)
    previous: dict[str, float] = defaultdict(float)
    days = {mid + timedelta(days=i): 0.0 for i in range((end - mid).days)}
    for day, group, amount in entries:
        if day >= mid:
            current[group] += amount
            days[day] = days.get(day, 0.0) + amount
        else:
            previous[group] += amount
    return current, previous, [DailyCost(day, round(amount, 2)) for day, amount in sorted(days.items())]


def _group(name: str, current: float, previous: float) -> GroupCost:
    return GroupCost(
        name=name,
        current=round(current, 2),
        previous=round(previous, 2),
        change=round(current - previous, 2),
        change_pct=round((current - previous) / previous * 100, 1) if previous else None,
    )


def _group_name(key: str) -> str:
    # Tag groups come back as "key$value"; an empty value is spend without the tag.
    if "$" in key:
        return key.split("$", 1)[1] or UNTAGGED
    return key


def _sum_field(rows: list[dict[str, Any]], name: str) -> float | None:
    values = [float(r[name]) for r in rows if name in r]
    return round(sum(values), 2) if values else None


def _linear_fit(values: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of values over 0..n-1."""
    n = len(values)
    if n < 2:
        return 0.0, values[0] if values else 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values)) / sum((x - mean_x) ** 2 for x in range(n))
    return slope, mean_y - slope * mean_x
