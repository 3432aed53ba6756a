"""The store under overload (issue 20): steps that run out of time leave the SQLite file writable for
the requests after them, and a step that waited its whole deadline for a connection says so."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections.abc import Iterator

import pytest

from sessions.db import PoolSettings
from bot.wording import database_reason
from sessions.store import ConversationKey, DatabaseError, Store, TurnState, database_deadline


@pytest.fixture
def no_collection() -> Iterator[None]:
    """The garbage collector off: what a leaked connection holds stays held, as between two collections of a busy server."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_requests_past_their_deadline_leave_the_sqlite_database_writable(
    tmp_path: object, no_collection: None
) -> None:
    path = f"{tmp_path}/srebot.db"
    store = Store(f"sqlite+aiosqlite:///{path}", pool=PoolSettings(size=4, overflow=0, wait=5.0))
    await store.upgrade()
    await store.register("me", 30.0)

    async def request(index: int) -> None:
        # far more work than fits in the deadline: most requests run out of time, many of them mid-transaction
        with database_deadline(0.3):
            recorded = await store.record_turn(
                ConversationKey("cli", "local", "terminal", f"t{index}"), None, f"req{index}", "logs x", "u", "me"
            )
            await store.start_turn(recorded.turn_id, "me")
            await store.update_turn(recorded.turn_id, TurnState.COMPLETED, answer={"summary": "ok"}, elapsed_ms=1)

    try:
        results = await asyncio.gather(*(request(index) for index in range(200)), return_exceptions=True)
        assert any(isinstance(result, DatabaseError) for result in results)  # the deadline did cut in
        assert all(result is None or isinstance(result, DatabaseError) for result in results), results
        # the next requests and the heartbeat can write: no connection was left holding the write lock
        with database_deadline(5.0):
            await store.record_turn(ConversationKey("cli", "local", "terminal", "after"), None, "after", "x", "u", "me")
        assert await store.renew_lease("me", 30.0)
        other = sqlite3.connect(path, timeout=2.0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()
    finally:
        await store.close()


async def test_a_step_that_waited_its_deadline_for_a_connection_says_they_were_all_busy(db_url: str) -> None:
    store = Store(db_url, pool=PoolSettings(size=1, overflow=0, wait=5.0))
    await store.upgrade()
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold_the_only_connection() -> None:
        async with store._begin():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_only_connection())
    try:
        await holding.wait()
        with pytest.raises(DatabaseError) as failed, database_deadline(0.3):
            await store.session_id_for(ConversationKey("cli", "local", "terminal", "waiting"))
        assert database_reason(failed.value) == "all its connections are busy"
    finally:
        release.set()
        await holder
        await store.close()
