"""The cost tool against moto's server (Cost Explorer with queued results) through real boto3."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.fakes.aws import MotoServer, cost_and_usage, daily_totals
from tools.base import ErrorCode
from tools.cost import UNTAGGED, Cost

NOW = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)
TWO_WEEKS_AGO = date(2024, 5, 1)
# seven days before, then seven days of the period: EC2 doubles on day 4, Lambda appears on day 6
BEFORE = [{"Amazon EC2": 10.0, "Amazon RDS": 5.0, "Amazon S3": 1.0}] * 7
PERIOD = (
    [{"Amazon EC2": 10.0, "Amazon RDS": 5.0, "Amazon S3": 1.0}] * 3
    + [{"Amazon EC2": 20.0, "Amazon RDS": 5.0, "Amazon S3": 1.0}] * 2
    + [{"Amazon EC2": 20.0, "Amazon RDS": 5.0, "Amazon S3": 1.0, "AWS Lambda": 2.0}] * 2
)


def _cost(server: MotoServer, **kwargs) -> Cost:
    return Cost(region="us-east-1", endpoint_url=server.url, session=server.session(), backoff=0.01, **kwargs)


async def test_cost_by_service_compares_the_period_with_the_one_before(aws: MotoServer) -> None:
    aws.queue_cost_and_usage(cost_and_usage(TWO_WEEKS_AGO, BEFORE + PERIOD))

    result = await _cost(aws).cost_by(7, now=NOW)

    assert result.ok, result.error_text
    report = result.data
    assert (report.start, report.end, report.previous_start) == (date(2024, 5, 8), date(2024, 5, 15), TWO_WEEKS_AGO)
    assert (report.total, report.previous_total, report.change_pct, report.currency) == (156.0, 112.0, 39.3, "USD")
    groups = {g.name: (g.current, g.previous, g.change, g.change_pct) for g in report.groups}
    assert groups == {
        "Amazon EC2": (110.0, 70.0, 40.0, 57.1),
        "Amazon RDS": (35.0, 35.0, 0.0, 0.0),
        "AWS Lambda": (4.0, 0.0, 4.0, None),
        "Amazon S3": (7.0, 7.0, 0.0, 0.0),
    }
    assert [g.name for g in report.groups] == ["Amazon EC2", "Amazon RDS", "Amazon S3", "AWS Lambda"]
    assert [g.name for g in report.top_movers] == ["Amazon EC2", "AWS Lambda"]
    assert [d.amount for d in report.daily] == [16.0, 16.0, 16.0, 26.0, 26.0, 28.0, 28.0]
    assert report.daily[0].day == date(2024, 5, 8)
    assert report.estimated  # the last day is not final yet


async def test_ping_reads_yesterday(aws: MotoServer) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    aws.queue_cost_and_usage(daily_totals(yesterday, [42.5]))

    assert (await _cost(aws).ping()).data == "Cost Explorer: yesterday 42.50 USD"


async def test_cost_by_tag_names_untagged_spend(aws: MotoServer) -> None:
    day = {"checkout": 30.0, "catalog": 12.0, "": 3.0}
    aws.queue_cost_and_usage(cost_and_usage(TWO_WEEKS_AGO, [day] * 14, tag_key="team"))

    report = (await _cost(aws).cost_by(7, group_by="tag", tag_key="team", now=NOW)).data

    assert report.tag_key == "team" and report.group_by == "tag"
    assert {g.name: g.current for g in report.groups} == {"checkout": 210.0, "catalog": 84.0, UNTAGGED: 21.0}
    assert report.top_movers == [] and report.change_pct == 0.0


async def test_pages_are_followed(aws: MotoServer) -> None:
    aws.queue_cost_and_usage(
        cost_and_usage(TWO_WEEKS_AGO, BEFORE, next_page_token="page-2"),
        cost_and_usage(date(2024, 5, 8), PERIOD),
    )

    report = (await _cost(aws).cost_by(7, now=NOW)).data

    assert (report.total, report.previous_total) == (156.0, 112.0)
    assert report.notes == []


async def test_page_limit_is_noted(aws: MotoServer) -> None:
    aws.queue_cost_and_usage(cost_and_usage(TWO_WEEKS_AGO, BEFORE, next_page_token="page-2"))

    result = await _cost(aws, max_pages=1).cost_by(7, now=NOW)

    report = result.data
    assert report.previous_total == 112.0 and report.total == 0.0
    assert result.notes == report.notes == ["cost data cut after 1 pages of Cost Explorer results"]


async def test_results_are_cached_and_concurrent_asks_share_one_request(aws: MotoServer) -> None:
    aws.queue_cost_and_usage(cost_and_usage(TWO_WEEKS_AGO, BEFORE + PERIOD))
    cost = _cost(aws)

    first, second = await asyncio.gather(cost.cost_by(7, now=NOW), cost.cost_by(7, now=NOW))
    third = await cost.cost_by(7, now=NOW)

    assert first.data.total == second.data.total == third.data.total == 156.0
    assert third.cached
    assert cost.backend_calls == 1


async def test_service_cost_by_tag(aws: MotoServer) -> None:
    aws.queue_cost_and_usage(daily_totals(TWO_WEEKS_AGO, [4.0] * 7 + [5.0] * 6 + [9.0]))

    result = await _cost(aws).service_cost("checkout", 7, now=NOW)

    service = result.data
    assert (service.tag_key, service.tag_value) == ("service", "checkout")
    assert (service.cost.current, service.cost.previous, service.cost.change_pct) == (39.0, 28.0, 39.3)
    assert [d.amount for d in service.daily][-2:] == [5.0, 9.0]


async def test_forecast_falls_back_to_a_labelled_projection(aws: MotoServer) -> None:
    # moto has no GetCostForecast: the answer is a projection of the last 7 days (10, 11, ... 16 a day)
    aws.queue_cost_and_usage(daily_totals(date(2024, 5, 8), [10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]))

    result = await _cost(aws).forecast(7, now=NOW)

    forecast = result.data
    assert forecast.method == "projection_from_daily_trend"
    assert forecast.amount == 140.0  # 17 + 18 + ... + 23
    assert (forecast.start, forecast.end) == (date(2024, 5, 15), date(2024, 5, 22))
    assert forecast.lower is None and "forecast was unavailable" in forecast.basis


@pytest.fixture
async def forecast_endpoint() -> AsyncIterator[tuple[str, list[dict]]]:
    """A Cost Explorer stand-in answering only GetCostForecast (moto lacks it), recording the requests."""
    received: list[dict] = []

    async def handle(request: web.Request) -> web.Response:
        received.append({"target": request.headers["X-Amz-Target"], "body": json.loads(await request.text())})
        answer = {
            "Total": {"Amount": "301.5", "Unit": "USD"},
            "ForecastResultsByTime": [
                {
                    "TimePeriod": {"Start": "2024-05-15", "End": "2024-05-16"},
                    "MeanValue": "100.5",
                    "PredictionIntervalLowerBound": "90",
                    "PredictionIntervalUpperBound": "110",
                },
                {
                    "TimePeriod": {"Start": "2024-05-16", "End": "2024-05-17"},
                    "MeanValue": "100.5",
                    "PredictionIntervalLowerBound": "91",
                    "PredictionIntervalUpperBound": "111",
                },
                {
                    "TimePeriod": {"Start": "2024-05-17", "End": "2024-05-18"},
                    "MeanValue": "100.5",
                    "PredictionIntervalLowerBound": "92",
                    "PredictionIntervalUpperBound": "112",
                },
            ],
        }
        return web.json_response(answer, content_type="application/x-amz-json-1.1")

    app = web.Application()
    app.router.add_post("/", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), received
    await server.close()


async def test_forecast_from_cost_explorer(aws: MotoServer, forecast_endpoint: tuple[str, list[dict]]) -> None:
    url, received = forecast_endpoint
    cost = Cost(region=None, endpoint_url=url, session=aws.session())

    forecast = (await cost.forecast(3, now=NOW)).data

    assert (forecast.method, forecast.amount, forecast.lower, forecast.upper) == ("cost_explorer", 301.5, 273.0, 333.0)
    [request] = received
    assert request["target"] == "AWSInsightsIndexService.GetCostForecast"
    assert request["body"]["TimePeriod"] == {"Start": "2024-05-15", "End": "2024-05-18"}
    assert request["body"]["Metric"] == "UNBLENDED_COST"


async def test_access_denied_names_the_permission_and_is_not_retried(aws: MotoServer) -> None:
    cost = Cost(region="us-east-1", endpoint_url=aws.url, session=aws.session_without_permissions())

    result = await cost.cost_by(7, now=NOW)

    assert result.error.code is ErrorCode.FORBIDDEN
    assert "needs IAM permission ce:GetCostAndUsage" in result.error_text
    assert "user/srebot is not authorized to perform: ce:GetCostAndUsage" in result.error_text
    assert cost.backend_calls == 1


async def test_missing_credentials_say_so(aws: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    cost = Cost(region="us-east-1", endpoint_url=aws.url)

    result = await cost.cost_by(7, now=NOW)

    assert result.error.code is ErrorCode.UNAUTHORIZED
    assert "AWS credentials not found" in result.error_text
    assert cost.backend_calls == 1


async def test_disabled_bad_period_and_unreachable(aws: MotoServer) -> None:
    disabled = await Cost(region="us-east-1", enabled=False).cost_by(7)
    bad = await _cost(aws).cost_by(0, now=NOW)
    down = await Cost(region="us-east-1", endpoint_url="http://127.0.0.1:9", session=aws.session(), attempts=1).cost_by(
        7, now=NOW
    )

    assert disabled.error.code is ErrorCode.NOT_CONFIGURED
    assert bad.error.code is ErrorCode.BAD_QUERY and "1 to 365 days" in bad.error_text
    assert down.error.code is ErrorCode.UNREACHABLE
