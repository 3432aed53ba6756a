"""The Slack side of the test suite: the loopback Slack of devtools.loopback.slack (re-exported) and the bot harness.

`SlackFake` (the fake Web API, Socket Mode and payload builders), `Call`, `Upload`, `sign` and
`signed_headers` live in `devtools.loopback.slack`, `serve` in `devtools.loopback.serving` (the `srebot bench`
command ships them); they are re-exported here so tests import everything Slack from one place:

    async with SlackFake() as slack, SlackBot(slack, database_url) as bot:
        status, _ = await bot.event(slack.app_mention("<@UBOT> diagnose checkout"))
        call = await slack.wait_for("chat.postMessage", in_thread(ts))

The bot side: `SlackBot(fake, database_url, engine=..., env=...)` runs the real srebot web app
(`bot.web.build_app` on a `Runtime`) on 127.0.0.1 wired to the fake, with `event`, `command`,
`click` to send it signed payloads and `idle()` to wait until everything taken is answered; several
SlackBots on one database act as replicas (give one tests.helpers.ScriptedEngine to script its answers).
Fixtures `slack`, `db_file`, `bot` are registered by tests/conftest.py. Assertion helpers: `in_thread(ts)` is a ready `wait_for` predicate;
`metric(name, **labels)` and `dropped(reason)` read the process's Prometheus counters.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from devtools.loopback.serving import serve
from devtools.loopback.slack import Call, SlackFake, Upload, _Service, sign, signed_headers

__all__ = [
    "Call", "SlackBot", "SlackFake", "Upload", "bot_fixture", "db_file_fixture", "dropped",
    "in_thread", "metric", "serve", "sign", "signed_headers", "slack_fixture",
]

class SlackBot(_Service):
    """The real srebot web app (`bot.web.build_app` on a `Runtime`) served on 127.0.0.1 and wired to a
    `SlackFake`: Slack events, commands and clicks go in through `deliver`, exactly as Slack sends them.

        async with SlackFake() as slack, SlackBot(slack, database_url) as bot:
            status, _ = await bot.event(slack.app_mention("<@UBOT> diagnose checkout"))
            await bot.idle()

    `engine` is given to the runtime instead of the diagnostic engine; `env` adds or overrides settings
    (e.g. SREBOT_APPROVERS). Several bots on one database act as replicas.
    """

    def __init__(self, fake: SlackFake, database_url: str, *, engine: Any = None, env: dict[str, str] | None = None):
        self.fake = fake
        self.database_url = database_url
        self.engine = engine
        self.env = env or {}
        self.url = ""
        self.runtime: Any = None
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> SlackBot:
        from bot.app import Runtime
        from bot.config import load_settings
        from bot.web import build_app

        settings = load_settings(env={
            "DATABASE_URL": self.database_url,
            "SLACK_BOT_TOKEN": self.fake.bot_token,
            "SLACK_SIGNING_SECRET": self.fake.signing_secret,
            "SLACK_API_URL": self.fake.api_url,
            "SREBOT_TEAMS": "false",
            **self.env,
        })
        self.runtime = Runtime(settings, engine=self.engine)
        self.app = build_app(self.runtime)
        self._runner, self.url = await serve(self.app)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def slack(self) -> Any:
        """The app's `integrations.slack.SlackIntegration`."""
        from integrations.slack import SLACK

        assert self.app is not None
        return self.app[SLACK]

    async def send(self, body: str, **kwargs: Any) -> tuple[int, str]:
        """POST a signed body to /slack/events (kwargs as `SlackFake.deliver`)."""
        return await self.fake.deliver(f"{self.url}/slack/events", body, **kwargs)

    async def event(self, event: dict[str, Any], *, event_id: str | None = None, **kwargs: Any) -> tuple[int, str]:
        return await self.send(self.fake.event_body(event, event_id=event_id), **kwargs)

    async def command(self, text: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        """/sre TEXT; returns the status and the immediate (ephemeral) JSON response."""
        status, body = await self.send(self.fake.slash_command(text, **kwargs))
        return status, (json.loads(body) if body.startswith("{") else {"text": body})

    async def click(self, action_id: str, value: str, **kwargs: Any) -> tuple[int, str]:
        return await self.send(self.fake.block_actions(action_id, value, **kwargs))

    async def idle(self) -> None:
        """Until every acknowledged event is taken and every request answered."""
        await self.slack.intake.idle()
        await self.runtime.dispatcher.wait_idle()
        await self.slack.intake.idle()


# --- pytest fixtures `slack`, `db_file`, `bot` (registered by tests/conftest.py) ---
@pytest.fixture(name="slack")
async def slack_fixture() -> AsyncIterator[SlackFake]:
    """A running SlackFake."""
    async with SlackFake() as fake:
        yield fake


@pytest.fixture(name="db_file")
def db_file_fixture(sqlite_url: Callable[..., str]) -> str:
    """A SQLite database URL in the test's temporary directory, already migrated (srebot still checks)."""
    return sqlite_url()


@pytest.fixture(name="bot")
async def bot_fixture(slack: SlackFake, db_file: str) -> AsyncIterator[SlackBot]:
    """srebot with the default engine, wired to `slack`."""
    async with SlackBot(slack, db_file) as running:
        yield running


# --- assertion helpers ----------------------------------------------------------------------------
def in_thread(ts: str) -> Callable[[Call], bool]:
    """A `wait_for` predicate: the call posts into (or updates in) the thread `ts`."""
    return lambda call: call.args.get("thread_ts") == ts


def metric(name: str, **labels: str) -> float:
    """A sample of the process's Prometheus registry (0 when absent)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def dropped(reason: str) -> float:
    """srebot_events_dropped_total for Slack and `reason` (retry, duplicate, ignored)."""
    return metric("srebot_events_dropped_total", platform="slack", reason=reason)
