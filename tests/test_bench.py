"""`srebot bench --quick --json` runs end to end and reports every figure with sane values (never a timing verdict)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devtools.bench import ANCHOR_HEADER, table

pytestmark = pytest.mark.integration  # starts srebot in child processes

ROOT = Path(__file__).resolve().parent.parent
LATENCIES = ("slack_ack", "slack_placeholder", "teams_ack", "teams_first_reply")
FIGURES = (*LATENCIES, "sustained", "fan_out", "backend_calls", "session_lookup", "rss")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "bench", "--quick", "--json"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_every_figure_is_reported_with_its_goal(report: dict[str, Any]) -> None:
    assert report["mode"] == "quick"
    assert set(FIGURES) <= set(report["figures"])
    for name in FIGURES:
        figure = report["figures"][name]
        assert "goal" in figure and "meets_goal" in figure, name
        assert figure["meets_goal"] in (True, False, None), name
    assert report["machine"]["cpus"] >= 1
    assert report["conditions"]["server_exit_code"] == 0  # SIGTERM drained and stopped it
    assert report["conditions"]["server_log_errors"] == 0


def test_latencies_are_measured_for_every_request_and_nothing_is_lost(report: dict[str, Any]) -> None:
    figures = report["figures"]
    for name in LATENCIES:
        figure = figures[name]
        assert number(figure["p50_ms"]) and number(figure["p99_ms"]), name
        assert 0 < figure["p50_ms"] <= figure["p99_ms"] <= figure["max_ms"], name
    assert figures["slack_ack"]["n"] == figures["slack_ack"]["concurrent"] * figures["slack_ack"]["rounds"] > 0
    assert figures["teams_ack"]["n"] == figures["teams_ack"]["concurrent"] > 0
    for name in ("slack_ack", "teams_ack"):
        assert figures[name]["non_200"] == 0
        assert figures[name]["server_side"]["n"] >= figures[name]["concurrent"]
    for name in ("slack_placeholder", "teams_first_reply"):
        assert figures[name]["missing"] == 0
        assert figures[name]["lost"] == 0


def test_every_slack_figure_stands_beside_the_bare_bolt_anchor_with_its_ratio(report: dict[str, Any]) -> None:
    figures = report["figures"]
    for name in ("slack_ack", "slack_placeholder"):
        bursts = figures[name]["by_burst"]
        assert len(bursts) >= 2, name  # more than one burst size, each sent to both apps
        for burst, side in bursts.items():
            assert side["concurrent"] == int(burst)
            for app in ("srebot", "anchor"):
                assert side[app]["n"] == int(burst) * figures[name]["rounds"], (name, burst, app)
                assert number(side[app]["p99_ms"]), (name, burst, app)
            assert side["ratio"]["p99"] == round(side["srebot"]["p99_ms"] / side["anchor"]["p99_ms"], 2)
            assert number(side["ratio"]["p50"])
    # the anchor's events are answered and counted like srebot's
    assert figures["slack_placeholder"]["lost"] == figures["slack_placeholder"]["anchor"]["lost"] == 0
    sustained = figures["sustained"]
    assert sustained["anchor"]["sent"] == sustained["sent"]
    assert sustained["anchor"]["lost"] == 0
    assert set(sustained["ratio"]) == {"ack_p50", "ack_p99", "placeholder_p50", "placeholder_p99", "answered_per_s"}
    assert all(number(v) for v in sustained["ratio"].values()), sustained["ratio"]
    assert "anchor" not in figures["sustained_cpu_hog"]  # the hog phase is srebot's alone
    text = table(report)
    header = next(line for line in text.splitlines() if line.startswith(ANCHOR_HEADER[0]))
    assert [column.strip() for column in header.split("|")] == list(ANCHOR_HEADER)
    for burst in figures["slack_ack"]["by_burst"]:
        assert f"burst of {burst} " in text


def test_sustained_load_is_acked_and_answered_in_full(report: dict[str, Any]) -> None:
    sustained = report["figures"]["sustained"]
    assert sustained["sent"] > 0
    assert sustained["acked"] == sustained["answered"] == sustained["sent"]
    assert sustained["lost"] == 0
    for key in ("events_per_s", "acked_per_s", "answered_per_s", "server_cpu_ms_per_event"):
        assert number(sustained[key]) and sustained[key] > 0, key
    assert report["conditions"]["max_concurrency"] > 16  # raised for this figure, and said so


def test_every_sustained_event_ends_in_one_outcome_also_with_a_cpu_hog(report: dict[str, Any]) -> None:
    for name, hog in (("sustained", False), ("sustained_cpu_hog", True)):
        figure = report["figures"][name]
        outcomes = figure["outcomes"]
        assert set(outcomes) == {"answered", "told-failed", "told-interrupted", "told-busy", "silent", "unacked"}, name
        assert sum(outcomes.values()) == figure["sent"] > 0, name
        assert outcomes["silent"] == figure["lost"] == 0, name
        assert figure["cpu_hog"] is hog


def test_the_real_diagnose_fans_out_its_tools(report: dict[str, Any]) -> None:
    fan_out = report["figures"]["fan_out"]
    assert fan_out["failed_calls"] == 0
    assert fan_out["tools"] >= 2 and fan_out["http_requests_per_diagnose"] >= fan_out["tools"]
    assert set(fan_out["tool_names"]) == set(fan_out["http_requests_by_tool"])
    # awaited one after another, each tool took at least one backend delay
    assert fan_out["sequential_ms"] >= fan_out["tools"] * fan_out["tool_delay_ms"]
    assert 0 < fan_out["ratio"] < 1
    assert 0 < fan_out["ratio_floor"] < 1


def test_identical_concurrent_diagnoses_share_backend_calls(report: dict[str, Any]) -> None:
    calls = report["figures"]["backend_calls"]
    assert calls["answered"] == calls["requests"] > 1
    assert calls["lost"] == 0 and calls["failed_tools"] == 0
    # together they asked exactly what one diagnosis asks, and each query reached its backend once
    assert calls["distinct_queries"] == calls["queries_per_diagnose"] == report["figures"]["fan_out"]["http_requests_per_diagnose"]
    assert calls["calls_per_distinct_query"] == 1, calls["repeated"]
    assert calls["max_calls_one_query"] == 1, calls["repeated"]


def test_session_lookups_and_rss(report: dict[str, Any]) -> None:
    lookup = report["figures"]["session_lookup"]
    assert lookup["database"] == report["conditions"]["database"]
    for kind in ("warm", "cold", "create"):
        assert lookup[kind]["n"] > 0
        assert number(lookup[kind]["p50_ms"]) and number(lookup[kind]["p99_ms"]), kind
    assert lookup["warm"]["p50_ms"] <= lookup["cold"]["p50_ms"]  # the cache answers without the database
    rss = report["figures"]["rss"]
    assert number(rss["rss_mb"]) and 0 < rss["rss_mb"] <= rss["peak_mb"]


def test_the_table_shows_every_figure_beside_its_goal(report: dict[str, Any]) -> None:
    text = table(report)
    for words in ("Slack ack latency", "placeholder", "Teams", "sustained events/s", "fan-out", "backend calls",
                  "session lookup", "RSS", "meets goal"):
        assert words in text, words
