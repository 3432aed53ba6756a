"""The Loki fake of the test suite: `FakeLoki` (devtools.loopback.loki) and its fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devtools.loopback.loki import PARSE_ERROR, PARSE_ERROR_MARKER, FakeLoki

__all__ = ["PARSE_ERROR", "PARSE_ERROR_MARKER", "FakeLoki", "loki_fixture"]


@pytest.fixture(name="loki")
async def loki_fixture() -> AsyncIterator[FakeLoki]:
    fake = FakeLoki()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
