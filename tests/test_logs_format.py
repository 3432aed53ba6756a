"""Log lines are JSON with the request id, and secrets never reach them."""

from __future__ import annotations

import json
import logging

from bot.logging_setup import JsonFormatter, request_id_var


def test_json_lines_carry_the_request_id_and_redact_secrets() -> None:
    record = logging.LogRecord(
        "srebot.test", logging.WARNING, __file__, 1,
        "calling %s with Authorization: Bearer abcdefghijklmnop and password=hunter2", ("postgres://u:s3cret@db/x",),
        None,
    )
    record.tool = "metrics.query"
    token = request_id_var.set("req_abc123")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["request_id"] == "req_abc123"
    assert entry["level"] == "warning" and entry["tool"] == "metrics.query"
    for secret in ("abcdefghijklmnop", "hunter2", "s3cret"):
        assert secret not in line
