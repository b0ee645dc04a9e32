"""PostgreSQL connections in the pool: checked by how long they sat idle, not on every checkout.

A connection in steady use is never pinged (SQLAlchemy's pre-ping would cost three round trips
per transaction); one idle for ``idle_check_after`` seconds is pinged first and, when the server
dropped it meanwhile, replaced without the caller noticing. The control shows the drop is real:
without the check, the first transaction after it fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import postgres_server_url

from erm.db import create_engine, transaction

pytestmark = pytest.mark.postgres


def backend_pid(connection: Connection) -> int:
    return int(connection.scalar(text("SELECT pg_backend_pid()")))


@pytest.fixture
async def admin() -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_server_url())
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def make() -> AsyncIterator[Callable[[float], AsyncEngine]]:
    made: list[AsyncEngine] = []

    def build(idle_check_after: float) -> AsyncEngine:
        engine = create_engine(postgres_server_url(), idle_check_after=idle_check_after)
        made.append(engine)
        return engine

    yield build
    for engine in made:
        await engine.dispose()


def count_pings(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    dialect = engine.sync_engine.dialect
    pings: list[int] = []
    real = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return real(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return pings


async def terminate(admin: AsyncEngine, pid: int) -> None:
    async with admin.begin() as connection:
        ended = await connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert ended


async def test_a_connection_in_steady_use_is_never_pinged(
    make: Callable[[float], AsyncEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make(30.0)
    pings = count_pings(engine, monkeypatch)
    pids = {await transaction(engine, backend_pid) for _ in range(20)}
    assert len(pids) == 1  # one pooled connection, reused
    assert pings == []


async def test_an_idle_connection_the_server_dropped_is_replaced_unnoticed(
    make: Callable[[float], AsyncEngine], admin: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make(0.0)  # every reuse counts as idle long enough
    pings = count_pings(engine, monkeypatch)
    first = await transaction(engine, backend_pid)
    await terminate(admin, first)

    second = await transaction(engine, backend_pid)

    assert second != first
    assert pings == [1]  # the dead connection's ping; the new one is not checked


async def test_without_the_check_the_drop_fails_the_next_transaction(
    make: Callable[[float], AsyncEngine], admin: AsyncEngine
) -> None:
    engine = make(float("inf"))
    first = await transaction(engine, backend_pid)
    await terminate(admin, first)

    with pytest.raises(sqlalchemy.exc.DBAPIError):
        await transaction(engine, backend_pid)
    assert await transaction(engine, backend_pid) != first  # the pool replaced it after
