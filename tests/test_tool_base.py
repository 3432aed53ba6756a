"""Backend.run against a real HTTP server on 127.0.0.1: single-flight, TTL cache, retries, Retry-After."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tools.base import Backend, ErrorCode, ToolResult, http_error


class Server:
    """Counts hits per path; some paths fail the first time, or always."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        app = web.Application()
        app.router.add_get("/{name}", self._handle)
        self.http = TestServer(app, host="127.0.0.1")

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] += 1
        first = self.hits[name] == 1
        if name == "slow":
            await asyncio.sleep(0.1)  # long enough for every concurrent caller to arrive while it is in flight
        elif name == "flaky" and first:
            return web.json_response({"error": "warming up"}, status=503)
        elif name == "limited" and first:
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
        elif name == "bad":
            return web.json_response({"error": "no such label"}, status=400)
        elif name == "down":
            return web.Response(status=503, text="upstream unavailable")
        return web.json_response({"name": name, "hit": self.hits[name]})


class Probe(Backend):
    name = "probe"

    def __init__(self, url: str, **options: Any):
        super().__init__(backoff=0.01, **options)
        self.client = httpx.AsyncClient(base_url=url)

    async def get(self, path: str, *, key: str | None = None) -> ToolResult[dict[str, Any]]:
        async def fetch() -> dict[str, Any]:
            response = await self.client.get(path)
            if response.status_code >= 400:
                raise http_error(response, f"probe {path}")
            return response.json()

        return await self.run("get", fetch, key=key)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    fake = Server()
    await fake.http.start_server()
    try:
        yield fake
    finally:
        await fake.http.close()


@pytest.fixture
async def probe(server: Server) -> AsyncIterator[Probe]:
    backend = Probe(str(server.http.make_url("")), attempts=3, cache_ttl=0.5)
    try:
        yield backend
    finally:
        await backend.client.aclose()


async def test_identical_concurrent_requests_share_one_call(server: Server, probe: Probe) -> None:
    results = await asyncio.gather(*(probe.get("/slow", key="same") for _ in range(20)))

    assert server.hits["slow"] == 1 and probe.backend_calls == 1
    assert all(r.ok and r.data == {"name": "slow", "hit": 1} for r in results)
    assert sum(r.cached for r in results) == 19


async def test_a_result_is_served_from_cache_within_its_ttl(server: Server, probe: Probe) -> None:
    first = await probe.get("/fresh", key="fresh")
    second = await probe.get("/fresh", key="fresh")
    assert not first.cached and second.cached and second.data == first.data
    assert server.hits["fresh"] == 1

    await asyncio.sleep(0.6)
    third = await probe.get("/fresh", key="fresh")
    assert not third.cached and third.data == {"name": "fresh", "hit": 2}


async def test_a_503_is_retried(server: Server, probe: Probe) -> None:
    result = await probe.get("/flaky")

    assert result.ok and result.data == {"name": "flaky", "hit": 2}
    assert server.hits["flaky"] == 2


async def test_a_400_is_not_retried(server: Server, probe: Probe) -> None:
    result = await probe.get("/bad")

    assert result.error is not None and result.error.code is ErrorCode.BAD_QUERY
    assert "no such label" in result.error.message
    assert server.hits["bad"] == 1


async def test_retry_after_of_a_429_is_honoured(server: Server, probe: Probe) -> None:
    started = time.monotonic()
    result = await probe.get("/limited")

    assert result.ok and server.hits["limited"] == 2
    assert time.monotonic() - started >= 1.0  # the backoff alone would have waited 0.01 s


async def test_errors_are_not_cached(server: Server, probe: Probe) -> None:
    probe.attempts = 1
    first = await probe.get("/down", key="down")
    second = await probe.get("/down", key="down")

    assert first.error is not None and first.error.code is ErrorCode.BACKEND_ERROR
    assert second.error is not None and not second.cached
    assert server.hits["down"] == 2

    shared = await asyncio.gather(*(probe.get("/down", key="down") for _ in range(5)))
    assert all(r.error is not None and r.error.code is ErrorCode.BACKEND_ERROR for r in shared)
    assert server.hits["down"] == 3  # concurrent callers share the failing call, then nothing is kept


async def test_one_waiters_timeout_does_not_cancel_the_shared_call_for_the_others(server: Server, probe: Probe) -> None:
    async def impatient() -> ToolResult[dict[str, Any]]:
        async with asyncio.timeout(0.02):  # its own request deadline ends long before the backend answers
            return await probe.get("/slow", key="slow")

    first = asyncio.create_task(impatient())
    await asyncio.sleep(0)  # the impatient caller starts the shared call
    patient = [asyncio.create_task(probe.get("/slow", key="slow")) for _ in range(3)]

    with pytest.raises(TimeoutError):
        await first
    results = await asyncio.gather(*patient)

    assert all(r.ok and r.data == {"name": "slow", "hit": 1} for r in results)
    assert server.hits["slow"] == 1
