"""Shared fixtures: a real SQLite file and a real PostgreSQL database per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from sessions.store import Store

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
async def db_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """A fresh, empty database URL: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'srebot.db'}"
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


@pytest.fixture
async def sqlite_store(tmp_path) -> AsyncIterator[Store]:
    s = Store(f"sqlite+aiosqlite:///{tmp_path / 'srebot.db'}")
    await s.upgrade()
    try:
        yield s
    finally:
        await s.close()
