"""Overload on the embedded SQLite default (issue 20): steps that run out of time must not leave the
database file locked for the requests after them."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections.abc import Iterator

import pytest

from sessions.db import PoolSettings
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
