"""Logs tool against a fake Loki that answers over HTTP in Loki's own shapes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.loki import PARSE_ERROR, FakeLoki
from tests.fakes.prometheus import free_port
from tools.base import ErrorCode, ServiceRef
from tools.logs import MAX_LINE, Logs

NOW = datetime.now(UTC).replace(microsecond=0)
CHECKOUT = ServiceRef("checkout", "shop", "checkout", '{namespace="shop", app="checkout"}')
POD_A = {"namespace": "shop", "app": "checkout", "pod": "checkout-6f7d8c9b5-x2k4p"}
POD_B = {"namespace": "shop", "app": "checkout", "pod": "checkout-6f7d8c9b5-q9w8e", "detected_level": "warn"}


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


PAYMENT = [
    (
        ago(300 - 30 * i),
        f"{ago(300 - 30 * i).isoformat()} ERROR payment failed for order {1000 + 7 * i} "
        f'user="user{i}" from 10.0.{i}.12:5432 trace=4bf92f3577b34da6a3ce929d0e0e47{i:02d}',
    )
    for i in range(5)
]
REFUSED = [
    (ago(205 - 10 * i), f'level=error msg="connection refused" upstream=10.1.2.{i}:6379 request_id={uuid}')
    for i, uuid in enumerate(
        (
            "3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e",
            "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            "0f9e8d7c-6b5a-4c3d-2e1f-0a9b8c7d6e5f",
        )
    )
]
SECRET = (ago(100), "ERROR db connect failed postgres://app:s3cr3t@db:5432/shop password=hunter2 after 532ms")
NOISE = [(ago(50 + i), f"GET /health 200 in {i}ms") for i in range(4)]
TIMEOUTS = [(ago(150), "upstream inventory timeout after 1532ms"), (ago(20), "upstream inventory timeout after 77ms")]


@pytest.fixture
def canned(loki: FakeLoki) -> FakeLoki:
    loki.add(POD_A, [*PAYMENT, *REFUSED, SECRET, *NOISE, (ago(7200), PAYMENT[0][1])])
    loki.add(POD_B, TIMEOUTS)
    loki.add({"namespace": "shop", "app": "catalog"}, [(ago(10), "ERROR catalog is somebody else's problem")])
    return loki


async def test_error_lines_are_grouped_into_patterns(canned: FakeLoki) -> None:
    logs = Logs(canned.url)
    try:
        result = await logs.error_patterns(CHECKOUT, 600, now=NOW)
    finally:
        await logs.aclose()

    assert result.ok, result.error_text
    report = result.data
    assert report is not None
    assert report.lines_scanned == 11 and not report.limit_hit and result.notes == []
    assert [p.count for p in report.patterns] == [5, 3, 2, 1]
    payment, refused, timeout, secret = report.patterns

    # lines that differ only in timestamps, numbers, quoted ids, addresses and trace ids are one pattern
    assert payment.pattern == "<ts> ERROR payment failed for order <num> user=<str> from <ip> trace=<hex>"
    assert (payment.first_seen, payment.last_seen) == (PAYMENT[0][0], PAYMENT[-1][0])
    assert payment.sample == PAYMENT[-1][1] and payment.level == "error"
    assert refused.pattern == 'level=error msg="connection refused" upstream=<ip> request_id=<uuid>'
    assert (refused.first_seen, refused.last_seen, refused.level) == (REFUSED[0][0], REFUSED[-1][0], "error")
    assert timeout.pattern == "upstream inventory timeout after <num>ms"
    assert timeout.level == "warning"  # from the stream's detected_level

    assert "s3cr3t" not in secret.sample + secret.pattern and "hunter2" not in secret.sample + secret.pattern
    assert "[REDACTED]" in secret.sample

    request = canned.requests[-1]
    assert request["direction"] == "backward" and request["limit"] == "2000"
    assert int(request["end"]) - int(request["start"]) == 600 * 10**9
    assert request["query"].startswith('{namespace="shop", app="checkout"} |~ `(?i)(error')


async def test_hitting_the_limit_is_said(canned: FakeLoki) -> None:
    logs = Logs(canned.url, limit=4)
    try:
        result = await logs.error_patterns(CHECKOUT, 600, now=NOW, top=1)
    finally:
        await logs.aclose()

    report = result.data
    assert report is not None and report.limit_hit and report.lines_scanned == 4
    # the newest four: two timeouts, the secret line, the last payment
    assert [(p.count, p.pattern) for p in report.patterns] == [(2, "upstream inventory timeout after <num>ms")]
    assert report.notes[0].startswith("Loki's limit of 4 lines was reached")
    assert "patterns: showing 1 of 3" in report.notes
    assert result.notes == report.notes


async def test_a_long_line_is_bounded(loki: FakeLoki) -> None:
    loki.add(POD_A, [(ago(5), "ERROR " + "x" * 5000)])
    logs = Logs(loki.url)
    try:
        result = await logs.error_patterns(CHECKOUT, 60, now=NOW)
    finally:
        await logs.aclose()

    assert result.data is not None
    pattern = result.data.patterns[0]
    assert len(pattern.sample) == len(pattern.pattern) == MAX_LINE and pattern.sample.endswith("…")


async def test_tail_gives_the_newest_lines_oldest_first_and_redacted(canned: FakeLoki) -> None:
    logs = Logs(canned.url)
    try:
        result = await logs.tail('{app="checkout"}', 600, limit=4, now=NOW)
    finally:
        await logs.aclose()

    assert result.ok and result.data is not None
    assert [line.line for line in result.data] == [line for _, line in sorted(NOISE[:3] + TIMEOUTS[1:])]
    assert [line.time for line in result.data] == sorted(line.time for line in result.data)
    assert result.notes == ["showing the newest 4 lines: the limit was reached, older lines may exist"]
    assert result.data[0].labels["pod"] == POD_A["pod"]
    assert canned.requests[-1]["query"] == '{app="checkout"}'

    wide = Logs(canned.url)
    try:
        everything = await wide.tail('{app="checkout"}', 600, now=NOW)
    finally:
        await wide.aclose()
    assert everything.data is not None and len(everything.data) == 15
    assert not any("hunter2" in line.line for line in everything.data)


async def test_a_loki_parse_error_is_a_bad_query_with_its_message(loki: FakeLoki) -> None:
    logs = Logs(loki.url)
    bad = ServiceRef("checkout", "shop", "checkout", '{app="checkout"} | syntax_error')
    try:
        result = await logs.error_patterns(bad, 600)
    finally:
        await logs.aclose()

    assert result.error is not None and result.error.code is ErrorCode.BAD_QUERY
    assert PARSE_ERROR in result.error.message
    assert len(loki.requests) == 1  # not retried


async def test_a_slow_loki_times_out(loki: FakeLoki) -> None:
    loki.delay = 1.0  # five times the timeout; the server finishes this sleep at teardown
    logs = Logs(loki.url, timeout=0.2, attempts=1)
    started = time.monotonic()
    try:
        result = await logs.error_patterns(CHECKOUT, 600)
    finally:
        await logs.aclose()

    assert result.error is not None and result.error.code is ErrorCode.TIMEOUT
    assert time.monotonic() - started < 1.5


async def test_an_unreachable_loki() -> None:
    logs = Logs(f"http://127.0.0.1:{free_port()}", attempts=1)
    try:
        result = await logs.tail('{app="checkout"}', 60)
    finally:
        await logs.aclose()

    assert result.error is not None and result.error.code is ErrorCode.UNREACHABLE


async def test_without_a_url_logs_are_not_configured() -> None:
    logs = Logs(None)

    assert not logs.configured
    result = await logs.error_patterns(CHECKOUT, 600)
    assert result.error is not None and result.error.code is ErrorCode.NOT_CONFIGURED
