"""Serves an aiohttp app on a free port of 127.0.0.1 for the loopback stand-ins, their `async with` base, and
the per-query request count they keep."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Self

from aiohttp import web


async def serve(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    """Serve `app` at a free port of `host`; returns its runner (to clean up) and base URL (no "/")."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://{host}:{port}"


class Served:
    """`async with` for a loopback server whose `start()` sets `_runner` and returns it; `close()` (or
    `stop()`) shuts it down."""

    _runner: web.AppRunner | None = None

    async def start(self) -> Self:
        raise NotImplementedError

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def stop(self) -> None:
        await self.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# Query parameters that carry an absolute time: Prometheus (time, start, end), Loki (start, end), the control
# plane's audit log (start_time, end_time).
TIME_PARAMS = frozenset({"time", "start", "end", "start_time", "end_time"})
_EPOCH_SECONDS = re.compile(r"\d{9,11}(?:\.\d+)?")
_EPOCH_NANOSECONDS = re.compile(r"\d{18,20}")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")


def _epoch(value: str) -> float | None:
    if _EPOCH_NANOSECONDS.fullmatch(value):
        return int(value) / 1e9
    if _EPOCH_SECONDS.fullmatch(value):
        return float(value)
    if _RFC3339.fullmatch(value):
        return datetime.fromisoformat(value).timestamp()
    return None


class QueryCounter:
    """How many requests a loopback server received for each distinct query: method, path and sorted query
    parameters. An absolute time in the query (TIME_PARAMS) is written relative to the request's arrival in
    whole minutes ("end=now-0m", "time=now-60m"): a question asked again a moment later ("the last 15
    minutes", "an hour ago") is the same query, so a repeated backend call shows as a count above 1
    instead of as one more distinct query, while "now" and "an hour ago" stay distinct."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    @staticmethod
    def key(method: str, path: str, params: Iterable[tuple[str, str]], arrived: float | None = None) -> str:
        arrived = time.time() if arrived is None else arrived
        shown = []
        for name, value in sorted(params):
            moment = _epoch(value) if name in TIME_PARAMS else None
            if moment is not None:
                minutes = round((arrived - moment) / 60)
                value = f"now-{minutes}m" if minutes >= 0 else f"now+{-minutes}m"
            shown.append(f"{name}={value}")
        return f"{method} {path}" + ("?" + "&".join(shown) if shown else "")

    def add(self, method: str, path: str, params: Iterable[tuple[str, str]]) -> None:
        self.counts[self.key(method, path, params)] += 1

    def add_request(self, request: web.Request) -> None:
        """Count an aiohttp request by its URL's query (a form body is not read)."""
        self.add(request.method, request.path, request.query.items())

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        self.counts.clear()
