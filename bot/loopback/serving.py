"""Serves an aiohttp app on a free port of 127.0.0.1 for the loopback stand-ins, and their `async with` base."""

from __future__ import annotations

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
