"""The server side of `srebot bench`: what `srebot serve` runs, given a bench engine instead of the diagnostic one.

`srebot bench` starts `python -m devtools.bench_server serve --host 127.0.0.1 --port P` as a child process.
That is `bot.web.serve` — migrations, Slack, Teams, dispatcher, signals, drain — on a `bot.app.Runtime`
given a `BenchEngine`, as the test suite's SlackBot gives it a scripted one. The bench engine answers every "<token> <anything>" after sleeping
SREBOT_BENCH_ENGINE_SECONDS, so the server's figures (ack latency, first reply, sustained throughput, RSS)
measure the platforms, the dispatcher and the database, not the engine. The diagnose figures (fan-out and
backend calls) run the real diagnostic engine instead: `devtools.bench.RealDiagnoses`, in the bench's process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys

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


def main(argv: list[str] | None = None) -> int:
    from bot.app import Runtime
    from bot.config import ConfigError, load_settings
    from bot.logging_setup import setup_logging
    from bot.web import serve

    parser = argparse.ArgumentParser(prog="python -m devtools.bench_server")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"bench server: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_format or "json", settings.log_level)
    engine = BenchEngine(float(os.environ.get(ENGINE_SECONDS_ENV, "2")))
    asyncio.run(serve(Runtime(settings, engine=engine), args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
