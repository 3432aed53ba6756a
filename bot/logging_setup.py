"""Logging setup: JSON or text lines carrying the request id, with secrets redacted."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import datetime, timezone

from tools.redact import redact, redact_data

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        plain = {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in entry.items()}
        # redact values, not the serialised line: a pattern must never eat a JSON quote
        return json.dumps(redact_data(plain))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        request_id = request_id_var.get()
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{record.levelname[0]} {record.name}: {record.getMessage()}"
        if request_id:
            line += f" [{request_id}]"
        if extras:
            line += f" {extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def setup_logging(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # client libraries are chatty at INFO and may echo request details
    for noisy in ("httpx", "httpcore", "aiohttp.access", "botocore", "urllib3", "kubernetes", "google_adk", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
