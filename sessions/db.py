"""Creates async SQLAlchemy engines from the accepted database URL forms."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def async_url(url: str) -> str:
    """Map plain `postgresql://` / `sqlite:///` URLs to their async drivers; others pass unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"{url!r} is not a database URL (e.g. sqlite+aiosqlite:///srebot.db)")
    return f"{_DRIVERS.get(scheme.lower(), scheme)}://{rest}"


def is_sqlite(url: str) -> bool:
    return async_url(url).startswith("sqlite")


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    url = async_url(url)
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # WAL lets readers proceed during a write; busy_timeout waits instead of failing on a lock.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # No pre-ping: it doubles the round trips of every request. A connection the server dropped is
    # found on use instead, and the pool is then replaced as a whole; recycling keeps idle ones fresh.
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=300)
