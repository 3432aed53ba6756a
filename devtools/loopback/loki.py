"""A fake Loki on 127.0.0.1: `/loki/api/v1/query_range`, `/query` and `/labels` over canned lines, in Loki's own
response shapes.

The LogQL it evaluates (shared/scenarios/FORMAT.md, "logs.json"): a stream selector with `=`, `!=`, `=~`, `!~`;
line filters `|=`, `!=`, `|~`, `!~`; label filters (`| level="error"`, where `detected_level` falls back to
`level`, then to the level the line itself names); parser and formatter stages (`| json`, `| logfmt`, …), accepted
and ignored; and `count_over_time(…[5m])` / `rate(…[5m])`, optionally inside `sum` or `sum by (…)`. Loki's
defaults apply: end = now, start = end − 1 h, limit 100, direction backward. Lines in the future are not served
yet, and identical lines (same time, stream and text) count once.

Used by `srebot eval` and by the test suite (tests/fakes/loki.py)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from devtools.loopback.serving import QueryCounter, Served, serve

PARSE_ERROR_MARKER = "syntax_error"
PARSE_ERROR = "parse error at line 1, col 5: syntax error: unexpected IDENTIFIER"

_STRING = r'"(?:[^"\\]|\\.)*"|`[^`]*`'
_MATCHER = re.compile(rf"\s*([A-Za-z_][\w.]*)\s*(=~|!~|!=|=)\s*({_STRING})\s*,?")
_LINE_FILTER = re.compile(rf"\s*(\|=|!=|\|~|!~)\s*({_STRING})")
_OR_STRING = re.compile(rf"\s*or\s+({_STRING})")
_LABEL_FILTER = re.compile(rf"\s*\|\s*([A-Za-z_]\w*)\s*(=~|!~|!=|==|=|>=|<=|>|<)\s*({_STRING}|[-\d.]+\w*)")
_AND_FILTER = re.compile(rf"\s*(?:,|and)\s*([A-Za-z_]\w*)\s*(=~|!~|!=|==|=|>=|<=|>|<)\s*({_STRING}|[-\d.]+\w*)")
_STAGE = re.compile(
    rf"\s*\|\s*(json|logfmt|unpack|pattern|regexp|line_format|label_format|decolorize|drop|keep)\b"
    rf"(?:{_STRING}|[^|`\"])*"
)
_RANGE_AGG = re.compile(r"^(count_over_time|rate|bytes_over_time|bytes_rate)\s*\((.*)\[(\d+(?:ms|s|m|h|d))\]\s*\)$", re.S)
_OUTER_AGG = re.compile(r"^(sum|count|max|min|avg)\s*(?:by\s*\(([^)]*)\))?\s*\((.*)\)\s*(?:by\s*\(([^)]*)\))?$", re.S)
_LEVEL_WORDS = (("critical", "critical"), ("fatal", "fatal"), ("error", "error"), ("err", "error"),
                ("warning", "warn"), ("warn", "warn"), ("info", "info"), ("debug", "debug"), ("trace", "trace"))
_LEVEL_FIELD = re.compile(r"""(?i)\b(?:level|lvl|severity)["']?\s*[=:]\s*["']?(\w+)""")
_DURATION = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class LogQLError(ValueError):
    """A query this fake (or Loki) cannot parse; Loki answers 400 with the message."""


@dataclass
class _Pipeline:
    matchers: list[tuple[str, str, str]]
    tests: list[Callable[[dict[str, str], str], bool]] = field(default_factory=list)

    def selects(self, labels: dict[str, str]) -> bool:
        return all(_compare(labels.get(name, ""), op, value) for name, op, value in self.matchers)

    def keeps(self, labels: dict[str, str], line: str) -> bool:
        return all(test(labels, line) for test in self.tests)


class FakeLoki(Served):
    """Answers like Loki does (module docstring). `add(labels, [(time, line)])` adds a stream's lines."""

    def __init__(self) -> None:
        self.streams: list[tuple[dict[str, str], list[tuple[datetime, str]]]] = []
        self.delay = 0.0  # seconds to wait before answering, to provoke client timeouts
        self.requests: list[dict[str, str]] = []
        self.per_query = QueryCounter()  # requests by method, path and query (devtools.loopback.serving)
        app = web.Application()
        app.router.add_get("/loki/api/v1/query_range", self._query_range)
        app.router.add_get("/loki/api/v1/query", self._query)
        app.router.add_get("/loki/api/v1/labels", self._labels)
        app.router.add_get("/ready", self._ready)
        self._app = app
        self.url = ""

    def add(self, labels: dict[str, str], lines: list[tuple[datetime, str]]) -> None:
        for known, existing in self.streams:
            if known == labels:
                existing.extend(lines)
                return
        self.streams.append((dict(labels), list(lines)))

    async def start(self) -> FakeLoki:
        self._runner, self.url = await serve(self._app)
        return self

    async def _ready(self, request: web.Request) -> web.Response:
        return web.Response(text="ready\n")

    async def _labels(self, request: web.Request) -> web.Response:
        self.per_query.add_request(request)
        names = sorted({name for labels, _ in self.streams for name in labels})
        return web.json_response({"status": "success", "data": names})

    async def _query_range(self, request: web.Request) -> web.Response:
        return await self._answer(request, ranged=True)

    async def _query(self, request: web.Request) -> web.Response:
        return await self._answer(request, ranged=False)

    async def _answer(self, request: web.Request, *, ranged: bool) -> web.Response:
        params = dict(request.query)
        self.requests.append(params)
        self.per_query.add_request(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        query = params.get("query", "")
        if PARSE_ERROR_MARKER in query:
            return web.Response(status=400, text=PARSE_ERROR + "\n")
        now = _ns(datetime.now(UTC))
        try:
            if ranged:
                end = _time(params["end"]) if "end" in params else now
                start = _time(params["start"]) if "start" in params else end - 3600 * 10**9
            else:
                end = _time(params["time"]) if "time" in params else now
                start = end - 3600 * 10**9
            limit = int(params.get("limit", "100"))
            data = self._evaluate(query, start, end, limit, params, ranged)
        except (LogQLError, ValueError) as exc:
            return web.Response(status=400, text=f"{exc}\n")
        return web.json_response({"status": "success", "data": data})

    # --- evaluation ----------------------------------------------------------------------------------
    def _lines(self, pipeline: _Pipeline, start: int, end: int) -> list[tuple[int, str, int]]:
        """(ns, line, stream index) of every line the pipeline keeps in [start, end), at most once each."""
        now = _ns(datetime.now(UTC))
        seen: set[tuple[int, str, int]] = set()
        for index, (labels, lines) in enumerate(self.streams):
            if not pipeline.selects(labels):
                continue
            for moment, line in lines:
                at = _ns(moment)
                if start <= at < end and at <= now and pipeline.keeps(labels, line):
                    seen.add((at, line, index))
        return list(seen)

    def _evaluate(
        self, query: str, start: int, end: int, limit: int, params: dict[str, str], ranged: bool
    ) -> dict[str, object]:
        query = query.strip()
        if query.startswith("{"):
            pipeline = _parse_pipeline(query)
            entries = self._lines(pipeline, start, end)
            backward = params.get("direction", "backward").lower() == "backward"
            entries.sort(key=lambda entry: entry[0], reverse=backward)
            entries = entries[:limit]
            result = []
            for index, (labels, _) in enumerate(self.streams):
                values = [[str(at), line] for at, line, owner in entries if owner == index]
                if values:
                    result.append({"stream": labels, "values": values})
            stats = {"summary": {"totalLinesProcessed": sum(len(lines) for _, lines in self.streams),
                                 "totalEntriesReturned": len(entries), "execTime": 0.001}}
            return {"resultType": "streams", "result": result, "stats": stats}
        outer = _OUTER_AGG.match(query)
        aggregate, by, inner = (outer.group(1), (outer.group(2) or outer.group(4)), outer.group(3)) if outer else (None, None, query)
        ranged_agg = _RANGE_AGG.match(inner.strip())
        if ranged_agg is None:
            raise LogQLError(f"parse error: unsupported query {query!r}")
        function, selector, window = ranged_agg.groups()
        pipeline = _parse_pipeline(selector.strip())
        width = int(float(window[:-1] if not window.endswith("ms") else window[:-2]) * 10**9 *
                    _DURATION["ms" if window.endswith("ms") else window[-1]])
        group_keys = [k.strip() for k in by.split(",") if k.strip()] if by else []
        step = int(_seconds(params.get("step", "")) * 10**9) if ranged else 0
        if ranged and step <= 0:
            step = max((end - start) // 250 // 10**9, 1) * 10**9  # Loki's default: about 250 points
        moments = list(range(start, end + 1, step)) if ranged else [end]
        lines = self._lines(pipeline, min(moments) - width, max(moments) + 1)
        series: dict[tuple[tuple[str, str], ...], dict[int, float]] = {}
        for at_step in moments:
            counts: dict[tuple[tuple[str, str], ...], float] = {}
            for at, line, owner in lines:
                if at_step - width < at <= at_step:
                    labels = self.streams[owner][0]
                    if aggregate is None:
                        key = tuple(sorted(labels.items()))
                    else:
                        key = tuple(sorted((k, labels[k]) for k in group_keys if k in labels))
                    amount = len(line.encode()) if function.startswith("bytes") else 1
                    counts[key] = counts.get(key, 0.0) + amount
            for key, count in counts.items():
                value = count / (width / 10**9) if function in ("rate", "bytes_rate") else count
                series.setdefault(key, {})[at_step] = value
        if ranged:
            result = [{"metric": dict(key), "values": [[at / 10**9, _num(v)] for at, v in sorted(points.items())]}
                      for key, points in series.items()]
            return {"resultType": "matrix", "result": result}
        result = [{"metric": dict(key), "value": [end / 10**9, _num(points[end])]} for key, points in series.items()]
        return {"resultType": "vector", "result": result}


def _parse_pipeline(text: str) -> _Pipeline:
    if not text.startswith("{") or "}" not in text:
        raise LogQLError(f"parse error: a query starts with a stream selector {{…}}: {text!r}")
    close = _selector_end(text)
    body, rest = text[1:close], text[close + 1 :]
    matchers: list[tuple[str, str, str]] = []
    position = 0
    while position < len(body.strip()) and body[position:].strip():
        match = _MATCHER.match(body, position)
        if match is None:
            raise LogQLError(f"parse error: bad stream selector {{{body}}}")
        matchers.append((match.group(1), match.group(2), _unquote(match.group(3))))
        position = match.end()
    if not matchers:
        raise LogQLError("parse error: queries require at least one stream matcher")
    pipeline = _Pipeline(matchers)
    while rest.strip():
        if found := _LINE_FILTER.match(rest):
            op, values = found.group(1), [_unquote(found.group(2))]
            rest = rest[found.end() :]
            while alternative := _OR_STRING.match(rest):
                values.append(_unquote(alternative.group(1)))
                rest = rest[alternative.end() :]
            pipeline.tests.append(_line_test(op, values))
        elif found := _STAGE.match(rest):
            rest = rest[found.end() :]
        elif found := _LABEL_FILTER.match(rest):
            tests = [_label_test(found.group(1), found.group(2), found.group(3))]
            rest = rest[found.end() :]
            while more := _AND_FILTER.match(rest):
                tests.append(_label_test(more.group(1), more.group(2), more.group(3)))
                rest = rest[more.end() :]
            pipeline.tests += tests
        else:
            raise LogQLError(f"parse error: unexpected {rest.strip()[:40]!r}")
    return pipeline


def _selector_end(text: str) -> int:
    quoted = None
    for index, char in enumerate(text):
        if quoted:
            if char == quoted and text[index - 1] != "\\":
                quoted = None
        elif char in "\"`":
            quoted = char
        elif char == "}":
            return index
    raise LogQLError("parse error: unclosed stream selector")


def _unquote(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    if token.startswith('"'):
        try:
            return json.loads(token)
        except ValueError:
            return token[1:-1]
    return token


def _compare(actual: str, op: str, expected: str) -> bool:
    if op in ("=", "=="):
        return actual == expected
    if op == "!=":
        return actual != expected
    if op == "=~":
        return re.fullmatch(expected, actual) is not None
    if op == "!~":
        return re.fullmatch(expected, actual) is None
    try:
        left, right = float(actual), float(expected)
    except ValueError:
        return False
    return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op]


def _line_test(op: str, values: list[str]) -> Callable[[dict[str, str], str], bool]:
    if op in ("|~", "!~"):
        patterns = [re.compile(v) for v in values]
        hit = lambda line: any(p.search(line) for p in patterns)  # noqa: E731 - a one-line predicate
    else:
        hit = lambda line: any(v in line for v in values)  # noqa: E731
    positive = op in ("|=", "|~")
    return lambda labels, line: hit(line) == positive


def detected_level(labels: dict[str, str], line: str) -> str:
    """Loki's `detected_level`: the stream's own, else its `level` label, else the level the line names."""
    for name in ("detected_level", "level", "lvl", "severity"):
        if labels.get(name):
            return labels[name].lower()
    if found := _LEVEL_FIELD.search(line):
        return _normalise_level(found.group(1))
    lowered = line.lower()
    for word, level in _LEVEL_WORDS:
        if re.search(rf"\b{word}\b", lowered):
            return level
    return "unknown"


def _normalise_level(word: str) -> str:
    word = word.lower()
    return next((level for known, level in _LEVEL_WORDS if word == known), word)


def _label_test(name: str, op: str, raw: str) -> Callable[[dict[str, str], str], bool]:
    expected = _unquote(raw)

    def test(labels: dict[str, str], line: str) -> bool:
        if name in ("detected_level", "level") and name not in labels:
            actual = detected_level(labels, line)
        else:
            actual = labels.get(name, "")
        return _compare(actual, op, expected)

    return test


def _time(value: str) -> int:
    """Loki's time parameters: nanoseconds, (fractional) seconds, or RFC 3339."""
    if "T" in value:
        return _ns(datetime.fromisoformat(value.replace("Z", "+00:00")))
    number = float(value)
    return int(number) if number > 1e15 else int(number * 10**9)


def _seconds(text: str) -> float:
    if not text:
        return 0.0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", text)
    if match is None:
        raise LogQLError(f"invalid step {text!r}")
    return float(match.group(1)) * _DURATION[match.group(2) or "s"]


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
