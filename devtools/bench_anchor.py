"""The anchor of `srebot bench`: the smallest Bolt `AsyncApp` that posts a placeholder, as Bolt's docs write one.

`srebot bench` runs `python -m devtools.bench_anchor --port P` beside `srebot serve`, against the same
loopback Slack, and sends both the same signed mentions in alternated rounds: whatever this app takes is
Bolt's own cost (signature check, parsing, middleware, the listener's task, the Web API client) on this
machine at this moment, the floor srebot's Slack figures are divided by. Its listener does what a person
sees srebot do and nothing else: the placeholder in the thread at once, then, after the bench engine's
time (SREBOT_BENCH_ENGINE_SECONDS, as srebot's), the answer in its place — so the bench counts its events
answered exactly as srebot's. No database, no dedupe, no admission control, no per-thread order.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from devtools.bench_server import ANSWER, ENGINE_SECONDS_ENV


def anchor_app(token: str, signing_secret: str, api_url: str, seconds: float) -> AsyncApp:
    """Bolt's defaults throughout (acks before the listener runs, auth.test on the first request)."""
    app = AsyncApp(token=token, signing_secret=signing_secret, client=AsyncWebClient(token=token, base_url=api_url))

    @app.event("app_mention")
    async def mention(event: dict[str, Any], client: AsyncWebClient) -> None:
        placeholder = await client.chat_postMessage(channel=event["channel"], thread_ts=event["ts"],
                                                    text="Looking into it…")
        await asyncio.sleep(seconds)
        words = event.get("text", "").split()  # "<@UBOT> <token> <anything>", as the bench sends
        await client.chat_update(channel=event["channel"], ts=placeholder["ts"],
                                 text=ANSWER.format(token=words[1] if len(words) > 1 else "-"))

    return app


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench_anchor")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    app = anchor_app(os.environ["SLACK_BOT_TOKEN"], os.environ["SLACK_SIGNING_SECRET"], os.environ["SLACK_API_URL"],
                     float(os.environ.get(ENGINE_SECONDS_ENV, "2")))
    server = app.server(port=args.port, path="/slack/events", host=args.host)  # Bolt's own aiohttp server
    server.web_app.router.add_get("/healthz", healthz)  # what the bench polls before it starts
    web.run_app(server.web_app, host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
