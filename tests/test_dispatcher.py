"""Dispatcher behaviour on a real database: ordering, limits, timeout, cancel, drain, crash recovery."""

from __future__ import annotations

import asyncio

from bot.dispatcher import Dispatcher
from bot.ports import Request
from sessions.store import ConversationKey, Store
from tests.helpers import RecordingPort, ScriptedEngine


def key(thread: str) -> ConversationKey:
    return ConversationKey("cli", "local", "terminal", thread)


class Notes:
    """A Notifier that records what the dispatcher tells threads outside a request."""

    platform = "cli"

    def __init__(self) -> None:
        self.said: list[tuple[str, str]] = []

    async def say(self, conversation, message) -> None:  # type: ignore[no-untyped-def]
        self.said.append((conversation.key.thread, message))

    async def approval_changed(self, approval, conversation) -> None:  # type: ignore[no-untyped-def]
        pass


async def test_submit_returns_at_once_and_answers(store: Store) -> None:
    gate = asyncio.Event()

    async def work(request: Request) -> str:
        await gate.wait()
        return "answer"

    dispatcher = Dispatcher(store, ScriptedEngine(work))
    await dispatcher.start()
    port = RecordingPort()
    request_id = dispatcher.submit(Request(key("a"), "alice", "diagnose checkout", port))
    assert request_id.startswith("req_") and port.answers == []  # returned before any work
    gate.set()
    await port.wait()
    await dispatcher.wait_idle()
    answer = port.answers[0]
    assert answer.summary == "answer" and answer.session_id.startswith("s_")
    assert port.events[0] == ("progress", "Looking into “diagnose checkout”…")
    turn = await store.get_turn(request_id)
    assert turn.status == "completed" and turn.answer["summary"] == "answer"
    session = await store.get_session(answer.session_id)
    assert session.current_service == "checkout"
    await dispatcher.shutdown()


async def test_one_thread_is_fifo_and_threads_run_in_parallel(store: Store) -> None:
    async def work(request: Request) -> str:
        await asyncio.sleep(0.2 if "first" in request.text else 0.01)
        return request.text

    engine = ScriptedEngine(work)
    dispatcher = Dispatcher(store, engine, max_concurrency=4)
    await dispatcher.start()
    ports = [RecordingPort() for _ in range(3)]
    dispatcher.submit(Request(key("t1"), "u", "first in t1", ports[0]))
    dispatcher.submit(Request(key("t1"), "u", "second in t1", ports[1]))
    dispatcher.submit(Request(key("t2"), "u", "only in t2", ports[2]))
    await dispatcher.wait_idle()
    assert engine.done.index("first in t1") < engine.done.index("second in t1")
    # t2 did not wait for t1's slow first request
    assert engine.done.index("only in t2") < engine.done.index("first in t1")
    assert "queued behind 1 earlier request" in ports[1].events[0][1]
    await dispatcher.shutdown()


async def test_global_concurrency_limit(store: Store) -> None:
    running = 0
    peak = 0

    async def work(request: Request) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return "ok"

    dispatcher = Dispatcher(store, ScriptedEngine(work), max_concurrency=2)
    await dispatcher.start()
    for i in range(6):
        dispatcher.submit(Request(key(f"thread-{i}"), "u", f"job {i}", RecordingPort()))
    await dispatcher.wait_idle()
    assert peak == 2
    await dispatcher.shutdown()


async def test_timeout_gives_a_clear_answer(store: Store) -> None:
    async def work(request: Request) -> str:
        await asyncio.sleep(30)
        return "never"

    dispatcher = Dispatcher(store, ScriptedEngine(work), timeout=0.2)
    await dispatcher.start()
    port = RecordingPort()
    request_id = dispatcher.submit(Request(key("slow"), "u", "diagnose checkout", port))
    await port.wait()
    await dispatcher.wait_idle()
    answer = port.answers[0]
    assert answer.status == "failed"
    assert "Timed out after 0.2 s" in answer.summary and request_id in answer.summary
    assert (await store.get_turn(request_id)).status == "failed"
    await dispatcher.shutdown()


async def test_cancel_stops_the_running_request_and_the_thread_goes_on(store: Store) -> None:
    async def work(request: Request) -> str:
        if "slow" in request.text:
            await asyncio.sleep(30)
        return "fine"

    dispatcher = Dispatcher(store, ScriptedEngine(work))
    await dispatcher.start()
    slow, cancel, after = RecordingPort(), RecordingPort(), RecordingPort()
    slow_id = dispatcher.submit(Request(key("c"), "u", "slow diagnose", slow))
    dispatcher.submit(Request(key("c"), "u", "next checkout", after))
    while not (await store.get_turn(slow_id)) or (await store.get_turn(slow_id)).status != "running":
        await asyncio.sleep(0.01)
    dispatcher.submit(Request(key("c"), "u", "cancel", cancel))
    await slow.wait()
    await after.wait()
    await dispatcher.wait_idle()
    assert slow.answers[0].status == "cancelled"
    assert cancel.texts == ["Cancelling “slow diagnose”."]
    assert after.answers[0].summary == "fine"
    assert (await store.get_turn(slow_id)).status == "cancelled"
    idle = RecordingPort()
    dispatcher.submit(Request(key("c"), "u", "cancel", idle))
    await idle.wait()
    assert idle.texts == ["Nothing is running in this thread."]
    await dispatcher.shutdown()


async def test_cancel_reaches_a_request_running_on_another_replica(store: Store, db_url: str) -> None:
    async def work(request: Request) -> str:
        await asyncio.sleep(30)
        return "never"

    # two replicas on one database: A runs the request, the thread's "cancel" lands on B
    other = Store(db_url)
    a = Dispatcher(store, ScriptedEngine(work), heartbeat_seconds=0.1)
    b = Dispatcher(other, ScriptedEngine(work), heartbeat_seconds=0.1)
    await a.start()
    await b.start()
    try:
        slow, cancel = RecordingPort(), RecordingPort()
        slow_id = a.submit(Request(key("x"), "u", "slow diagnose", slow))
        while not (await store.get_turn(slow_id)) or (await store.get_turn(slow_id)).status != "running":
            await asyncio.sleep(0.01)
        b.submit(Request(key("x"), "u", "cancel", cancel))
        await cancel.wait()
        assert cancel.texts == [
            "Cancelling “slow diagnose” (it is running on another srebot replica; it stops within 0.1 s)."
        ]
        await slow.wait(timeout=5)  # a few of A's heartbeats at most
        assert slow.answers[0].status == "cancelled" and slow.answers[0].summary == "Cancelled “slow diagnose”."
        await a.wait_idle()
        assert (await store.get_turn(slow_id)).status == "cancelled"
        # nothing runs in the thread any more, on either replica
        idle = RecordingPort()
        b.submit(Request(key("x"), "u", "cancel", idle))
        await idle.wait()
        assert idle.texts == ["Nothing is running in this thread."]
        assert await other.cancel_requests(a.instance_id) == []
    finally:
        await b.shutdown()
        await a.shutdown()
        await other.close()


async def test_cancel_with_nothing_running_on_any_replica(store: Store) -> None:
    dispatcher = Dispatcher(store, ScriptedEngine())
    await dispatcher.start()
    port = RecordingPort()
    dispatcher.submit(Request(key("empty"), "u", "stop", port))
    await port.wait()
    assert port.texts == ["Nothing is running in this thread."]
    await dispatcher.shutdown()


async def test_engine_failure_is_never_silent(store: Store) -> None:
    async def work(request: Request) -> str:
        raise RuntimeError("boom")

    dispatcher = Dispatcher(store, ScriptedEngine(work))
    await dispatcher.start()
    port = RecordingPort()
    request_id = dispatcher.submit(Request(key("f"), "u", "diagnose checkout", port))
    await port.wait()
    assert port.answers[0].status == "failed" and request_id in port.answers[0].summary
    await dispatcher.shutdown()


async def test_status_lists_work_in_flight(store: Store) -> None:
    gate = asyncio.Event()

    async def work(request: Request) -> str:
        await gate.wait()
        return "ok"

    dispatcher = Dispatcher(store, ScriptedEngine(work))
    await dispatcher.start()
    busy = RecordingPort()
    busy_id = dispatcher.submit(Request(key("s1"), "alice", "diagnose checkout", busy))
    while not (await store.get_turn(busy_id)):
        await asyncio.sleep(0.01)
    status = RecordingPort()
    dispatcher.submit(Request(key("s2"), "bob", "status", status))
    await status.wait()
    assert status.answers[0].intent == "status"
    assert "diagnose checkout" in status.answers[0].summary and "alice" in status.answers[0].summary
    gate.set()
    await dispatcher.shutdown()


async def test_shutdown_drains_then_interrupts(store: Store) -> None:
    async def work(request: Request) -> str:
        await asyncio.sleep(0.05 if "quick" in request.text else 30)
        return "ok"

    notes = Notes()
    dispatcher = Dispatcher(store, ScriptedEngine(work), drain_seconds=0.5, max_concurrency=1, notifiers={"cli": notes})
    await dispatcher.start()
    quick, slow, waiting = RecordingPort(), RecordingPort(), RecordingPort()
    quick_id = dispatcher.submit(Request(key("q"), "u", "quick one", quick))
    slow_id = dispatcher.submit(Request(key("s"), "u", "slow one", slow))
    waiting_id = dispatcher.submit(Request(key("w"), "u", "waiting one", waiting))
    await quick.wait()
    await dispatcher.shutdown()
    assert (await store.get_turn(quick_id)).status == "completed"
    assert (await store.get_turn(slow_id)).status == "interrupted"
    assert (await store.get_turn(waiting_id)).status == "interrupted"
    assert "could not finish “slow one”" in slow.answers[0].summary
    assert "could not finish “waiting one”" in waiting.answers[0].summary
    refused = RecordingPort()
    dispatcher.submit(Request(key("late"), "u", "diagnose", refused))
    await refused.wait()
    assert "not taking new work" in refused.texts[0]


async def test_turns_left_running_by_a_crash_are_reported_at_start(db_url: str) -> None:
    crashed = Store(db_url)
    await crashed.upgrade()
    sid = await crashed.session_id_for(key("incident-7"))
    turn = await crashed.create_turn(sid, "req_lost", "diagnose checkout", "alice", "dead-instance")
    await crashed.update_turn(turn, "running")
    await crashed.close()  # the process died without retiring its instance

    restarted = Store(db_url)
    notes = Notes()
    dispatcher = Dispatcher(restarted, ScriptedEngine(), notifiers={"cli": notes})
    await dispatcher.start()
    try:
        assert (await restarted.get_turn("req_lost")).status == "interrupted"
        assert notes.said == [
            ("incident-7", "I was restarted while working on “diagnose checkout”; ask again. (request req_lost)")
        ]
    finally:
        await dispatcher.shutdown()
        await restarted.close()


class SlowPlaceholderPort(RecordingPort):
    """A port whose placeholder is out only once `posted` is set (Slack slow to take it)."""

    def __init__(self) -> None:
        super().__init__()
        self.posted = asyncio.Event()

    async def progress(self, text: str) -> None:
        await self.posted.wait()
        await super().progress(text)


async def test_a_bursts_placeholders_go_out_before_its_database_work(store: Store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The last placeholders of a burst do not wait behind the first requests' recording: recording waits
    while placeholders are being posted, for a bounded time (a placeholder that hangs holds nobody up for long)."""
    recorded: list[str] = []
    record_turn = store.record_turn

    async def spy(key, reference, request_id, *args, **kwargs):  # type: ignore[no-untyped-def]
        recorded.append(request_id)
        return await record_turn(key, reference, request_id, *args, **kwargs)

    monkeypatch.setattr(store, "record_turn", spy)
    monkeypatch.setattr("bot.dispatcher.PLACEHOLDERS_FIRST", 60.0)
    dispatcher = Dispatcher(store, ScriptedEngine())
    await dispatcher.start()
    try:
        fast = [RecordingPort() for _ in range(5)]
        slow = SlowPlaceholderPort()
        for index, port in enumerate([slow, *fast]):
            dispatcher.submit(Request(key(f"burst-{index}"), "u", "diagnose checkout", port))
        await until(lambda: all(port.events for port in fast))
        await asyncio.sleep(0.05)
        assert recorded == [], "no request is recorded while a placeholder of its burst is being posted"
        slow.posted.set()
        await dispatcher.wait_idle()
        assert len(recorded) == 6 and all(port.answers for port in [*fast, slow])

        monkeypatch.setattr("bot.dispatcher.PLACEHOLDERS_FIRST", 0.05)
        hung, after = SlowPlaceholderPort(), RecordingPort()
        dispatcher.submit(Request(key("hung"), "u", "diagnose checkout", hung))
        dispatcher.submit(Request(key("after"), "u", "diagnose checkout", after))
        await after.wait()
        assert after.answers, "a placeholder that hangs holds the others' recording only for a moment"
        hung.posted.set()
        await hung.wait()
    finally:
        await dispatcher.shutdown()


async def until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
