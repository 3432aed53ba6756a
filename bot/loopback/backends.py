"""A loopback HTTP backend on 127.0.0.1 that answers every GET after a fixed delay and counts the requests per distinct query."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Self

from aiohttp import web

from bot.loopback.serving import Served, serve


class SlowBackend(Served):
    """Answers `GET /<anything>?<query>` with `{"ok": true, "path": ..., "query": {...}}` after `delay`
    seconds; `requests` counts what reached it by (path, sorted query), so a benchmark can tell how many
    backend calls each distinct query cost."""

    def __init__(self, delay: float = 0.2):
        self.delay = delay
        self.requests: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._answer)
        self._runner, self.url = await serve(app)
        return self

    def reset(self) -> None:
        self.requests.clear()

    async def _answer(self, request: web.Request) -> web.Response:
        query = tuple(sorted(request.query.items()))
        self.requests[(request.path, query)] += 1
        await asyncio.sleep(self.delay)
        return web.json_response({"ok": True, "path": request.path, "query": dict(query)})
