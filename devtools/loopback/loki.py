"""A fake Loki on 127.0.0.1: /loki/api/v1/query_range over canned lines, in Loki's own response shapes.

Shipped in the package because `srebot eval` boots it for scenarios; the test suite re-uses it
(tests/fakes/loki.py)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from aiohttp import web

from devtools.loopback.serving import QueryCounter, Served, serve

PARSE_ERROR_MARKER = "syntax_error"
PARSE_ERROR = "parse error at line 1, col 5: syntax error: unexpected IDENTIFIER"

_MATCHER = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
_REGEX_FILTER = re.compile(r"\|~\s*`([^`]*)`")


class FakeLoki(Served):
    """Answers like Loki does: equality stream matchers, a `|~` line filter, the time range, limit and direction."""

    def __init__(self) -> None:
        self.streams: list[tuple[dict[str, str], list[tuple[datetime, str]]]] = []
        self.delay = 0.0  # seconds to wait before answering, to provoke client timeouts
        self.requests: list[dict[str, str]] = []
        self.per_query = QueryCounter()  # requests by method, path and query (devtools.loopback.serving)
        app = web.Application()
        app.router.add_get("/loki/api/v1/query_range", self._query_range)
        app.router.add_get("/loki/api/v1/labels", self._labels)
        self._app = app
        self.url = ""

    def add(self, labels: dict[str, str], lines: list[tuple[datetime, str]]) -> None:
        self.streams.append((labels, lines))

    async def start(self) -> FakeLoki:
        self._runner, self.url = await serve(self._app)
        return self

    async def _labels(self, request: web.Request) -> web.Response:
        self.per_query.add_request(request)
        names = sorted({name for labels, _ in self.streams for name in labels})
        return web.json_response({"status": "success", "data": names})

    async def _query_range(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        self.requests.append(params)
        self.per_query.add_request(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        query = params["query"]
        if PARSE_ERROR_MARKER in query:
            return web.Response(status=400, text=PARSE_ERROR + "\n")
        selector = query[query.index("{") : query.index("}") + 1]
        matchers = dict(_MATCHER.findall(selector))
        line_filter = _REGEX_FILTER.search(query)
        pattern = re.compile(line_filter.group(1)) if line_filter else None
        start, end, limit = int(params["start"]), int(params["end"]), int(params.get("limit", "100"))
        backward = params.get("direction", "backward") == "backward"

        entries = [
            (ns, line, index)
            for index, (labels, lines) in enumerate(self.streams)
            if all(labels.get(name) == value for name, value in matchers.items())
            for moment, line in lines
            if start <= (ns := _ns(moment)) < end and (pattern is None or pattern.search(line))
        ]
        entries.sort(key=lambda entry: entry[0], reverse=backward)
        entries = entries[:limit]
        result = []
        for index, (labels, _) in enumerate(self.streams):
            values = [[str(ns), line] for ns, line, owner in entries if owner == index]
            if values:
                result.append({"stream": labels, "values": values})
        return web.json_response(
            {
                "status": "success",
                "data": {
                    "resultType": "streams",
                    "result": result,
                    "stats": {
                        "summary": {
                            "totalLinesProcessed": sum(len(lines) for _, lines in self.streams),
                            "totalEntriesReturned": len(entries),
                            "execTime": 0.001,
                        }
                    },
                },
            }
        )


def _ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
