"""Logs tool: error patterns and recent lines from Loki."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


from tools.base import ErrorCode, HttpBackend, ServiceRef, ToolError, ToolResult, bound_list, http_error
from tools.redact import redact_lines

_ERROR_WORDS = r"(?i)(error|exception|fatal|panic|fail|timeout|timed out|refused|\b5\d\d\b)"
# A LogQL raw (backtick) string: the regex reaches Loki without a second layer of escaping.
ERROR_FILTER = f"|~ `{_ERROR_WORDS}`"
MAX_LINE = 500

# Order matters: timestamps and UUIDs before the plain numbers and hex they contain.
_MASKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<ts>"),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<ts>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    # Only quoted values without spaces: a quoted phrase (logfmt msg="...") is the message itself.
    (re.compile(r"\"[^\"\s]*\"|'[^'\s]*'"), "<str>"),
    # Needs a digit and a letter, so that plain numbers of any length all become <num>.
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b"), "<hex>"),
    # Not after a letter: "http2" and "v1" are words, "532ms" and "db-7" carry numbers.
    (re.compile(r"(?<![A-Za-z_])\d+(?:\.\d+)?"), "<num>"),
]
_SPACE = re.compile(r"\s+")

_LEVEL_LABELS = ("level", "detected_level", "severity", "lvl")
_LEVEL_FIELD = re.compile(r"(?i)\b(?:level|lvl|severity)[\"']?\s*[=:]\s*[\"']?([a-z]+)")
# Upper case only: loggers print levels that way, while "error" in prose says little about severity.
_LEVEL_WORD = re.compile(r"\b(FATAL|PANIC|CRITICAL|ERROR|ERR|WARN|WARNING|INFO|DEBUG)\b")
_ERROR_LINE = re.compile(_ERROR_WORDS)
_LEVELS = {
    "fatal": "error",
    "panic": "error",
    "emerg": "error",
    "alert": "error",
    "crit": "error",
    "critical": "error",
    "err": "error",
    "error": "error",
    "warn": "warning",
    "warning": "warning",
    "notice": "info",
    "info": "info",
    "debug": "info",
    "trace": "info",
}
_SEVERITY = {"info": 0, "warning": 1, "error": 2}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class LogPattern:
    pattern: str  # the line with numbers, ids, addresses, quoted values and timestamps masked
    count: int
    first_seen: datetime
    last_seen: datetime
    sample: str  # the newest line of the pattern, redacted and bounded
    level: str  # error | warning | info, the most severe seen


@dataclass
class LogReport:
    query: str
    start: datetime
    end: datetime
    lines_scanned: int
    limit_hit: bool  # Loki returned as many lines as asked for: older lines in the window were not seen
    patterns: list[LogPattern]
    notes: list[str] = field(default_factory=list)


@dataclass
class LogLine:
    time: datetime
    line: str  # redacted and bounded
    labels: dict[str, str]
    level: str


class Logs(HttpBackend):
    name = "logs"

    def __init__(
        self,
        url: str | None,
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        cache_ttl: float = 15.0,
        limit: int = 2000,
    ):
        super().__init__(url, timeout=timeout, attempts=attempts, cache_ttl=cache_ttl)
        self.limit = limit

    async def ping(self) -> ToolResult[str]:
        """Loki's label API: cheap, and it needs a working querier (unlike /ready on some setups)."""

        async def fetch() -> str:
            await self._get_json("/loki/api/v1/labels")
            return "label API answers"

        return await self.run("ping", fetch)

    async def error_patterns(
        self, service: ServiceRef, window_seconds: float, *, now: datetime | None = None, top: int = 10
    ) -> ToolResult[LogReport]:
        """The most frequent error-looking line patterns of `service` in the window.

        Loki is read newest first, so when its limit is hit it is the oldest lines that go unseen."""
        query = f"{service.log_selector} {ERROR_FILTER}"

        async def fetch() -> LogReport:
            end = now or datetime.now(UTC)
            start = end - timedelta(seconds=window_seconds)
            entries = await self._entries(query, start, end, self.limit)
            groups: dict[str, LogPattern] = {}
            for at, line, labels in entries:
                level = _level(line, labels)
                pattern = _clip(_pattern(line))
                group = groups.get(pattern)
                if group is None:
                    groups[pattern] = LogPattern(pattern, 1, at, at, _clip(line), level)
                    continue
                group.count += 1
                group.first_seen = min(group.first_seen, at)
                group.last_seen = max(group.last_seen, at)
                if _SEVERITY[level] > _SEVERITY[group.level]:
                    group.level = level
            ranked = sorted(groups.values(), key=lambda p: (p.count, p.last_seen), reverse=True)
            patterns, notes = bound_list(ranked, top, "patterns")
            limit_hit = len(entries) >= self.limit
            if limit_hit:
                notes.insert(
                    0,
                    f"Loki's limit of {self.limit} lines was reached: only lines since {entries[-1][0].isoformat()} "
                    "were scanned, so counts are lower bounds",
                )
            return LogReport(query, start, end, len(entries), limit_hit, patterns, notes)

        return await self.run("error_patterns", fetch, key=(query, window_seconds, now, top))

    async def tail(
        self, selector: str, window_seconds: float, limit: int = 100, *, now: datetime | None = None
    ) -> ToolResult[list[LogLine]]:
        """The newest lines of a LogQL query in the window, oldest first as a terminal shows them."""
        size = max(1, min(limit, self.limit))

        async def fetch() -> list[LogLine]:
            end = now or datetime.now(UTC)
            entries = await self._entries(selector, end - timedelta(seconds=window_seconds), end, size)
            lines = []
            for at, line, labels in reversed(entries):
                lines.append(LogLine(at, _clip(line), labels, _level(line, labels)))
            return lines

        result = await self.run("tail", fetch, key=(selector, window_seconds, size, now))
        if result.data is not None and len(result.data) >= size:
            result.notes.append(f"showing the newest {size} lines: the limit was reached, older lines may exist")
        return result

    async def _entries(
        self, query: str, start: datetime, end: datetime, limit: int
    ) -> list[tuple[datetime, str, dict[str, str]]]:
        """(time, redacted line, stream labels), newest first, across all streams. Each stream's lines are
        redacted together, oldest first, so a private key logged one line per entry is masked whole."""
        response = await self._http().get(
            "/loki/api/v1/query_range",
            params={
                "query": query,
                "start": str(_ns(start)),
                "end": str(_ns(end)),
                "limit": str(limit),
                "direction": "backward",
            },
        )
        if response.status_code >= 400:
            raise http_error(response, f"{self.name} query_range")
        data = response.json()["data"]
        if data["resultType"] != "streams":
            raise ToolError(ErrorCode.BAD_QUERY, f"{query!r} is a metric query ({data['resultType']}), not a log query")
        entries = []
        for stream in data["result"]:
            values = sorted(stream["values"], key=lambda value: int(value[0]))
            lines = redact_lines(value[1] for value in values)
            entries += [(int(value[0]), line, stream.get("stream", {})) for value, line in zip(values, lines)]
        entries.sort(key=lambda entry: entry[0], reverse=True)
        return [(_EPOCH + timedelta(microseconds=ns // 1000), line, labels) for ns, line, labels in entries]


def _pattern(line: str) -> str:
    for mask, replacement in _MASKS:
        line = mask.sub(replacement, line)
    return _SPACE.sub(" ", line).strip()


def _level(line: str, labels: dict[str, str]) -> str:
    words = [labels.get(name) for name in _LEVEL_LABELS]
    words += [match.group(1) for match in (_LEVEL_FIELD.search(line), _LEVEL_WORD.search(line)) if match]
    for word in words:
        if word and word.lower() in _LEVELS:
            return _LEVELS[word.lower()]
    return "error" if _ERROR_LINE.search(line) else "info"


def _clip(text: str) -> str:
    # The head of a log line says what happened; bound_text keeps tails, which suits command output instead.
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"


def _ns(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000) * 1000
