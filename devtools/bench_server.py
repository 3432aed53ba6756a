"""The server side of `srebot bench`: `srebot serve` itself, with the runtime's engine swapped for a bench engine.

`srebot bench` starts `python -m devtools.bench_server serve --host 127.0.0.1 --port P` as a child process.
That is `bot.cli.main(["serve", ...])` — migrations, Slack, Teams, dispatcher, signals, drain — with one
change: `bot.app.Runtime` builds a `BenchEngine` instead of the diagnostic engine, as the test suite's
SlackBot does. The bench engine answers every "<token> <anything>" after sleeping
SREBOT_BENCH_ENGINE_SECONDS, so the server's figures (ack latency, first reply, sustained throughput, RSS)
measure the platforms, the dispatcher and the database, not the engine. The diagnose figures (fan-out and
backend calls) run the real diagnostic engine instead: `devtools.bench.RealDiagnoses`, in the bench's process.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from typing import Any

from bot.answer import Answer
from bot.engine.base import Engine
from bot.ports import Progress, Request
from sessions.store import Conversation

ENGINE_SECONDS_ENV = "SREBOT_BENCH_ENGINE_SECONDS"
ANSWER = "Bench answer for {token}."
ANSWER_PATTERN = re.compile(r"Bench answer for ([A-Za-z0-9_-]+)\.")


class BenchEngine(Engine):
    """Requests are "<token> <anything>": each is answered after `seconds`, and every answer says
    "Bench answer for <token>." so the bench can count what was answered."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def acknowledgement(self, text: str) -> str:
        return "Looking into it…"

    async def handle(self, request: Request, session: Conversation, progress: Progress) -> Answer:
        token = (request.text.split() or ["-"])[0]
        await asyncio.sleep(self.seconds)
        return Answer(intent="chat", summary=ANSWER.format(token=token), session_id=session.id)


def install_bench_engine(seconds: float) -> None:
    """Make `bot.app.Runtime` (what `srebot serve` builds) run on a BenchEngine."""
    import bot.app

    base = bot.app.Runtime

    class BenchRuntime(base):  # type: ignore[misc, valid-type]
        def __init__(self, settings: Any):
            super().__init__(settings)
            self.engine = BenchEngine(seconds)
            self.dispatcher.engine = self.engine

    bot.app.Runtime = BenchRuntime  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    from bot.cli import main as cli_main

    install_bench_engine(float(os.environ.get(ENGINE_SECONDS_ENV, "2")))
    return cli_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
