"""What a scenario world's backends serve: the time markers and `base:` of the loader, LogQL on the Loki fake, and
metrics.json generators in a real, backfilled Prometheus (shared/scenarios/FORMAT.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.loopback.backfilled import BackfilledPrometheus, samples
from devtools.loopback.loki import FakeLoki
from devtools.world import load_world, resolve_times

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_time_markers() -> None:
    data = {"a": "@-90", "b": ["see {@-3600|%H:%M} and {@+60}"], "c": "@-90 is not whole", "d": 7}
    assert resolve_times(data, NOW) == {
        "a": "2026-03-01T11:58:30Z", "b": ["see 11:00 and 2026-03-01T12:01:00Z"], "c": "@-90 is not whole", "d": 7}


def test_a_world_inherits_missing_files_from_its_base(tmp_path: Path) -> None:
    base, child = tmp_path / "base", tmp_path / "child"
    base.mkdir(), child.mkdir()
    (base / "scenario.yaml").write_text("name: base\nquestion: q\nservice: shop\nnamespace: ns\n")
    (base / "k8s.json").write_text(json.dumps({"pods": [{"metadata": {"name": "p", "creationTimestamp": "@-60"}}]}))
    (base / "logs.json").write_text(json.dumps([{"t": -5, "labels": {"app": "shop"}, "line": "from base"}]))
    (child / "scenario.yaml").write_text(
        "name: child\nquestion: what happened at {@-60|%H:%M}?\nservice: shop\nnamespace: ns\nbase: base\n"
        "expect:\n  required: ['{@-60|%H:%M}']\n")
    (child / "logs.json").write_text(json.dumps([{"t": -1, "labels": {"app": "shop"}, "line": "mine at {@-1}"}]))

    world = load_world(child, now=NOW)

    assert world.k8s["pods"][0]["metadata"]["creationTimestamp"] == "2026-03-01T11:59:00Z"
    assert world.k8s["events"] == [] and world.k8s["deployments"] == []
    assert [(e.at, e.line) for e in world.logs] == [(NOW - timedelta(seconds=1), "mine at 2026-03-01T11:59:59Z")]
    assert world.spec.question == "what happened at 11:59?" and world.spec.expect.required == ["11:59"]
    assert '[services."shop"]' in world.config and 'logs = \'{namespace="ns", app="shop"}\'' in world.config


@pytest.fixture
async def loki() -> AsyncIterator[FakeLoki]:
    now = datetime.now(UTC)
    fake = FakeLoki()
    fake.add({"namespace": "shop", "app": "checkout", "level": "error"},
             [(now - timedelta(seconds=s), f"ERROR timeout calling payments after {s}s") for s in (30, 90, 150, 400)])
    fake.add({"namespace": "shop", "app": "checkout", "level": "info"}, [(now - timedelta(seconds=20), "GET /cart 200")])
    fake.add({"namespace": "shop", "app": "cart"}, [(now - timedelta(seconds=10), 'level=warn msg="slow redis"'),
                                                   (now - timedelta(seconds=10), 'level=warn msg="slow redis"'),
                                                   (now + timedelta(seconds=60), "the future")])
    fake.add({"namespace": "ops", "app": "checkout"}, [(now - timedelta(seconds=5), "other namespace")])
    async with fake:
        yield fake


async def _get(loki: FakeLoki, path: str, **params: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{loki.url}/loki/api/v1/{path}", params=params) as response:
        text = await response.text()
        return response.status, json.loads(text) if response.status == 200 else text


def _lines(body: dict[str, Any]) -> list[str]:
    return sorted(line for stream in body["data"]["result"] for _, line in stream["values"])


async def test_logql_selectors_filters_and_defaults(loki: FakeLoki) -> None:
    _, body = await _get(loki, "query_range", query='{namespace="shop", app=~"check.*"} |= "payments" != "400s"')
    assert _lines(body) == [f"ERROR timeout calling payments after {s}s" for s in (150, 30, 90)]
    _, body = await _get(loki, "query_range", query='{namespace!="ops", app!~"check.*"}')  # deduplicated, no future
    assert _lines(body) == ['level=warn msg="slow redis"']
    _, body = await _get(loki, "query_range", query='{app="checkout"} | json | detected_level="error" |~ "after (30|90)s"')
    assert _lines(body) == ["ERROR timeout calling payments after 30s", "ERROR timeout calling payments after 90s"]
    _, body = await _get(loki, "query_range", query='{app="cart"} | logfmt | level="warn"')  # the line names its level
    assert _lines(body) == ['level=warn msg="slow redis"']
    _, body = await _get(loki, "query_range", query='{namespace="shop"}', limit="2")  # newest first
    assert _lines(body) == ["GET /cart 200", 'level=warn msg="slow redis"']
    status, text = await _get(loki, "query_range", query='{namespace="shop"')
    assert status == 400 and "parse error" in text


async def test_logql_metric_queries(loki: FakeLoki) -> None:
    _, body = await _get(loki, "query", query='sum by (app) (count_over_time({namespace="shop"} |= "" [5m]))')
    assert body["data"]["resultType"] == "vector"
    assert {r["metric"]["app"]: r["value"][1] for r in body["data"]["result"]} == {"checkout": "4", "cart": "1"}
    _, body = await _get(loki, "query", query='sum(rate({app="checkout", level="error"}[5m]))')
    assert [r["value"][1] for r in body["data"]["result"]] == [repr(3 / 300)]
    _, body = await _get(loki, "query_range", query='count_over_time({app="checkout", level="error"}[1m])', step="60")
    [series] = body["data"]["result"]
    assert series["metric"]["level"] == "error" and sum(float(v) for _, v in series["values"]) >= 4


def test_generators() -> None:
    assert samples({"name": "g", "const": 2, "start": -60, "end": 0, "step": 30}, 1000) == [(940, 2.0), (970, 2.0)]
    points = {"name": "g", "points": [[-50, 1], [-20, 5]], "start": -60, "end": 1, "step": 15}
    assert samples(points, 0) == [(-45, 1.0), (-30, 1.0), (-15, 5.0), (0, 5.0)]
    assert samples({**points, "interpolate": "linear"}, 0)[1] == (-30, 1 + 4 * 20 / 30)
    ramp = {"name": "g", "ramp": {"from": 0, "to": 10, "between": [-20, 0]}, "start": -30, "end": 11, "step": 10}
    assert samples(ramp, 0) == [(-30, 0.0), (-20, 0.0), (-10, 5.0), (0, 10.0), (10, 10.0)]
    counter = {"name": "c_total", "rate": [[-30, 1], [-10, 3]], "initial": 5, "start": -60, "end": 1, "step": 10}
    assert samples(counter, 0) == [(-30, 5.0), (-20, 15.0), (-10, 25.0), (0, 55.0)]


@pytest.mark.integration  # the Prometheus binary, backfilled by promtool
async def test_a_real_prometheus_serves_the_series(tmp_path: Path) -> None:
    now = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()), UTC)
    series = [
        {"name": "http_requests_total", "labels": {"service": "cart", "status": "500"}, "type": "counter",
         "rate": [[-10800, 0.5], [-600, 8]]},
        {"name": "http_requests_total", "labels": {"service": "cart", "status": "200"}, "type": "counter", "rate": 92},
        {"name": "container_memory_working_set_bytes", "labels": {"pod": "cart-1"}, "type": "gauge",
         "ramp": {"from": 100e6, "to": 4096e6, "between": [-7200, 0]}},
    ]
    async with BackfilledPrometheus(series, now, tmp_path) as prometheus:
        [(_, ratio)] = await prometheus.instant(
            'sum(rate(http_requests_total{status="500"}[5m])) / sum(rate(http_requests_total[5m]))')
        assert ratio == pytest.approx(0.08, abs=0.001)
        [(labels, memory)] = await prometheus.instant("container_memory_working_set_bytes")
        assert labels["pod"] == "cart-1" and memory == pytest.approx(4096e6, rel=0.01)
        [(_, before)] = await prometheus.instant("container_memory_working_set_bytes", now - timedelta(hours=2))
        assert before == pytest.approx(100e6, rel=0.01)
