"""Creates async SQLAlchemy engines from the accepted database URL forms."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


@dataclass(frozen=True)
class PoolSettings:
    """The connection pool of one process: `size` kept open, `overflow` more under load, and how long
    (`wait`, seconds) a transaction may wait for a free connection before it counts as a failed try."""

    size: int = 10
    overflow: int = 10
    wait: float = 10.0

    @property
    def connections(self) -> int:
        return self.size + self.overflow


class Places:
    """The places in front of a pool's connections: a transaction takes one first, so it waits here, in
    order, never in (nor times out of) the pool. Work `ahead` (a turn's start and finish, which free a
    request's slot and answer a person) is given the next free place before new work (recording a
    request), which can wait: under a backlog of records, answers would otherwise wait behind all of it."""

    def __init__(self, count: int):
        self._free = count
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    async def acquire(self, *, ahead: bool = False) -> None:
        if self._free > 0 and not any(self._waiting):
            self._free -= 1
            return
        line = self._waiting[0 if ahead else 1]
        place = asyncio.get_running_loop().create_future()
        line.append(place)
        try:
            await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled():
                self.release()  # given a place as it was cancelled: the next in line has it
            elif place in line:  # (a release may have passed over it already)
                line.remove(place)
            raise

    def release(self) -> None:
        for line in self._waiting:
            while line:
                place = line.popleft()
                if not place.done():
                    place.set_result(None)
                    return
        self._free += 1


def async_url(url: str) -> str:
    """Map plain `postgresql://` / `sqlite:///` URLs to their async drivers; others pass unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"{url!r} is not a database URL (e.g. sqlite+aiosqlite:///srebot.db)")
    return f"{_DRIVERS.get(scheme.lower(), scheme)}://{rest}"


def is_sqlite(url: str) -> bool:
    return async_url(url).startswith("sqlite")


def make_engine(url: str, pool: PoolSettings = PoolSettings()) -> AsyncEngine:
    url = async_url(url)
    if is_sqlite(url):
        return _sqlite_engine(url, busy_seconds=30, pool=pool)
    # No pre-ping: it doubles the round trips of every request. A connection the server dropped is
    # found on use instead, and the pool is then replaced as a whole; recycling keeps idle ones fresh.
    return create_async_engine(
        url, pool_size=pool.size, max_overflow=pool.overflow, pool_timeout=pool.wait, pool_recycle=300
    )


def make_lease_engine(url: str, timeout: float) -> AsyncEngine:
    """The heartbeat's own engine: one connection kept open for it (and one more for readiness probes),
    never shared with requests, with a short timeout on connecting, waiting and each statement, so
    neither a busy pool nor a slow database can stretch a beat. A connection that broke is replaced."""
    url = async_url(url)
    if is_sqlite(url):
        return _sqlite_engine(url, busy_seconds=timeout)
    return create_async_engine(
        url, pool_size=1, max_overflow=1, pool_timeout=timeout, pool_pre_ping=True,
        connect_args={"timeout": timeout, "command_timeout": timeout},
    )


def _sqlite_engine(url: str, busy_seconds: float, pool: PoolSettings | None = None) -> AsyncEngine:
    # the pool as large as the store's gate (Store._gate), so a transaction let through never waits in it
    sized = {"pool_size": pool.size, "max_overflow": pool.overflow, "pool_timeout": pool.wait} if pool else {}
    engine = create_async_engine(url, connect_args={"timeout": busy_seconds}, **sized)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # WAL lets readers proceed during a write; busy_timeout waits instead of failing on a lock.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine
