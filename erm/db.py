"""The storage foundation: one async engine, a declarative base, and Alembic run from code.

SQLite (a file, the default) and PostgreSQL (``postgresql+asyncpg://``) behave the same to callers:

- SQLite connections get WAL, a busy timeout and enforced foreign keys, and every transaction starts
  with ``BEGIN IMMEDIATE``. The sqlite3 driver's own transaction handling never wraps DDL (so a
  failed migration would be left half applied) and starts read transactions that fail with
  "database is locked" when they later try to write; taking the write lock up front lets concurrent
  writers wait for each other (busy timeout) instead of failing. Transactions here are short.
- :func:`transaction` runs a whole transaction written as plain synchronous SQLAlchemy. On a SQLite
  file it goes in one hop to a thread of the engine's own, holding a synchronous connection to the
  same file: aiosqlite crosses threads for every driver call (nine times for one statement with its
  BEGIN, commit and pool reset), which cost ~0.9 ms of CPU per transaction against ~0.2 ms for one
  hop. It also queues the process's SQLite writers in that thread instead of in SQLite's busy
  handler, which sleeps. On PostgreSQL it runs through asyncpg (``AsyncConnection.run_sync``).
- Migrations are Alembic revisions, run by :func:`upgrade` on every start; there is no alembic.ini.
  erm's revisions carry the branch label ``erm``; another layer passes its own ``version_locations``
  to add its branch to the same history.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, MetaData, event, make_url, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry

from erm import pool
from erm.timestamps import UtcDateTime

__all__ = [
    "MIGRATIONS_DIR",
    "Base",
    "MigrationError",
    "UtcDateTime",
    "create_engine",
    "default_database_url",
    "is_current",
    "transaction",
    "upgrade",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

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


def default_database_url(cwd: str | os.PathLike[str]) -> str:
    """The SQLite file used when no database URL is configured: ``erm-bot.db`` in ``cwd``."""
    return f"sqlite+aiosqlite:///{Path(cwd).resolve() / 'erm-bot.db'}"


def create_engine(
    url: str,
    *,
    connect_args: Mapping[str, Any] | None = None,
    idle_check_after: float = pool.IDLE_CHECK_AFTER,
) -> AsyncEngine:
    """An async engine for a SQLite or PostgreSQL URL.

    ``sqlite://`` and ``postgresql://`` / ``postgres://`` without a driver are given their async
    drivers (aiosqlite, asyncpg); a driver named in the URL is kept. ``connect_args`` go to the
    driver, e.g. asyncpg's ``server_settings``. On PostgreSQL a pooled connection idle for
    ``idle_check_after`` seconds is pinged before use and replaced when it is gone.
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
        options["pool_recycle"] = pool.POOL_RECYCLE
    if backend == "sqlite" and _is_plain_file(parsed.database, parsed.query):
        _create_private_file(Path(str(parsed.database)))
    engine = create_async_engine(parsed, **options)
    if backend == "postgresql":
        pool.check_when_idle(engine.sync_engine, idle_check_after)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        event.listen(engine.sync_engine, "begin", _begin_sqlite_transaction)
        if parsed.database and parsed.database != ":memory:" and not parsed.query.get("mode"):
            runner = _SqliteRunner(parsed, options)
            _SQLITE_RUNNERS[engine] = runner
            event.listen(engine.sync_engine, "engine_disposed", lambda _engine: runner.close())
    return engine


def _is_plain_file(database: str | None, query: Mapping[str, Any]) -> bool:
    """Whether a SQLite URL names a file by path (not memory, not a ``file:`` URI)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return False
    return not query.get("mode")


def _create_private_file(path: Path) -> None:
    """Create a missing SQLite file readable and writable by its owner only (0600).

    It holds encrypted secrets, but also names, phone numbers and the audit trail. SQLite gives
    its WAL and shared-memory files the main file's mode, so they are private too. An existing
    file keeps the mode its operator gave it.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError:
        return  # e.g. a missing directory: SQLite reports it in its own words on first use
    os.close(descriptor)


async def transaction(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """Run ``work(connection)`` as one transaction (committed if it returns) and return its result.

    ``work`` is synchronous SQLAlchemy on the connection it is given and does nothing but database
    work, so several stores' steps can share one transaction by calling their synchronous parts
    from one ``work``. On a SQLite file made by :func:`create_engine` see :class:`_SqliteRunner`;
    elsewhere it runs inside the event loop through the async driver (``run_sync``).
    """
    runner = _SQLITE_RUNNERS.get(engine)
    if runner is not None:
        return await runner.run(work)
    async with engine.begin() as connection:
        return await connection.run_sync(work)


class _SqliteRunner:
    """Runs whole transactions on a SQLite file with synchronous connections of its own.

    A transaction is a few hundred microseconds of CPU and never waits on this process: the
    event loop runs one ``work`` at a time, from BEGIN to COMMIT, so nothing of this process can
    hold the write lock meanwhile. So it runs right in the loop, on a connection whose busy
    timeout is zero. Handing it to a thread would cost more than the transaction itself (a thread
    hop measured 0.3 ms of CPU here; aiosqlite makes nine per transaction). Only when BEGIN finds
    the file locked (another process, or this process's aiosqlite engine in the middle of a
    transaction) does the work go to a database thread, which waits for the lock there (busy
    timeout) without stopping the loop.

    Checkpoints, the one step that syncs the disk, are kept off the loop too: the loop's
    connection does none itself (``wal_autocheckpoint=0``), and every ``_CHECKPOINT_EVERY``
    commits a passive checkpoint runs on the database thread; one that finds the WAL past
    ``_TRUNCATE_AFTER_FRAMES`` pages is followed by one that empties it, and transactions wait
    for that one on the same thread.
    """

    def __init__(self, url: sqlalchemy.URL, options: Mapping[str, Any]) -> None:
        self._url = url.set(drivername="sqlite+pysqlite")
        connect_args = {**options["connect_args"], "check_same_thread": False}  # closed elsewhere
        # Every use is a whole transaction (begin .. commit or rollback), so the pool's rollback
        # when a connection comes back would only repeat what is done.
        self._options = {**options, "connect_args": connect_args, "pool_reset_on_return": None}
        self._inline: Connection | None = None
        self._inline_engine: Engine | None = None
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._commits = 0
        self._checkpoint: asyncio.Future[int] | None = None
        self._truncating: asyncio.Future[int] | None = None

    async def run(self, work: Callable[[Connection], T]) -> T:
        if self._truncating is not None and not self._truncating.done():
            return await self._in_thread(work)  # after the checkpoint that empties the WAL
        connection = self._inline or self._connect_inline()
        try:
            transaction = connection.begin()
        except sqlalchemy.exc.OperationalError as exc:
            if not _is_busy(exc):
                self._drop_inline()
                raise
            return await self._in_thread(work)  # locked elsewhere: wait for it off the loop
        try:
            with transaction:
                result = work(connection)
        except BaseException:
            if connection.invalidated:
                self._drop_inline()
            raise
        self._commits += 1
        if self._commits % _CHECKPOINT_EVERY == 0:
            self._start_checkpoint()
        return result

    def _connect_inline(self) -> Connection:
        if self._inline_engine is None:
            self._inline_engine = self._new_engine(inline=True)
        self._inline = self._inline_engine.connect()
        return self._inline

    def _drop_inline(self) -> None:
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.close()

    def _new_engine(self, *, inline: bool) -> Engine:
        engine = sqlalchemy.create_engine(self._url, **self._options)
        event.listen(engine, "connect", _configure_sqlite_connection)
        if inline:
            event.listen(engine, "connect", _configure_inline_connection)
        event.listen(engine, "begin", _begin_sqlite_transaction)
        return engine

    async def _in_thread(self, work: Callable[[Connection], T]) -> T:
        executor = self._thread()
        # With the caller's context variables (a request id in a log line from the work).
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            executor, context.run, self._run_in_thread, work
        )

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._engine = self._new_engine(inline=False)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="erm-bot-sqlite")
        return self._executor

    def _run_in_thread(self, work: Callable[[Connection], T]) -> T:
        assert self._engine is not None
        with self._engine.begin() as connection:
            return work(connection)

    def _start_checkpoint(self) -> None:
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        executor = self._thread()
        loop = asyncio.get_running_loop()
        self._checkpoint = loop.run_in_executor(executor, self._wal_checkpoint, "PASSIVE")
        self._checkpoint.add_done_callback(self._after_passive)

    def _after_passive(self, passive: asyncio.Future[int]) -> None:
        # Under steady load a passive checkpoint never catches up with the commits made while it
        # runs, so the WAL is never started over and grows without end (400 MB in a benchmark).
        # A truncating one empties it, with the loop's transactions queued behind it on the
        # database thread (see run): in the loop, they would leave it no gap to take the lock.
        if passive.cancelled() or passive.result() < _TRUNCATE_AFTER_FRAMES:
            return
        if self._executor is None:  # closed meanwhile
            return
        loop = asyncio.get_running_loop()
        self._truncating = loop.run_in_executor(self._executor, self._wal_checkpoint, "TRUNCATE")
        self._checkpoint = self._truncating

    def _wal_checkpoint(self, mode: str) -> int:
        """Run one checkpoint; the pages the WAL held (0 when it failed)."""
        assert self._engine is not None
        try:
            # On the driver's connection: SQLAlchemy's would first begin a transaction.
            connection = self._engine.raw_connection()
            try:
                cursor = connection.cursor()
                _, frames, _ = cursor.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
                cursor.close()
                return int(frames)
            finally:
                connection.close()
        except Exception:
            # The next one catches up; SQLite also checkpoints when the last connection closes.
            log.warning("SQLite checkpoint failed", exc_info=True)
            return 0

    def close(self) -> None:
        """Close the connections and let the thread end; the next :meth:`run` starts afresh."""
        self._drop_inline()
        inline_engine, self._inline_engine = self._inline_engine, None
        if inline_engine is not None:
            inline_engine.dispose()
        executor, engine = self._executor, self._engine
        self._executor = self._engine = None
        if executor is not None and engine is not None:
            executor.submit(engine.dispose)  # after whatever is queued, in the thread
            executor.shutdown(wait=False)


_CHECKPOINT_EVERY = 200
_TRUNCATE_AFTER_FRAMES = 16384  # pages in the WAL (64 MB of 4 KB pages)
_SQLITE_RUNNERS: weakref.WeakKeyDictionary[AsyncEngine, _SqliteRunner] = weakref.WeakKeyDictionary()


def _configure_inline_connection(
    dbapi_connection: DBAPIConnection, connection_record: ConnectionPoolEntry
) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=0")  # locked: hand the work to the thread instead
        cursor.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run in the thread
    finally:
        cursor.close()


def _is_busy(exc: sqlalchemy.exc.OperationalError) -> bool:
    return "locked" in str(exc.orig) or "busy" in str(exc.orig)


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
    engine: AsyncEngine,
    version_locations: Sequence[str | os.PathLike[str]] = (),
    *,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Bring the schema to the newest revision of every branch; a no-op when it already is.

    Safe to call on every start, also from several processes at once. The whole upgrade is one
    transaction: if a revision fails, none of the upgrade is kept (:class:`MigrationError`).
    ``attributes`` reach the revisions as ``context.config.attributes`` (e.g. what a revision
    needs to encrypt existing rows).
    """
    config = _alembic_config(version_locations)
    config.attributes.update(attributes or {})
    async with engine.connect() as connection:
        await connection.run_sync(_upgrade, config)


def _upgrade(connection: Connection, config: Config) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Table rebuilds (batch mode) drop and recreate tables; with enforcement on, dropping a
        # referenced table would cascade or fail. SQLite ignores this pragma inside a
        # transaction, so it is set before BEGIN and checked with foreign_key_check before COMMIT.
        _sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
    before: tuple[str, ...] = ()
    try:
        with connection.begin():
            before = MigrationContext.configure(connection).get_current_heads()
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
            after = MigrationContext.configure(connection).get_current_heads()
    finally:
        if sqlite:
            _sqlite_pragma(connection, "PRAGMA foreign_keys=ON")
    if sqlite and after != before:
        # A revision may have replaced secrets kept in plain text: copy the new pages over the
        # old ones in the main file now and empty the WAL, rather than at some later checkpoint.
        _sqlite_pragma(connection, "PRAGMA wal_checkpoint(TRUNCATE)")


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
