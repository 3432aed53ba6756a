"""Graceful shutdown and crash recovery of `srebot serve` (DESIGN 3.1, 6), on real processes.

Each test runs `srebot serve` as a subprocess on a PostgreSQL database, wired to a SlackFake and to
a Loki fake that holds every query until the test releases it: "logs checkout" is then a request
that stays in flight for exactly as long as the test wants. Then:

- SIGTERM with a drain longer than the remaining work: the request finishes, its answer is posted
  in its thread, and only then does the process exit 0; meanwhile no new connection is accepted;
- SIGTERM with SREBOT_DRAIN_SECONDS=1 and the backend held: the turn ends `interrupted`, the thread
  is told "I'm restarting and could not finish …; ask again", the process exits 0 within the drain
  and a few seconds;
- SIGKILL during a request, then a new process on the same database: the new one reports the cut-off
  turn in its thread ("I was restarted while working on …; ask again");
- nothing is lost: every accepted request ends completed, failed, cancelled or interrupted in the
  turns table, and its thread was told;
- a replica that drains keeps its heartbeat, so the other replica does not take its turns;
- an approved action being written when SIGTERM comes completes and is reported (the platforms
  finish what they took before the runtime's toolbox and database close).

Every wait is on an event (a Slack call, a backend request, a log line, a database row), with
generous limits for a loaded machine; nothing sleeps for correctness.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import text

from sessions.store import FINAL_TURN, ConversationKey, Store, TurnRecord
from tests.conftest import _create_pg_database, _drop_pg_database
from tests.fakes.kube import KubeFake, load_shop_scenario
from tests.fakes.loki import FakeLoki
from tests.fakes.serve import (
    ServeProcess,
    answers,
    eventually,
    thread_messages,
    wait_for_thread,
)
from tests.fakes.slack import SlackFake

pytestmark = pytest.mark.integration  # starts srebot in child processes

CONFIG = """
[defaults]
namespace = "shop"

[services.checkout]
namespace = "shop"

[services.catalog]
namespace = "shop"
"""

RESTARTING = "I'm restarting and could not finish"
RESTARTED = "I was restarted while working on"
STOPPING = "stopping: no new work"


class HeldLoki(FakeLoki):
    """The Loki fake, holding every query until `release()`: a backend exactly as slow as a test wants.
    `wait_for_queries(n)` returns once n queries have arrived (so the requests are in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.arrived = 0
        self._changed = asyncio.Condition()

    async def _query_range(self, request: web.Request) -> web.Response:
        async with self._changed:
            self.arrived += 1
            self._changed.notify_all()
        await self.gate.wait()
        return await super()._query_range(request)

    def release(self) -> None:
        self.gate.set()

    async def wait_for_queries(self, count: int, timeout: float = 30.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: self.arrived >= count)
        except TimeoutError:
            raise AssertionError(f"{count} Loki queries expected within {timeout:g} s, {self.arrived} came") from None

    async def close(self) -> None:
        self.release()  # answer whatever is still held, so the server closes at once
        await super().close()


@dataclass
class HeldKube(KubeFake):
    """The Kubernetes fake, holding every PATCH (a write in flight) until `release()`."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    writes: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "PATCH":
            async with self.changed:
                self.writes += 1
                self.changed.notify_all()
            await self.gate.wait()
        return await super()._middleware(request, handler)

    def release(self) -> None:
        self.gate.set()

    async def wait_for_write(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            async with self.changed:
                await self.changed.wait_for(lambda: self.writes >= 1)

    async def stop(self) -> None:
        self.release()
        await super().stop()


@dataclass
class World:
    slack: SlackFake
    loki: HeldLoki
    store: Store
    env: dict[str, str]
    workdir: Path

    def bot(self, name: str = "srebot", **env: str) -> ServeProcess:
        return ServeProcess({**self.env, **env}, cwd=self.workdir, name=name)

    async def mention(self, bot: ServeProcess, text: str, channel: str) -> str:
        """An @mention delivered to `bot`; returns its thread ts."""
        event = self.slack.app_mention(f"<@UBOT> {text}", channel=channel)
        status, _ = await self.slack.deliver(bot.events_url, self.slack.event_body(event))
        assert status == 200
        return event["ts"]

    async def reply(self, bot: ServeProcess, text: str, channel: str, thread_ts: str) -> None:
        """A message in a thread, without a mention (a follow-up)."""
        event = self.slack.message(text, channel=channel, thread_ts=thread_ts)
        status, _ = await self.slack.deliver(bot.events_url, self.slack.event_body(event))
        assert status == 200

    async def turns(self, channel: str, thread_ts: str) -> list[TurnRecord]:
        session_id = await self.store.find_session_id(ConversationKey("slack", self.slack.team_id, channel, thread_ts))
        return await self.store.recent_turns(session_id, limit=100) if session_id else []

    async def all_turns(self) -> list[tuple[str, str, str, str]]:
        """(channel, thread, text, status) of every turn in the database."""
        async with self.store.engine.connect() as conn:
            rows = await conn.execute(text(
                "SELECT c.channel, c.thread, t.text, t.status FROM turns t JOIN conversations c ON c.id = t.session_id"
                " ORDER BY t.id"
            ))
            return [tuple(row) for row in rows]  # type: ignore[misc]

    async def instance_of(self, channel: str, thread_ts: str) -> str:
        (turn,) = await self.turns(channel, thread_ts)
        async with self.store.engine.connect() as conn:
            result = await conn.execute(text("SELECT instance_id FROM turns WHERE id = :id"), {"id": turn.id})
            return result.scalar_one()

    async def heartbeat_of(self, instance_id: str) -> datetime | None:
        async with self.store.engine.connect() as conn:
            result = await conn.execute(text("SELECT heartbeat_at FROM instances WHERE id = :id"), {"id": instance_id})
            return result.scalar_one_or_none()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    (tmp_path / "srebot.toml").write_text(CONFIG)
    url = await _create_pg_database()
    store = Store(url)
    loki = HeldLoki()
    now = datetime.now(UTC)
    loki.add(
        {"namespace": "shop", "app": "checkout", "pod": "checkout-7c9f8d6b5d-x2k9p"},
        [(now - timedelta(seconds=20 * i), f"ERROR panic: nil pointer dereference in cart.Total (#{i})")
         for i in range(1, 12)],
    )
    await loki.start()
    try:
        async with SlackFake() as slack:
            env = {
                "DATABASE_URL": url,
                "SREBOT_CONFIG": str(tmp_path / "srebot.toml"),
                "SLACK_BOT_TOKEN": slack.bot_token,
                "SLACK_SIGNING_SECRET": slack.signing_secret,
                "SLACK_API_URL": slack.api_url,
                "LOKI_URL": loki.url,
                "SREBOT_KUBERNETES": "off",
                "SREBOT_COST": "off",
                "SREBOT_TOOL_TIMEOUT": "60",  # the held backend is slow, not broken
                "SREBOT_REQUEST_TIMEOUT": "300",
                "SREBOT_HEARTBEAT_SECONDS": "0.5",
                "SREBOT_INSTANCE_STALE_SECONDS": "3",
            }
            yield World(slack, loki, store, env, tmp_path)
    finally:
        await loki.close()
        await store.close()
        await _drop_pg_database(url)


async def _refused(url: str) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http, http.get(url) as response:
            return response.status >= 500
    except aiohttp.ClientConnectionError:
        return True


async def test_sigterm_waits_for_the_running_request_and_exits_0(world: World) -> None:
    channel = "C0DRAIN"
    async with world.bot(SREBOT_DRAIN_SECONDS="60") as bot:
        thread = await world.mention(bot, "logs checkout", channel)
        await world.loki.wait_for_queries(1)  # the request is in flight, held at the backend
        await wait_for_thread(world.slack, channel, thread, lambda ms: len(ms) == 1)  # the placeholder

        bot.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        await bot.wait_for_log(STOPPING)
        assert await _refused(f"{bot.url}/healthz"), "still accepting connections while draining"
        assert bot.returncode is None  # draining: the request is still running
        assert [t.status for t in await world.turns(channel, thread)] == ["running"]

        world.loki.release()  # the backend answers; the answer must make it out before the exit
        assert await bot.wait_exit(60) == 0, bot.log()

    (message,) = thread_messages(world.slack, channel, thread)
    assert not message.placeholder, message.text  # the placeholder was replaced by the answer
    assert "nil pointer dereference" in message.text and "checkout" in message.text
    assert RESTARTING not in world.slack.texts() and RESTARTED not in world.slack.texts()
    assert message.updates[-1].at < bot.exited_at  # type: ignore[operator]
    (turn,) = await world.turns(channel, thread)
    assert (turn.status, turn.intent, turn.service) == ("completed", "logs", "checkout")
    assert '"drain deadline reached"' not in bot.log()


async def test_drain_deadline_interrupts_the_request_and_tells_its_thread(world: World) -> None:
    channel = "C0DEADLINE"
    async with world.bot(SREBOT_DRAIN_SECONDS="1") as bot:
        thread = await world.mention(bot, "logs checkout", channel)
        await world.loki.wait_for_queries(1)
        await wait_for_thread(world.slack, channel, thread, lambda ms: len(ms) == 1)

        signalled = time.monotonic()
        bot.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert await bot.wait_exit(30) == 0, bot.log()  # the backend is never released
        took = bot.exited_at - signalled  # type: ignore[operator]
        assert took < 1 + 8, f"exit took {took:.1f} s with a 1 s drain"

    (message,) = thread_messages(world.slack, channel, thread)
    assert not message.placeholder
    assert f"{RESTARTING} “logs checkout”; ask again" in message.text
    (turn,) = await world.turns(channel, thread)
    assert turn.status == "interrupted"
    assert "drain deadline reached" in bot.log()


async def test_a_crashed_request_is_reported_in_its_thread_by_the_next_process(world: World) -> None:
    channel = "C0CRASH"
    async with world.bot(name="crashing") as first:
        thread = await world.mention(first, "logs checkout", channel)
        await world.loki.wait_for_queries(1)
        assert [t.status for t in await world.turns(channel, thread)] == ["running"]
        assert await first.kill() == -signal.SIGKILL  # no drain, no goodbye

    assert [t.status for t in await world.turns(channel, thread)] == ["running"]  # as the crash left it
    async with world.bot(name="restarted") as second:
        # the notice replaces the placeholder: nothing in the thread still says it is working on it
        (message,) = await wait_for_thread(world.slack, channel, thread,
                                           lambda ms: len(ms) == 1 and RESTARTED in ms[0].text)
        assert not message.placeholder
        assert f"{RESTARTED} “logs checkout”; ask again" in message.text
        (turn,) = await world.turns(channel, thread)
        assert turn.status == "interrupted"
        assert turn.request_id in message.text
        assert await second.stop() == 0, second.log()
    # told once, by the one process that claimed the turn
    told = [c for c in world.slack.calls if c.method.startswith("chat.") and RESTARTED in c.text_blob()]
    assert len(told) == 1


async def test_a_crashed_teams_request_gets_its_placeholder_replaced_by_the_next_process(world: World) -> None:
    from tests.fakes.bot_connector import BotConnectorFake, channel_message

    async with BotConnectorFake() as connector:
        # Teams on the loopback Bot Connector (local mode: no Entra ID to get the bot's own token from)
        teams = {"SREBOT_TEAMS": "true", "SREBOT_TEAMS_INSECURE": "local", "SREBOT_TEAMS_SERVICE_URLS": connector.url}
        async with world.bot(name="crashing", **teams) as first:
            async with aiohttp.ClientSession() as http:
                activity = channel_message(connector.url, "logs checkout")
                async with http.post(f"{first.url}/api/messages", json=activity) as response:
                    assert response.status in (200, 201, 202)
            await world.loki.wait_for_queries(1)
            # the acknowledgement, a reply in the request's turn, is the placeholder
            placeholder = await connector.wait_for(lambda call: call.kind == "reply", timeout=30)
            assert placeholder.response_id and "checkout" in placeholder.text
            assert await first.kill() == -signal.SIGKILL  # mid-investigation: no drain, no goodbye

        async with world.bot(name="restarted", **teams) as second:
            update = await connector.wait_for(lambda call: call.kind == "update", timeout=30)
            assert update.activity_id == placeholder.response_id  # the placeholder itself now tells it
            assert f"{RESTARTED} “logs checkout”; ask again" in update.text
            assert await second.stop() == 0, second.log()
        told = [call for call in connector.calls if RESTARTED in call.text]
        assert told == [update], [(c.kind, c.text[:80]) for c in connector.calls]


async def test_nothing_accepted_is_lost_on_shutdown(world: World) -> None:
    """Requests in every state when SIGTERM comes (drain 1 s): answered, cancelled, running, queued
    behind another in its thread. Each ends final in the database and its thread was told."""
    async with world.bot(SREBOT_DRAIN_SECONDS="1") as bot:
        done = await world.mention(bot, "help", "C0HELP")
        await wait_for_thread(world.slack, "C0HELP", done, lambda ms: len(answers(ms)) == 1)

        running = await world.mention(bot, "logs checkout", "C0BUSY")
        cancelled = await world.mention(bot, "logs catalog", "C0CANCEL")
        await world.loki.wait_for_queries(2)  # both held at the backend
        await world.reply(bot, "and again, logs checkout", "C0BUSY", running)  # waits behind the first
        await wait_for_thread(world.slack, "C0BUSY", running, lambda ms: len(ms) == 2)  # its placeholder
        await world.reply(bot, "cancel", "C0CANCEL", cancelled)
        await wait_for_thread(world.slack, "C0CANCEL", cancelled,
                              lambda ms: any("Cancelled “logs catalog”" in m.text for m in ms))

        bot.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert await bot.wait_exit(30) == 0, bot.log()

    turns = await world.all_turns()
    assert all(status in FINAL_TURN for *_, status in turns), turns
    assert sorted((channel, words, status) for channel, _, words, status in turns) == [
        ("C0BUSY", "and again, logs checkout", "interrupted"),
        ("C0BUSY", "logs checkout", "interrupted"),
        ("C0CANCEL", "logs catalog", "cancelled"),
        ("C0HELP", "help", "completed"),
    ]
    # every thread was told how its request ended; no placeholder is left "Looking into …"
    busy = thread_messages(world.slack, "C0BUSY", running)
    assert [m.placeholder for m in busy] == [False, False]
    assert f"{RESTARTING} “logs checkout”" in busy[0].text
    assert f"{RESTARTING} “and again, logs checkout”" in busy[1].text
    cancel = thread_messages(world.slack, "C0CANCEL", cancelled)
    assert not any(m.placeholder for m in cancel)
    assert any("Cancelled “logs catalog”" in m.text for m in cancel)
    (helped,) = thread_messages(world.slack, "C0HELP", done)
    assert "I'm srebot" in helped.text


async def test_a_draining_replica_keeps_its_turns(world: World) -> None:
    """While A drains a request longer than the stale limit, B (same database) must not take A for
    dead: A keeps beating until it is done, and the thread gets the answer, not a restart notice."""
    channel = "C0HANDOVER"
    async with world.bot(name="a", SREBOT_DRAIN_SECONDS="60") as a, world.bot(name="b") as b:
        thread = await world.mention(a, "logs checkout", channel)
        await world.loki.wait_for_queries(1)
        instance = await world.instance_of(channel, thread)

        a.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        await a.wait_for_log(STOPPING)
        # past the stale limit (3 s) of draining, A's heartbeat is still fresh ...
        stale_limit = datetime.now(UTC) + timedelta(seconds=3.5)

        async def beat_after_limit() -> bool:
            beat = await world.heartbeat_of(instance)
            assert beat is not None, "A's instance row is gone while it drains: B took A for dead"
            return beat > stale_limit

        await eventually(beat_after_limit, timeout=30, what="A heartbeats while draining")
        # ... so B, which looks for dead replicas every 0.5 s, left the turn alone
        assert [t.status for t in await world.turns(channel, thread)] == ["running"]

        world.loki.release()
        assert await a.wait_exit(60) == 0, a.log()
        assert await world.heartbeat_of(instance) is None  # retired on the way out
        assert b.returncode is None
        assert await b.stop() == 0, b.log()

    (turn,) = await world.turns(channel, thread)
    assert turn.status == "completed"
    assert RESTARTED not in world.slack.texts() and RESTARTING not in world.slack.texts()
    (message,) = thread_messages(world.slack, channel, thread)
    assert "nil pointer dereference" in message.text


async def test_an_approved_action_in_flight_finishes_before_the_exit(world: World) -> None:
    """SIGTERM while an approved restart is being written to Kubernetes: the write completes, the
    approval ends `executed` (not failed, not stuck in `approved`) and the thread hears the outcome."""
    channel = "C0ACTION"
    async with HeldKube() as kube:
        load_shop_scenario(kube)
        env = {"KUBECONFIG": kube.kubeconfig_path, "SREBOT_KUBE_CONTEXT": kube.context, "SREBOT_KUBERNETES": "auto",
               "SREBOT_APPROVERS": "U0BOB", "SREBOT_DRAIN_SECONDS": "60"}
        async with world.bot(**env) as bot:
            status, _ = await world.slack.deliver(bot.events_url, world.slack.slash_command("restart checkout",
                                                                                           channel=channel))
            assert status == 200
            request = await world.slack.wait_for(
                "chat.postMessage", lambda c: c.args.get("channel") == channel and "approval_approve" in str(c.args),
                timeout=30,
            )
            thread = request.args["thread_ts"]
            approval_id = next(e["value"] for b in request.args["blocks"] for e in b.get("elements") or []
                               if isinstance(e, dict) and e.get("action_id") == "approval_approve")
            click = world.slack.block_actions("approval_approve", approval_id, user="U0BOB", channel=channel,
                                              message_ts=request.response["ts"], thread_ts=thread)
            status, _ = await world.slack.deliver(bot.events_url, click)
            assert status == 200
            await kube.wait_for_write()  # approved, and the PATCH is on its way

            bot.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            await bot.wait_for_log(STOPPING)
            await asyncio.sleep(1.0)  # the apiserver is slow: the write outlasts the first steps of the shutdown
            kube.release()
            assert await bot.wait_exit(60) == 0, bot.log()

        approval = await world.store.get_approval(approval_id)
        assert approval is not None and approval.status == "executed", (approval, bot.log())
        assert len(kube.patches) == 1
        outcome = world.slack.calls_to("chat.postMessage",
                                       lambda c: c.args.get("thread_ts") == thread and "approved by" in c.text_blob())
        assert len(outcome) == 1 and "done (approved by" in outcome[0].text_blob()


def test_the_stale_limit_must_exceed_the_heartbeat() -> None:
    """SREBOT_INSTANCE_STALE_SECONDS shorter than a beat would make live replicas take each other for dead."""
    from bot.config import ConfigError, load_settings

    settings = load_settings(env={"SREBOT_HEARTBEAT_SECONDS": "0.5", "SREBOT_INSTANCE_STALE_SECONDS": "3"})
    assert (settings.heartbeat_seconds, settings.instance_stale_seconds) == (0.5, 3.0)
    defaults = load_settings(env={})
    assert (defaults.heartbeat_seconds, defaults.instance_stale_seconds) == (10.0, 30.0)
    with pytest.raises(ConfigError, match="SREBOT_INSTANCE_STALE_SECONDS"):
        load_settings(env={"SREBOT_HEARTBEAT_SECONDS": "10", "SREBOT_INSTANCE_STALE_SECONDS": "5"})


async def test_a_request_that_cannot_start_still_ends_final(db_file: str) -> None:
    """A request that fails before it runs (here: the acknowledgement raises) is answered, and leaves no
    turn `queued` for the next restart to report as "interrupted"."""
    from bot.dispatcher import Dispatcher
    from bot.ports import Request
    from tests.helpers import RecordingPort, ScriptedEngine

    class BrokenAcknowledgement(ScriptedEngine):
        def acknowledgement(self, text: str) -> str:
            raise RuntimeError("no placeholder text")

    store = Store(db_file)
    await store.upgrade()
    dispatcher = Dispatcher(store, BrokenAcknowledgement())
    await dispatcher.start()
    try:
        port = RecordingPort()
        request = Request(key=ConversationKey("cli", "local", "terminal", "t1"), user="alice", text="logs checkout",
                          port=port)
        dispatcher.submit(request)
        await port.wait()
        await dispatcher.wait_idle()
        assert "could not start on this" in port.answers[0].summary
        assert await store.active_turns() == []
    finally:
        await dispatcher.shutdown()
        await store.close()
