"""Shared fixtures, registered once: databases (a real SQLite file and a real PostgreSQL database per test) here,
the fakes' fixtures in the plugins below; and the integration marker for tests that need a real service."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from sessions.store import Store

pytest_plugins = [
    "tests.fakes.aws",  # moto_server, aws
    "tests.fakes.loki",  # loki
    "tests.fakes.prometheus",  # prometheus_server, victoria_metrics_server
    "tests.fakes.shop",  # fakes
    "tests.fakes.slack",  # slack, db_file, bot
]

PG_ADMIN_DSN = os.environ.get("SREBOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _create_pg_database() -> str:
    name = f"srebot_test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)


async def _drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database on the shared server, dropped afterwards."""
    url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, sqlite_url: Callable[..., str]) -> AsyncIterator[str]:
    """A database URL: a SQLite file already at the migrations' head (see `migrated_sqlite`), then a fresh, empty
    PostgreSQL database (where the migrations run from scratch)."""
    if request.param == "sqlite":
        yield sqlite_url()
        return
    async with pg_database() as url:
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A migrated store on each database."""
    s = Store(db_url)
    await s.upgrade()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the migrations' head, made once per run (per worker): a test that only needs srebot's
    database starts from a copy of it (`sqlite_url`) instead of applying every migration again (a fifth of the
    unit tier's time went there). Making it runs every migration on an empty SQLite file; PostgreSQL's `db_url`
    and tests/test_store.py exercise them too."""
    path = tmp_path_factory.mktemp("template") / "srebot.db"

    async def migrate() -> None:
        store = Store(f"sqlite+aiosqlite:///{path}")
        try:
            await store.upgrade()
        finally:
            await store.close()

    asyncio.run(migrate())
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite: Path) -> Callable[..., str]:
    """`sqlite_url(name="srebot.db")`: the URL of a new SQLite file in the test's directory, a copy of
    `migrated_sqlite` (srebot still checks its migrations when it opens it)."""

    def copy(name: str = "srebot.db") -> str:
        shutil.copyfile(migrated_sqlite, tmp_path / name)
        return f"sqlite+aiosqlite:///{tmp_path / name}"

    return copy


@pytest.fixture
async def sqlite_store(sqlite_url: Callable[..., str]) -> AsyncIterator[Store]:
    s = Store(sqlite_url())
    await s.upgrade()
    try:
        yield s
    finally:
        await s.close()


# Fixtures that start or reach a real service: a test using one is in the integration tier.
SERVICE_FIXTURES = {
    "prometheus_server", "victoria_metrics_server", "moto_server", "aws",  # binaries, moto
    "pg_url", "own_pg", "own_pg_stopped",  # PostgreSQL: the shared server, or one of a test's own
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`-m "not integration"` is the fast tier: no PostgreSQL, no Prometheus or VictoriaMetrics binary, no
    moto server, no child srebot process (modules that start one mark themselves).

    The tests run on every CPU (pytest-xdist, `--dist loadgroup`); the integration tier stays on one worker, one
    test at a time, as before: its tests share a PostgreSQL server and start processes and binaries whose timing
    was never meant to compete with each other."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("db_url") == "postgresql"
        if on_postgres or SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("integration") is not None:
            item.add_marker(pytest.mark.xdist_group("integration"))
