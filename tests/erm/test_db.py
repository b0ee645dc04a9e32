"""The storage foundation: engines, migrations run from code, UTC datetimes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, Integer, MetaData, Table, inspect, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

import erm.distributors  # noqa: F401  (registers the erm_distributors table on Base.metadata)
from erm.db import (
    Base,
    MigrationError,
    UtcDateTime,
    create_engine,
    default_database_url,
    is_current,
    transaction,
    upgrade,
)

if TYPE_CHECKING:
    from support import TestDatabase

ERM_HEAD = "erm0002"

EXTRA_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "extra0001"
down_revision = None
branch_labels = ("extra",)
depends_on = None


def upgrade():
    op.create_table("extra_things", sa.Column("id", sa.Integer, primary_key=True))
    {more}


def downgrade():
    op.drop_table("extra_things")
"""


def write_extra_branch(directory: Path, *, broken: bool = False) -> str:
    """A second migration branch, as the bot layer would add one; returns its directory."""
    directory.mkdir()
    more = 'op.execute("SELECT * FROM no_such_table")' if broken else "pass"
    (directory / "extra0001_things.py").write_text(EXTRA_REVISION.format(more=more))
    return str(directory)


def moments_table() -> Table:
    return Table(
        "moments", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime)
    )


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def applied_revisions(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        result = await connection.execute(text("SELECT version_num FROM alembic_version"))
        return sorted(result.scalars())


def test_default_database_url_is_erm_bot_db_in_the_given_directory(tmp_path: Path) -> None:
    assert default_database_url(tmp_path) == f"sqlite+aiosqlite:///{tmp_path}/erm-bot.db"


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///erm-bot.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///erm-bot.db", "sqlite+aiosqlite"),
        ("postgresql://erm@db.invalid/erm", "postgresql+asyncpg"),
        ("postgres://erm@db.invalid/erm", "postgresql+asyncpg"),
        ("postgresql+asyncpg://erm@db.invalid/erm", "postgresql+asyncpg"),
    ],
)
async def test_create_engine_gives_each_database_its_async_driver(url: str, driver: str) -> None:
    engine = create_engine(url)  # connects lazily: nothing is contacted here
    try:
        assert engine.url.drivername == driver
    finally:
        await engine.dispose()


async def test_upgrade_creates_the_vault_table(engine: AsyncEngine) -> None:
    assert "erm_distributors" in await table_names(engine)
    assert await applied_revisions(engine) == [ERM_HEAD]


async def test_migrations_match_the_models(engine: AsyncEngine) -> None:
    def differences(sync: Connection) -> list[object]:
        context = MigrationContext.configure(sync, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_upgrade_again_changes_nothing(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO erm_distributors"
                " (name, email, password_secret, created_at, updated_at)"
                " VALUES ('acme', 'a@example.org', 'x', :now, :now)"
            ),
            {"now": datetime.now(UTC)},
        )

    await upgrade(engine)
    await upgrade(engine)

    assert await applied_revisions(engine) == [ERM_HEAD]
    async with engine.connect() as connection:
        count = await connection.scalar(text("SELECT count(*) FROM erm_distributors"))
    assert count == 1


async def test_is_current_only_after_upgrade(database: TestDatabase) -> None:
    engine = database.create_engine()
    try:
        assert await is_current(engine) is False
        await upgrade(engine)
        assert await is_current(engine) is True
    finally:
        await engine.dispose()


async def test_upgrade_from_two_processes_at_once_succeeds(database: TestDatabase) -> None:
    first = database.create_engine()
    second = database.create_engine()
    try:
        await asyncio.gather(upgrade(first), upgrade(second))
        assert await applied_revisions(first) == [ERM_HEAD]
    finally:
        await first.dispose()
        await second.dispose()


async def test_extra_version_location_adds_its_branch(engine: AsyncEngine, tmp_path: Path) -> None:
    extra = write_extra_branch(tmp_path / "extra")
    assert await is_current(engine, [extra]) is False

    await upgrade(engine, [extra])

    assert "extra_things" in await table_names(engine)
    assert await applied_revisions(engine) == [ERM_HEAD, "extra0001"]
    assert await is_current(engine, [extra]) is True
    assert await is_current(engine) is False  # the database is ahead of erm's branch alone


async def test_failed_migration_leaves_nothing_behind(engine: AsyncEngine, tmp_path: Path) -> None:
    extra = write_extra_branch(tmp_path / "extra", broken=True)

    with pytest.raises(MigrationError, match="rolled back"):
        await upgrade(engine, [extra])

    assert "extra_things" not in await table_names(engine)
    assert await applied_revisions(engine) == [ERM_HEAD]


async def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/erm-bot.db")
    try:
        await upgrade(engine)  # turns foreign keys off for its own transaction only
        async with engine.connect() as connection:
            pragmas = {
                name: await connection.scalar(text(f"PRAGMA {name}"))
                for name in ("journal_mode", "busy_timeout", "foreign_keys")
            }
    finally:
        await engine.dispose()
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 5000, "foreign_keys": 1}


async def test_transaction_commits_what_work_did_and_rolls_back_when_it_raises(
    engine: AsyncEngine,
) -> None:
    await transaction(engine, lambda c: c.execute(text("CREATE TABLE t (n INTEGER)")))
    await transaction(engine, lambda c: c.execute(text("INSERT INTO t VALUES (1)")))

    def insert_then_fail(connection: Connection) -> None:
        connection.execute(text("INSERT INTO t VALUES (2)"))
        raise LookupError("work failed")

    with pytest.raises(LookupError):
        await transaction(engine, insert_then_fail)

    rows = await transaction(engine, lambda c: c.execute(text("SELECT n FROM t")).scalars().all())
    assert rows == [1]


async def test_sqlite_transaction_waits_off_the_loop_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        await transaction(engine, lambda c: c.execute(text("CREATE TABLE t (n INTEGER)")))
        other = sqlite3.connect(path, isolation_level=None)  # as another process would
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        waiting = asyncio.create_task(
            transaction(engine, lambda c: c.execute(text("INSERT INTO t VALUES (2)")))
        )
        # Waiting in the loop would block it: "other" could never commit, and the wait would end
        # in "database is locked" after the busy timeout.
        await asyncio.sleep(0.2)
        assert not waiting.done()
        other.execute("COMMIT")
        other.close()
        await asyncio.wait_for(waiting, 5)
        rows = await transaction(
            engine, lambda c: c.execute(text("SELECT n FROM t ORDER BY n")).scalars().all()
        )
    finally:
        await engine.dispose()
    assert rows == [1, 2]


async def test_utc_datetime_comes_back_aware_in_utc(engine: AsyncEngine) -> None:
    table = moments_table()
    moment = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=3)))
    async with engine.begin() as connection:
        await connection.run_sync(table.create)
        await connection.execute(table.insert().values(id=1, at=moment))
        stored = await connection.scalar(select(table.c.at))

    assert stored == moment
    assert stored is not None
    assert stored.tzinfo == UTC


async def test_utc_datetime_refuses_a_naive_datetime(engine: AsyncEngine) -> None:
    table = moments_table()
    async with engine.begin() as connection:
        await connection.run_sync(table.create)
        with pytest.raises(StatementError, match="naive datetime"):
            await connection.execute(table.insert().values(id=1, at=datetime(2025, 3, 1)))


def size(path: Path) -> int:
    return path.stat().st_size


async def test_sqlite_wal_past_the_mark_is_emptied_and_no_write_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A passive checkpoint copies the WAL into the database but never shrinks the file, and under
    # steady load it never lets the WAL start over: without the truncating checkpoint a WAL that
    # grew stays that big, and grows on.
    monkeypatch.setattr("erm.db._CHECKPOINT_EVERY", 10**9)  # none yet: let it grow past the mark
    monkeypatch.setattr("erm.db._TRUNCATE_AFTER_FRAMES", 100)
    path = tmp_path / "busy.db"
    engine = create_engine(f"sqlite:///{path}")
    wal = Path(f"{path}-wal")

    def insert(n: int) -> Callable[[Connection], object]:
        return lambda c: c.execute(text("INSERT INTO t VALUES (:n, :s)"), {"n": n, "s": "x" * 2000})

    try:
        await transaction(engine, lambda c: c.execute(text("CREATE TABLE t (n INTEGER, s TEXT)")))
        for n in range(300):
            await transaction(engine, insert(n))
        grown = size(wal)
        assert grown > 100 * 4096, grown
        monkeypatch.setattr("erm.db._CHECKPOINT_EVERY", 1)  # the next commit starts one
        for n in range(300, 340):  # writes go on while it runs (behind it, on its thread)
            await transaction(engine, insert(n))
            await asyncio.sleep(0.001)
        for _ in range(1000):  # up to 10 s for the checkpoint thread, on a slow disk
            if size(wal) < grown / 4:
                break
            await asyncio.sleep(0.01)
        emptied = size(wal)
        rows = await transaction(engine, lambda c: c.scalar(text("SELECT count(*) FROM t")))
    finally:
        await engine.dispose()
    assert rows == 340
    assert emptied < grown / 4, (emptied, grown)
