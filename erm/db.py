"""The storage foundation: one async engine, a declarative base, and Alembic run from code.

SQLite (a file, the default) and PostgreSQL (``postgresql+asyncpg://``) behave the same to callers:

- SQLite connections get WAL, a busy timeout and enforced foreign keys, and every transaction starts
  with ``BEGIN IMMEDIATE``. The sqlite3 driver's own transaction handling never wraps DDL (so a
  failed migration would be left half applied) and starts read transactions that fail with
  "database is locked" when they later try to write; taking the write lock up front lets concurrent
  writers wait for each other (busy timeout) instead of failing. Transactions here are short.
- Migrations are Alembic revisions, run by :func:`upgrade` on every start; there is no alembic.ini.
  erm's revisions carry the branch label ``erm``; another layer passes its own ``version_locations``
  to add its branch to the same history.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, DateTime, Dialect, MetaData, event, make_url, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

__all__ = [
    "MIGRATIONS_DIR",
    "Base",
    "MigrationError",
    "UtcDateTime",
    "create_engine",
    "default_database_url",
    "is_current",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""Alembic's script location for erm (env.py, the revision template, ``versions/``)."""

SQLITE_BUSY_TIMEOUT_MS = 5_000
_WAL_ATTEMPTS = 100  # x 50 ms

# Any constant unique to this application; two processes upgrading one PostgreSQL database at the
# same time queue on it instead of both creating the same tables.
_MIGRATION_LOCK_ID = 0x65726D626F74  # "ermbot"

# Named constraints: SQLite batch migrations can only drop or alter what has a name.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of erm's tables; the migrations, not ``create_all``, own their schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class MigrationError(RuntimeError):
    """The schema could not be brought up to date; nothing of the failed upgrade was kept."""


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database.

    PostgreSQL keeps ``timestamptz``; SQLite keeps no zone at all, so values are stored as UTC and
    given their zone back when read. Naive datetimes are refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("a naive datetime cannot be stored; give it a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def default_database_url(cwd: str | os.PathLike[str]) -> str:
    """The SQLite file used when no database URL is configured: ``erm-bot.db`` in ``cwd``."""
    return f"sqlite+aiosqlite:///{Path(cwd).resolve() / 'erm-bot.db'}"


def create_engine(url: str, *, connect_args: Mapping[str, Any] | None = None) -> AsyncEngine:
    """An async engine for a SQLite or PostgreSQL URL.

    ``sqlite://`` and ``postgresql://`` / ``postgres://`` without a driver are given their async
    drivers (aiosqlite, asyncpg); a driver named in the URL is kept. ``connect_args`` go to the
    driver, e.g. asyncpg's ``server_settings``.
    """
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "sqlite" and not driver:
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql" and not driver:
        parsed = parsed.set(drivername="postgresql+asyncpg")

    # hide_parameters: a failed statement's message (logged with its traceback) would otherwise
    # carry its values, e.g. an unlock code or a stored reply.
    options: dict[str, Any] = {"connect_args": dict(connect_args or {}), "hide_parameters": True}
    if backend == "postgresql":
        options["pool_pre_ping"] = True  # the bot runs for weeks; servers drop idle connections
    engine = create_async_engine(parsed, **options)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        event.listen(engine.sync_engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(
    dbapi_connection: DBAPIConnection, connection_record: ConnectionPoolEntry
) -> None:
    # Stop the driver from issuing BEGIN itself; _begin_sqlite_transaction does it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
        _use_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of the process in WAL
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so); only a new file's first connections ever do.

    Switching needs the file to itself, and SQLite may answer "database is locked" at once,
    without waiting out the busy timeout, when two processes open a new file together: retried
    for up to a few seconds. (Blocking, but only in that race at first start.)
    """
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() == "wal":
        return
    for attempt in range(_WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:
            if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.05)


def _begin_sqlite_transaction(connection: Connection) -> None:
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE")


# -- migrations ---------------------------------------------------------------------------------


def _alembic_config(version_locations: Sequence[str | os.PathLike[str]]) -> Config:
    config = Config()  # no file: no logging setup, nothing read from the working directory
    locations = [MIGRATIONS_DIR / "versions", *(Path(p) for p in version_locations)]
    for location in locations:
        if os.pathsep in str(location):
            raise ValueError(f"a migration directory path may not contain {os.pathsep!r}")

    def option(value: str) -> str:
        return value.replace("%", "%%")  # the options pass through configparser interpolation

    config.set_main_option("script_location", option(str(MIGRATIONS_DIR)))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations", option(os.pathsep.join(str(p) for p in dict.fromkeys(locations)))
    )
    return config


async def upgrade(
    engine: AsyncEngine, version_locations: Sequence[str | os.PathLike[str]] = ()
) -> None:
    """Bring the schema to the newest revision of every branch; a no-op when it already is.

    Safe to call on every start, also from several processes at once. The whole upgrade is one
    transaction: if a revision fails, none of the upgrade is kept (:class:`MigrationError`).
    """
    config = _alembic_config(version_locations)
    async with engine.connect() as connection:
        await connection.run_sync(_upgrade, config)


def _upgrade(connection: Connection, config: Config) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Table rebuilds (batch mode) drop and recreate tables; with enforcement on, dropping a
        # referenced table would cascade or fail. SQLite ignores this pragma inside a
        # transaction, so it is set before BEGIN and checked with foreign_key_check before COMMIT.
        _sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
    try:
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _MIGRATION_LOCK_ID}
                )
            config.attributes["connection"] = connection
            try:
                command.upgrade(config, "heads")
            except CommandError as exc:  # Alembic's own: unknown revision, branch trouble
                raise MigrationError(f"the database upgrade failed: {exc}") from exc
            except Exception as exc:
                # Not str(exc): a database error's text carries its statement's parameters.
                raise MigrationError(
                    f"the database upgrade failed and was rolled back ({type(exc).__name__})"
                ) from exc
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    tables = sorted({str(row[0]) for row in broken})
                    raise MigrationError(
                        f"the upgrade would leave rows with dangling foreign keys in {tables}"
                    )
    finally:
        if sqlite:
            _sqlite_pragma(connection, "PRAGMA foreign_keys=ON")


def _sqlite_pragma(connection: Connection, statement: str) -> None:
    # Straight on the driver connection: going through SQLAlchemy would first begin a transaction.
    cursor = connection.connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


async def is_current(
    engine: AsyncEngine, version_locations: Sequence[str | os.PathLike[str]] = ()
) -> bool:
    """Whether the database is at exactly the newest revision of every branch.

    Pass the same ``version_locations`` as to :func:`upgrade`.
    """
    config = _alembic_config(version_locations)
    async with engine.connect() as connection:
        return await connection.run_sync(_is_current, config)


def _is_current(connection: Connection, config: Config) -> bool:
    """Every head is applied. A branch that depends on another is recorded alone in
    ``alembic_version`` (its dependency is implied), so walk down from what is recorded."""
    script = ScriptDirectory.from_config(config)
    current = MigrationContext.configure(connection).get_current_heads()
    try:
        applied = {revision.revision for revision in script.iterate_revisions(current, "base")}
    except RevisionError:  # the database is at a revision this code does not know (newer)
        return False
    return set(script.get_heads()) <= applied
