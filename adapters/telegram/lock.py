"""Only one process polls Telegram: a PostgreSQL advisory lock, retried until it is free.

Two pollers of one bot get 409 Conflict from Telegram and steal updates from each other, so with
several bot processes on one PostgreSQL database the one holding a session-level advisory lock
polls and the others retry every ``interval`` seconds. The lock lives on a dedicated connection:
when its holder dies, PostgreSQL ends the session, frees the lock, and the next try of another
process wins it, within seconds. The holder checks its connection on every round and stops
polling as soon as the connection is gone (someone else may hold the lock by then).

With SQLite there is one process by design, so :class:`LocalLock` always succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)


class PollingLock(Protocol):
    async def acquire(self) -> bool:
        """Try once; True when this process holds the lock now."""

    async def check(self) -> bool:
        """True while the lock is still held (the connection holding it is alive)."""

    async def release(self) -> None:
        """Give the lock up (a no-op when not held)."""


class LocalLock:
    """SQLite: a single process, nothing to coordinate."""

    async def acquire(self) -> bool:
        return True

    async def check(self) -> bool:
        return True

    async def release(self) -> None:
        return None


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    digest = hashlib.sha256(f"erm-bot:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock held on its own connection."""

    def __init__(self, engine: AsyncEngine, name: str, *, timeout: float = 5.0) -> None:
        self._engine = engine
        self.key = lock_key(name)
        self.timeout = timeout
        self._connection: AsyncConnection | None = None
        self._held = False

    async def acquire(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout):
                connection = await self._connect()
                got = await connection.scalar(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
                )
        except Exception as exc:
            log.warning("cannot try the Telegram polling lock: %s", type(exc).__name__)
            await self._drop()
            return False
        self._held = bool(got)
        return self._held

    async def check(self) -> bool:
        if not self._held or self._connection is None:
            return False
        try:
            async with asyncio.timeout(self.timeout):
                await self._connection.scalar(text("SELECT 1"))
        except Exception as exc:
            log.warning("the Telegram polling lock's connection failed: %s", type(exc).__name__)
            await self._drop()
            return False
        return True

    async def release(self) -> None:
        connection, held = self._connection, self._held
        self._held = False
        if connection is None:
            return
        if held:
            try:
                async with asyncio.timeout(self.timeout):
                    await connection.scalar(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": self.key}
                    )
            except Exception as exc:
                log.warning("cannot release the Telegram polling lock: %s", type(exc).__name__)
                await self._drop()  # closing the session frees it
                return
        self._connection = None
        with contextlib.suppress(Exception):
            await connection.close()

    async def _connect(self) -> AsyncConnection:
        if self._connection is None:
            connection = await self._engine.connect()
            # No transaction held open between checks; the lock belongs to the session.
            self._connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        return self._connection

    async def _drop(self) -> None:
        """Forget the connection for good (never back into the pool with a lock on it)."""
        connection, self._connection, self._held = self._connection, None, False
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()


def polling_lock(engine: AsyncEngine, name: str) -> PollingLock:
    """The lock for ``engine``'s database: advisory on PostgreSQL, local otherwise."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine, name)
    return LocalLock()


class Leader:
    """Runs ``begin`` once the lock is won and ``end`` when it is lost or on :meth:`stop`."""

    def __init__(
        self,
        lock: PollingLock,
        begin: Callable[[], Awaitable[None]],
        end: Callable[[], Awaitable[None]],
        *,
        interval: float = 1.0,
    ) -> None:
        self.lock = lock
        self._begin = begin
        self._end = end
        self.interval = interval
        self.leading = False
        self.terms = 0  # how many times this process won the lock
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="telegram-polling-leader")

    async def stop(self) -> None:
        """Stop trying; if leading, run ``end`` (the lock stays held until :meth:`release`)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def release(self) -> None:
        await self.lock.release()

    async def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                if self.leading:
                    if not await self.lock.check():
                        log.warning("lost the Telegram polling lock: polling stops here")
                        await self._resign()
                elif await self.lock.acquire():
                    await self._lead()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._stopping.wait()
        finally:
            if self.leading:
                await self._resign()

    async def _lead(self) -> None:
        self.leading = True
        self.terms += 1
        log.info("holding the Telegram polling lock: polling starts")
        try:
            await self._begin()
        except Exception:
            log.exception("starting to poll Telegram failed; trying again")
            self.leading = False
            with contextlib.suppress(Exception):
                await self._end()
            await self.lock.release()

    async def _resign(self) -> None:
        # Leading until polling has stopped: a getUpdates may still go out while it stops.
        try:
            await self._end()
        except Exception:
            log.exception("stopping Telegram polling failed")
        finally:
            self.leading = False
