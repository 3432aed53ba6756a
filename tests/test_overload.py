"""Overload and faults without loss (issue 20): every accepted request ends answered or told, on a
tiny pool, with a failing bookkeeping step, a starved replica, a hung or restarted database.

The dispatcher runs on the real stores (the shared PostgreSQL, or a server of the test's own that the
test stops, freezes and restarts); the engine is scripted, so each test takes a few seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import aiohttp
import pytest

from bot.answer import Answer
from bot.dispatcher import Dispatcher
from bot.ports import Request
from sessions.db import PoolSettings
from sessions.store import ACTIVE_TURN, Conversation, ConversationKey, Store, database_deadline
from tests.conftest import pg_database
from tests.fakes.serve import REPO, ServeProcess, answers, wait_for_thread
from tests.fakes.slack import SlackFake
from tests.helpers import RecordingPort, ScriptedEngine
from tests.own_postgres import OwnPostgres

T = TypeVar("T")


def key(thread: str) -> ConversationKey:
    return ConversationKey("cli", "local", "terminal", thread)


def outcome(port: RecordingPort) -> str:
    """What the person saw in the end: answered, told-busy, told-interrupted, told-failed, or silent."""
    posts = [message for kind, message in port.events if kind == "post"]
    if not posts:
        return "silent"
    final = posts[-1]
    text = final if isinstance(final, str) else final.summary
    if isinstance(final, Answer) and final.status == "completed":
        return "answered"
    if "overloaded" in text:
        return "told-busy"
    if "restarting" in text or "restarted" in text:
        return "told-interrupted"
    return "told-failed"


class Notes:
    """A notifier that keeps what it was asked to say, per thread."""

    platform = "cli"

    def __init__(self) -> None:
        self.said: list[tuple[str, str]] = []

    async def say(self, conversation: Conversation, message: Answer | str, **_: Any) -> None:
        self.said.append((conversation.key.thread, message if isinstance(message, str) else message.summary))

    async def approval_changed(self, approval: Any, conversation: Any) -> None:
        return None


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_database() as url:
        yield url


@pytest.fixture
async def own_pg_stopped() -> AsyncIterator[OwnPostgres]:
    """A PostgreSQL server of this test's own, created but not started."""
    server = await asyncio.to_thread(OwnPostgres)
    try:
        yield server
    finally:
        await server.remove()


@pytest.fixture
async def own_pg(own_pg_stopped: OwnPostgres) -> AsyncIterator[OwnPostgres]:
    await own_pg_stopped.start()
    yield own_pg_stopped


async def running(store: Store, count: int, statuses: tuple[str, ...] = ("running",)) -> bool:
    return len([t for t in await store.active_turns() if t.status in statuses]) == count


async def until(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# --- admission --------------------------------------------------------------------------------------
async def test_a_pool_of_two_with_50_concurrent_events_leaves_none_silent(pg_url: str) -> None:
    store = Store(pg_url, pool=PoolSettings(size=2, overflow=0, wait=1.0))
    await store.upgrade()

    async def work(request: Request) -> str:
        await asyncio.sleep(0.05)
        return "ok"

    dispatcher = Dispatcher(store, ScriptedEngine(work), max_concurrency=4, max_queued=20)
    await dispatcher.start()
    try:
        ports = [RecordingPort() for _ in range(50)]
        for index, port in enumerate(ports):
            dispatcher.submit(Request(key(f"t{index}"), "u", f"diagnose svc{index}", port))
        await dispatcher.wait_idle()
        outcomes = [outcome(port) for port in ports]
        # 4 running + 20 waiting were admitted and answered; the other 26 were told at once
        assert outcomes.count("answered") == 24, outcomes
        assert outcomes.count("told-busy") == 26, outcomes
        assert outcomes.count("silent") == 0
        queued = [text for port in ports for kind, text in port.events if kind == "progress" and "in line" in text]
        assert queued, "a request waiting for a slot is told its place in line"
        assert await store.active_turns() == []
    finally:
        await dispatcher.shutdown()
        await store.close()


# --- a worker that cannot die ------------------------------------------------------------------------
async def test_a_failing_final_update_does_not_end_the_threads_queue(sqlite_store: Store) -> None:
    real_update = sqlite_store.update_turn
    failures = []

    async def failing_once(turn_id: int, status: str, **values: Any) -> bool:
        if not failures:
            failures.append(turn_id)
            raise RuntimeError("bookkeeping bug")
        return await real_update(turn_id, status, **values)

    sqlite_store.update_turn = failing_once  # type: ignore[method-assign]
    dispatcher = Dispatcher(sqlite_store, ScriptedEngine())
    await dispatcher.start()
    try:
        first, second = RecordingPort(), RecordingPort()
        dispatcher.submit(Request(key("same"), "u", "logs checkout", first))
        dispatcher.submit(Request(key("same"), "u", "logs catalog", second))
        await dispatcher.wait_idle()
        assert failures
        assert outcome(first) == "answered"  # the answer went out; only its bookkeeping failed (logged)
        assert outcome(second) == "answered"
        assert second.answers[0].summary == "Answer to “logs catalog”."
        # and the first turn is closed all the same, so no restart reports it as cut off
        closed = await sqlite_store.get_turn(first.answers[0].request_id)  # type: ignore[arg-type]
        assert closed is not None and closed.status == "completed"
        assert await sqlite_store.active_turns() == []
    finally:
        await dispatcher.shutdown()


async def test_a_requests_database_steps_share_the_deadline_its_intake_opened(pg_url: str) -> None:
    """A person waits one database deadline, not one per step: what the intake spent (its claim) is gone
    for recording the turn. The thread's later requests are not bound by an earlier one's deadline."""
    store = Store(pg_url)
    await store.upgrade()
    real_record = store.record_turn

    async def slow_record(*args: Any, **values: Any) -> Any:
        await asyncio.sleep(0.6)  # the database is slow to take the turn
        return await real_record(*args, **values)

    store.record_turn = slow_record  # type: ignore[method-assign]
    dispatcher = Dispatcher(store, ScriptedEngine(), db_deadline=30.0)
    await dispatcher.start()
    try:
        first, second = RecordingPort(), RecordingPort()
        with database_deadline(0.5):  # as Core.taking() around an intake, its claim already done
            dispatcher.submit(Request(key("same"), "u", "logs checkout", first))
        dispatcher.submit(Request(key("same"), "u", "logs catalog", second))
        await dispatcher.wait_idle()
        assert outcome(first) == "told-failed"
        assert outcome(second) == "answered"
    finally:
        await dispatcher.shutdown()
        await store.close()


# --- one order per thread across replicas -----------------------------------------------------------
async def test_a_threads_requests_run_in_order_across_replicas(pg_url: str) -> None:
    first_store, second_store = Store(pg_url), Store(pg_url)
    await first_store.upgrade()
    log: list[str] = []

    async def work(request: Request) -> str:
        log.append(f"start {request.text}")
        await asyncio.sleep(1.0 if request.text == "first" else 0)
        log.append(f"end {request.text}")
        return "ok"

    one = Dispatcher(first_store, ScriptedEngine(work))
    two = Dispatcher(second_store, ScriptedEngine(work))
    await one.start()
    await two.start()
    try:
        first, second = RecordingPort(), RecordingPort()
        one.submit(Request(key("shared"), "u", "first", first))
        await until(lambda: running(first_store, 1))
        two.submit(Request(key("shared"), "u", "second", second))  # the same thread, on the other replica
        await first.wait(15)
        await second.wait(15)
        assert log == ["start first", "end first", "start second", "end second"]
        assert ("progress", "Waiting for an earlier request in this thread to finish…") in second.events
        assert outcome(first) == outcome(second) == "answered"
    finally:
        await one.shutdown()
        await two.shutdown()
        await first_store.close()
        await second_store.close()


# --- liveness ------------------------------------------------------------------------------------------
# the replicas' staleness limit (seconds): short for a test, yet well above a beat's worst latency on a
# loaded machine (two CPUs shared by several test suites), or live replicas lose their leases for real
STALE = 5.0


class Replica:
    """A dispatcher with its own event loop in its own thread, like a replica in its own process: its
    loop can be starved without starving the other's."""

    def __init__(self, url: str, name: str, work: Callable[[Request], Awaitable[str]]):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()
        self.notes = Notes()
        self.url = url
        self.work = work

    def call(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def start(self) -> None:
        async def start() -> None:
            self.store = Store(self.url)
            self.dispatcher = Dispatcher(
                self.store, ScriptedEngine(self.work), notifiers={"cli": self.notes},
                heartbeat_seconds=0.5, stale_after=STALE, lease_timeout=2.0,
            )
            await self.dispatcher.start()

        await self.call(start())

    async def submit(self, thread: str, text: str) -> RecordingPort:
        port = RecordingPort()

        async def submit() -> None:
            self.dispatcher.submit(Request(key(thread), "u", text, port))

        await self.call(submit())
        return port

    def starve(self, seconds: float) -> None:
        """Block the event loop (a CPU-bound step, a stuck call) for `seconds`."""
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    async def stop(self) -> None:
        async def stop() -> None:
            await self.dispatcher.shutdown()
            await self.store.close()

        await self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self.thread.join)


async def test_a_starved_replica_takes_over_no_live_turn_and_answers_none_it_lost(pg_url: str) -> None:
    setup = Store(pg_url)
    await setup.upgrade()

    async def work(request: Request) -> str:
        await asyncio.sleep(STALE * 2 if "diagnose" in request.text else 0)
        return f"answer to {request.text}"

    live, starved = Replica(pg_url, "live", work), Replica(pg_url, "starved", work)
    await live.start()
    await starved.start()
    try:
        on_live = await live.submit("on-live", "diagnose checkout")
        on_starved = await starved.submit("on-starved", "diagnose catalog")
        await until(lambda: running(setup, 2))
        starved.starve(STALE * 1.5)  # longer than the staleness limit: its lease really expires

        await on_live.wait(30)
        await asyncio.sleep(STALE)  # the starved replica has woken and finished its work by now

        # the live replica's turn was never taken over: answered once, by its own replica
        assert outcome(on_live) == "answered" and len(on_live.answers) == 1
        assert (await setup.get_turn(on_live.answers[0].request_id)).status == "completed"  # type: ignore[union-attr]
        assert all(thread != "on-live" for thread, _ in live.notes.said + starved.notes.said)
        # the starved replica's turn was taken over once its lease expired, told by the live replica,
        # and the starved one, awake again, did not answer it as well
        assert [thread for thread, _ in live.notes.said] == ["on-starved"]
        assert "I was restarted" in live.notes.said[0][1]
        assert on_starved.answers == []
        # and it works on: a new request there is answered
        later = await starved.submit("later", "logs checkout")
        await later.wait(15)
        assert outcome(later) == "answered"
    finally:
        await live.stop()
        await starved.stop()
        await setup.close()


async def test_a_placeholder_posted_after_its_turn_started_is_kept_for_a_crash_notice(sqlite_store: Store) -> None:
    """The notice of a turn cut off by a crash replaces the placeholder, so where it is must be in the
    turn row, also when the platform posted it only after the turn had started."""
    gate = asyncio.Event()

    async def work(request: Request) -> str:
        await gate.wait()
        return "ok"

    class LatePlaceholder(RecordingPort):
        placeholder_ref: dict[str, str] | None = None

    dispatcher = Dispatcher(sqlite_store, ScriptedEngine(work), heartbeat_seconds=0.1)
    await dispatcher.start()
    try:
        port = LatePlaceholder()
        request_id = dispatcher.submit(Request(key("late"), "u", "logs checkout", port))
        await until(lambda: running(sqlite_store, 1))
        port.placeholder_ref = {"channel": "C1", "ts": "1700000000.000100"}

        async def kept() -> bool:
            turn = await sqlite_store.get_turn(request_id)
            return turn is not None and turn.placeholder == port.placeholder_ref

        await until(kept, 10)
    finally:
        gate.set()
        await dispatcher.shutdown()


# --- the database hung or down ------------------------------------------------------------------------
async def test_shutdown_tells_each_request_waiting_for_a_hung_database(own_pg: OwnPostgres) -> None:
    store = Store(own_pg.url, lease_timeout=0.5)
    await store.upgrade()
    dispatcher = Dispatcher(store, ScriptedEngine(), drain_seconds=0.5, lease_timeout=0.5)
    await dispatcher.start()
    own_pg.freeze()
    try:
        ports = [RecordingPort() for _ in range(5)]
        for index, port in enumerate(ports):
            thread = "shared" if index < 2 else f"t{index}"  # two wait behind each other in one thread
            dispatcher.submit(Request(key(thread), "u", f"logs svc{index}", port))
        await asyncio.sleep(0.3)  # each is waiting on the database now
        async with asyncio.timeout(10):
            await dispatcher.shutdown()  # what SIGTERM runs
        assert [outcome(port) for port in ports] == ["told-interrupted"] * 5
        assert all(len(port.events) and "ask again" in port.answers[-1].summary for port in ports)
    finally:
        own_pg.thaw()
        await store.close()


async def test_a_database_outage_mid_run_tells_in_flight_requests_and_heals(own_pg: OwnPostgres) -> None:
    store = Store(own_pg.url, lease_timeout=0.5)
    await store.upgrade()
    gate = asyncio.Event()

    async def work(request: Request) -> str:
        if "held" in request.text:
            await gate.wait()
        return f"answer to {request.text}"

    dispatcher = Dispatcher(store, ScriptedEngine(work), db_deadline=2.0, heartbeat_seconds=0.2, stale_after=30)
    await dispatcher.start()
    try:
        held = [RecordingPort(), RecordingPort()]
        for index, port in enumerate(held):
            dispatcher.submit(Request(key(f"held{index}"), "u", f"held logs {index}", port))
        await until(lambda: running(store, 2))

        await own_pg.stop()
        gate.set()  # the in-flight requests finish while the database is down
        for port in held:
            await port.wait(15)
        assert [outcome(port) for port in held] == ["answered", "answered"]
        during = RecordingPort()
        dispatcher.submit(Request(key("during"), "u", "logs checkout", during))
        await during.wait(15)
        assert outcome(during) == "told-failed"
        assert "I could not reach my database" in during.answers[0].summary

        await own_pg.start()  # no restart of srebot: the next request is answered
        after = RecordingPort()
        dispatcher.submit(Request(key("after"), "u", "logs catalog", after))
        await after.wait(15)
        assert outcome(after) == "answered"
        # the answers posted during the outage are recorded once the database is back: nothing stays running
        await until(lambda: running(store, 0, ACTIVE_TURN), 15)
        for port in held:
            turn = await store.get_turn(port.answers[0].request_id)  # type: ignore[arg-type]
            assert turn is not None and turn.status == "completed"
    finally:
        gate.set()
        await dispatcher.shutdown()
        await store.close()


# --- start without the database ---------------------------------------------------------------------
async def test_serve_starts_without_the_database_and_takes_work_once_it_answers(
    own_pg_stopped: OwnPostgres, tmp_path: Any
) -> None:
    async with SlackFake() as slack:
        env = {
            "DATABASE_URL": own_pg_stopped.url,
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": slack.signing_secret,
            "SLACK_API_URL": slack.api_url,
            "SREBOT_KUBERNETES": "off",
            "SREBOT_COST": "off",
        }
        async with ServeProcess(env, cwd=tmp_path, name="no-db") as bot:  # /healthz 200 or this fails
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{bot.url}/readyz") as response:
                    assert response.status == 503
                    body = await response.json()
                    assert body["ready"] is False and "Connect" in body["checks"]["database"], body

                early = slack.app_mention("<@UBOT> help", channel="C0EARLY")
                assert (await slack.deliver(bot.events_url, slack.event_body(early)))[0] == 200
                (told,) = await wait_for_thread(slack, "C0EARLY", early["ts"], lambda ms: len(answers(ms)) == 1)
                assert "can't work yet: my database is not reachable" in told.text

                await own_pg_stopped.start()
                deadline = time.monotonic() + 60
                while True:  # the server retries in the background, with backoff
                    async with http.get(f"{bot.url}/readyz") as response:
                        if response.status == 200:
                            break
                    assert time.monotonic() < deadline, bot.log()
                    await asyncio.sleep(0.5)

            later = slack.app_mention("<@UBOT> help", channel="C0LATER")
            assert (await slack.deliver(bot.events_url, slack.event_body(later)))[0] == 200
            (answer,) = await wait_for_thread(slack, "C0LATER", later["ts"], lambda ms: len(answers(ms)) == 1)
            assert "can't work yet" not in answer.text and "database" not in answer.text
            assert await bot.stop() == 0, bot.log()
            assert "Traceback" not in bot.log()


@pytest.mark.parametrize("argv", [["ask", "logs", "checkout"], ["db", "upgrade"]])
async def test_cli_with_the_database_down_says_so_in_one_line(own_pg_stopped: OwnPostgres, argv: list[str]) -> None:
    import os
    import sys

    env = {**os.environ, "DATABASE_URL": own_pg_stopped.url, "PYTHONPATH": str(REPO), "SREBOT_KUBERNETES": "off"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *argv, env=env, cwd=str(own_pg_stopped.root),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    lines = err.decode().strip().splitlines()
    assert process.returncode != 0
    assert len(lines) == 1 and lines[0].startswith("srebot: ") and "database" in lines[0], err.decode()
    assert out == b""


async def test_slack_mentions_and_follow_ups_get_the_same_database_error_reply(own_pg: OwnPostgres) -> None:
    from tests.fakes.slack import SlackBot, in_thread

    async with SlackFake() as slack, SlackBot(slack, own_pg.url, env={"SREBOT_DB_DEADLINE": "2"}) as bot:
        mention = slack.app_mention("<@UBOT> help")
        await bot.event(mention)
        await bot.idle()
        before = len(slack.calls_to("chat.postMessage", in_thread(mention["ts"])))

        await own_pg.stop()
        await bot.event(slack.message("and its logs?", thread_ts=mention["ts"]))  # a follow-up, no mention
        told = await slack.wait_for_count("chat.postMessage", before + 1, in_thread(mention["ts"]), timeout=20)
        assert "I could not take this request: I could not reach my database" in told[-1].text_blob()
        other = slack.app_mention("<@UBOT> logs checkout")
        await bot.event(other)
        (reply,) = await slack.wait_for_count("chat.postMessage", 1, in_thread(other["ts"]), timeout=20)
        assert "I could not take this request: I could not reach my database" in reply.text_blob()

        await own_pg.start()
        await bot.event(slack.message("and now?", thread_ts=mention["ts"]))
        await slack.wait_for_count("chat.postMessage", before + 2, in_thread(mention["ts"]), timeout=20)
        await bot.idle()
        store = bot.runtime.store
        turns = await store.recent_turns(await store.find_session_id(ConversationKey("slack", slack.team_id, mention["channel"], mention["ts"])))
        assert [(t.text, t.status) for t in turns] == [("help", "completed"), ("and now?", "completed")]


async def test_teams_is_told_plainly_while_the_database_is_not_there(own_pg_stopped: OwnPostgres) -> None:
    from tests.fakes.bot_connector import BotConnectorFake, personal_message
    from tests.test_teams import local_env, serve

    async with BotConnectorFake() as connector, serve(
        local_env(own_pg_stopped.url, connector.url)
    ) as srebot:
        assert not srebot.runtime.ready
        assert await srebot.post(personal_message(connector.url, "help")) == 200
        told = await connector.wait_for(lambda call: "database" in call.text)
        assert "I can't work yet: my database is not reachable" in told.text

        await own_pg_stopped.start()
        await until(lambda: srebot.runtime.ready, 60)
        assert await srebot.post(personal_message(connector.url, "help")) == 200
        answer = await connector.wait_for(lambda call: call.card is not None)
        assert "database" not in answer.text


async def test_a_claim_whose_commit_landed_unseen_still_takes_its_event_once(pg_url: str) -> None:
    """The dedupe claim commits, but the connection drops before the client hears it; the claim is retried.
    The retry finds its own claim, so the event is answered, exactly once, and a redelivery is still a repeat."""
    from sqlalchemy import Engine, event

    from tests.fakes.serve import thread_messages
    from tests.fakes.slack import SlackBot

    lost: list[str] = []

    def lose_the_answer(conn: Any, statement: Any, *_: Any) -> None:  # the claim is one statement: it committed
        table = getattr(statement, "table", None)
        if getattr(statement, "is_insert", False) and table is not None and table.name == "processed_events" \
                and not lost:
            lost.append("claim")
            raise ConnectionResetError("connection lost after COMMIT")

    event.listen(Engine, "after_execute", lose_the_answer)
    try:
        engine = ScriptedEngine()
        async with SlackFake() as slack, SlackBot(slack, pg_url, engine=engine) as bot:
            mention = slack.app_mention("<@UBOT> diagnose checkout")
            body = slack.event_body(mention)
            assert (await bot.send(body))[0] == 200
            await bot.idle()
            assert lost == ["claim"], "the claim's commit was not interrupted"
            assert (await bot.send(body, retry_num=1))[0] == 200  # Slack's retry of the same event
            await bot.idle()
            (answer,) = answers(thread_messages(slack, mention["channel"], mention["ts"]))
            assert "Answer to “diagnose checkout”." in answer.text
            assert engine.done == ["diagnose checkout"]
    finally:
        event.remove(Engine, "after_execute", lose_the_answer)
