"""The server side of `srebot bench`: `srebot serve` itself, with the runtime's engine swapped for a bench engine.

`srebot bench` starts `python -m bot.bench_server serve --host 127.0.0.1 --port P` as a child process.
That is `bot.cli.main(["serve", ...])` — migrations, Slack, Teams, dispatcher, signals, drain — with one
change: `bot.app.Runtime` builds a `BenchEngine` instead of the diagnostic engine, as the test suite's
SlackBot does. The bench engine answers "<token> diagnose <service>" with the five reads of a diagnosis,
each a `tools.base.Backend.run` (timeout, retries, TTL cache, single-flight) against one of the bench's
slow loopback backends, run together by the engine's own `bot.engine.calls.Calls`; anything else it
answers after sleeping SREBOT_BENCH_ENGINE_SECONDS.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from typing import Any

from bot.answer import Answer, ToolStatus
from bot.engine.base import Engine
from bot.engine.calls import Calls
from bot.ports import Progress, Request
from sessions.store import Conversation
from tools.base import HttpBackend, ToolResult

ENGINE_SECONDS_ENV = "SREBOT_BENCH_ENGINE_SECONDS"
BACKENDS_ENV = "SREBOT_BENCH_BACKENDS"  # comma-separated base URLs, one per DIAGNOSE_READS entry

# The five reads of a diagnosis (DESIGN 4: golden signals, deployment state, error-log patterns,
# control-plane incidents and audit log), each one backend operation.
DIAGNOSE_READS = (
    ("metrics", "golden_signals"),
    ("kubernetes", "deployment_status"),
    ("logs", "error_patterns"),
    ("control_plane", "open_incidents"),
    ("control_plane", "audit_logs"),
)
ANSWER = "Bench answer for {token}."
ANSWER_PATTERN = re.compile(r"Bench answer for ([A-Za-z0-9_-]+)\.")
_DIAGNOSE = re.compile(r"^(\S+)\s+diagnose\s+(\S+)", re.IGNORECASE)


class BenchBackend(HttpBackend):
    """One read operation of one backend: a GET to a loopback server, run through `Backend.run`."""

    def __init__(self, name: str, op: str, url: str):
        super().__init__(url)
        self.name = name
        self.op = op
        self.label = f"{name}.{op}"

    async def read(self, service: str, window: str) -> ToolResult[Any]:
        async def fetch() -> Any:
            return await self._get_json(f"/{self.op}", {"service": service, "window": window})

        return await self.run(self.op, fetch, key=(service, window))


def bench_backends(urls: list[str]) -> list[BenchBackend]:
    """The five diagnose reads, the i-th against `urls[i]`."""
    return [BenchBackend(name, op, url) for (name, op), url in zip(DIAGNOSE_READS, urls, strict=True)]


async def _no_progress(_: str) -> None:
    return None


async def fan_out(backends: list[BenchBackend], service: str, window: str, *, parallel: bool = True) -> list[ToolResult[Any]]:
    """The reads of one diagnosis: issued together through the engine's own runner of a playbook's
    calls (`bot.engine.calls.Calls`), or the same reads awaited one by one."""
    if parallel:
        calls = Calls(_no_progress, deadline=30.0)
        results = await calls.run({b.label: b.read(service, window) for b in backends})
        return [results[b.label] for b in backends]
    return [await b.read(service, window) for b in backends]


class BenchEngine(Engine):
    """Requests are "<token> <anything>": a diagnose fans out over the backends, anything else sleeps
    `seconds`; every answer says "Bench answer for <token>." so the bench can count what was answered."""

    def __init__(self, seconds: float, backends: list[BenchBackend], window: str = "15m"):
        self.seconds = seconds
        self.backends = backends
        self.window = window

    def acknowledgement(self, text: str) -> str:
        match = _DIAGNOSE.match(text)
        return f"Looking into {match.group(2)}…" if match else "Looking into it…"

    async def handle(self, request: Request, session: Conversation, progress: Progress) -> Answer:
        token = (request.text.split() or ["-"])[0]
        match = _DIAGNOSE.match(request.text)
        if match and self.backends:
            service = match.group(2)
            results = await fan_out(self.backends, service, self.window)
            tools = [ToolStatus(name=r.tool, ok=r.ok, ms=round(r.ms, 1), error=r.error_text) for r in results]
            return Answer(intent="diagnose", service=service, summary=ANSWER.format(token=token), tools=tools,
                          session_id=session.id)
        await asyncio.sleep(self.seconds)
        return Answer(intent="chat", summary=ANSWER.format(token=token), session_id=session.id)

    async def aclose(self) -> None:
        await asyncio.gather(*(b.aclose() for b in self.backends), return_exceptions=True)


def install_bench_engine(seconds: float, urls: list[str]) -> None:
    """Make `bot.app.Runtime` (what `srebot serve` builds) run on a BenchEngine."""
    import bot.app

    base = bot.app.Runtime

    class BenchRuntime(base):  # type: ignore[misc, valid-type]
        def __init__(self, settings: Any):
            super().__init__(settings)
            self.engine = BenchEngine(seconds, bench_backends(urls) if urls else [])
            self.dispatcher.engine = self.engine

        async def stop(self) -> None:
            await super().stop()
            await self.engine.aclose()

    bot.app.Runtime = BenchRuntime  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    from bot.cli import main as cli_main

    spec = os.environ.get(BACKENDS_ENV, "")
    urls = [url for url in spec.split(",") if url]
    install_bench_engine(float(os.environ.get(ENGINE_SECONDS_ENV, "2")), urls)
    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
