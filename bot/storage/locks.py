"""Item locks: one code request per item at a time, across processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from sqlalchemy import (
    Connection,
    String,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.errors import BusyError
from bot.storage.base import (
    MAX_DISTRIBUTOR,
    MAX_HOLDER,
    MAX_ITEM_ID,
    BotBase,
    Clock,
    Store,
    checked_text,
    dialect_insert,
    table_of,
    utcnow,
)
from bot.storage.code_records import IssuedCodeRecord, RecentQuery
from erm import db

log = logging.getLogger("bot.storage")
T = TypeVar("T")


class ItemLockRow(BotBase):
    """Who is issuing a code for an item right now, until when."""

    __tablename__ = "bot_item_locks"

    distributor: Mapped[str] = mapped_column(String(MAX_DISTRIBUTOR), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(MAX_ITEM_ID), primary_key=True)
    holder: Mapped[str] = mapped_column(String(MAX_HOLDER))
    token: Mapped[str] = mapped_column(String(32))
    acquired_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(db.UtcDateTime)


class LockBusyError(BusyError):
    """Another code request for the same item held its lock for longer than we could wait."""

    def __init__(
        self, distributor: str, item_id: str, holder: str | None, since: datetime | None
    ) -> None:
        super().__init__(
            "Another code request for this item is still in progress. "
            "Wait a moment, then check /resend before asking again."
        )
        self.distributor = distributor
        self.item_id = item_id
        self.holder = holder  # the other request's holder id (not shown to users)
        self.since = since


@dataclass(slots=True, kw_only=True)
class ItemLock:
    """A held item lock: valid until ``expires_at`` unless released earlier.

    ``recent`` is what the ``recent`` query given to :meth:`CodeStore.item_lock` found, read in
    the transaction that took the lock; ``also`` is what its ``also`` work returned there (None
    when it did not run). ``released`` turns true once the lock is given back.
    """

    distributor: str
    item_id: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
    token: str = field(repr=False)
    recent: IssuedCodeRecord | None = None
    also: object = None
    released: bool = False
    # Handed on (CodeStore.keep): the ``async with`` body ends without giving the lock back.
    kept: bool = False


class ItemLocks(Store):
    """The per-item lock that keeps two code requests for one item apart (the base of
    :class:`bot.storage.codes.CodeStore`): a row per (distributor, item), taken by one atomic
    upsert, renewed while its holder lives, and taken over once expired."""

    def __init__(
        self, engine: AsyncEngine, *, clock: Clock = utcnow, poll_interval: float = 0.05
    ) -> None:
        super().__init__(engine)
        self._clock = clock
        self._poll_interval = poll_interval
        self._locks = table_of(ItemLockRow)
        locks = self._locks
        insert = dialect_insert(engine, locks).values(
            distributor=bindparam("p_distributor"),
            item_id=bindparam("p_item_id"),
            holder=bindparam("p_holder"),
            token=bindparam("p_token"),
            acquired_at=bindparam("p_now"),
            expires_at=bindparam("p_expires"),
        )
        # One atomic statement: insert a new lock, or take over an expired one; either way the
        # row comes back with our token. A live lock is left alone and nothing comes back.
        self._lock = insert.on_conflict_do_update(
            index_elements=["distributor", "item_id"],
            set_={
                "holder": insert.excluded.holder,
                "token": insert.excluded.token,
                "acquired_at": insert.excluded.acquired_at,
                "expires_at": insert.excluded.expires_at,
            },
            where=locks.c.expires_at <= insert.excluded.acquired_at,
        ).returning(locks.c.token)
        the_lock = (
            locks.c.distributor == bindparam("p_distributor"),
            locks.c.item_id == bindparam("p_item_id"),
        )
        self._holder = select(locks.c.holder, locks.c.acquired_at).where(*the_lock)
        self._unlock_statement = delete(locks).where(
            *the_lock, locks.c.token == bindparam("p_token")
        )
        self._renew_statement = (
            update(locks)
            .where(*the_lock, locks.c.token == bindparam("p_token"))
            .values(expires_at=bindparam("p_expires"))
        )

    def _recent_in(
        self, connection: Connection, distributor: str, item_id: str, query: RecentQuery
    ) -> IssuedCodeRecord | None:
        """The code issued moments ago that a new lock holder is shown instead (CodeStore)."""
        raise NotImplementedError

    @asynccontextmanager
    async def item_lock(
        self,
        distributor: str,
        item_id: str,
        holder: str,
        *,
        ttl: float = 60.0,
        wait: float = 10.0,
        recent: RecentQuery | None = None,
        also: Callable[[Connection], object] | None = None,
    ) -> AsyncIterator[ItemLock]:
        """Hold the exclusive lock of (distributor, item) for the ``async with`` body.

        Waits up to ``wait`` seconds for another holder to leave, then raises
        :class:`LockBusyError`. A lock not released within ``ttl`` seconds (its process died) is
        taken over by the next one to ask, so ``ttl`` must outlast the work inside (an ERM code
        request takes at most its total timeout, 20 s by default). ``holder`` names who holds it
        (e.g. the request key), for diagnostics; the lock is not re-entrant. With ``recent``, the
        newest matching code (:meth:`recent_issue`) is read in the same transaction, into
        ``ItemLock.recent``. ``also`` is more work for that transaction when the lock is taken and
        ``recent`` found nothing (storing the request's intent: one commit, not two); its result
        goes into ``ItemLock.also``. ``record_issue(..., release=lock)`` gives the lock back with
        the record; otherwise it is given back when the body ends.
        """
        if ttl <= 0 or wait < 0:
            raise ValueError("ttl must be positive and wait not negative")
        distributor = checked_text(distributor, "a distributor", MAX_DISTRIBUTOR)
        item_id = checked_text(item_id, "an item id", MAX_ITEM_ID)
        holder = holder[:MAX_HOLDER] or "?"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            lock = await self._try_lock(distributor, item_id, holder, ttl, recent, also)
            if isinstance(lock, ItemLock):
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                other_holder, since = lock
                raise LockBusyError(distributor, item_id, other_holder, since)
            await asyncio.sleep(min(self._poll_interval, remaining))
        try:
            async with self._renewing(lock, ttl):
                yield lock
        finally:
            if not lock.released and not lock.kept:
                await self._unlock(lock)

    def keep(self, lock: ItemLock) -> None:
        """Let the ``async with`` body end without giving ``lock`` back: work that goes on in the
        background (settling a code whose answer was lost) holds it with :meth:`holding`."""
        lock.kept = True

    @asynccontextmanager
    async def holding(self, lock: ItemLock, *, ttl: float) -> AsyncIterator[ItemLock]:
        """Go on holding a kept lock, renewed, until the body ends; then give it back."""
        try:
            async with self._renewing(lock, ttl):
                yield lock
        finally:
            if not lock.released:
                await self._unlock(lock)

    @asynccontextmanager
    async def _renewing(self, lock: ItemLock, ttl: float) -> AsyncIterator[None]:
        """Renew ``lock`` every third of its ``ttl`` while the body runs: the lock outlives a slow
        ERM as long as its holder lives, and expires ``ttl`` after a holder died."""
        renewer = asyncio.create_task(self._renew_every(lock, ttl), name="item-lock-renewal")
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew_every(self, lock: ItemLock, ttl: float) -> None:
        while not lock.released:
            await asyncio.sleep(ttl / 3)
            expires = self._clock() + timedelta(seconds=ttl)
            values = {
                "p_distributor": lock.distributor,
                "p_item_id": lock.item_id,
                "p_token": lock.token,
                "p_expires": expires,
            }
            try:
                renewed = await db.transaction(self._engine, partial(self._renew_in, values))
            except Exception:
                log.warning("could not renew an item lock; trying again", exc_info=True)
                continue
            if renewed != 1:
                log.warning(
                    "item lock of %s/%s was taken over while held", lock.distributor, lock.item_id
                )
                return
            lock.expires_at = expires

    def _renew_in(self, values: Mapping[str, object], connection: Connection) -> int:
        return connection.execute(self._renew_statement, values).rowcount

    async def _try_lock(
        self,
        distributor: str,
        item_id: str,
        holder: str,
        ttl: float,
        recent: RecentQuery | None,
        also: Callable[[Connection], object] | None = None,
    ) -> ItemLock | tuple[str | None, datetime | None]:
        """The lock if it was free or expired, else who holds it since when."""
        now = self._clock()
        lock = ItemLock(
            distributor=distributor,
            item_id=item_id,
            holder=holder,
            acquired_at=now,
            expires_at=now + timedelta(seconds=ttl),
            token=secrets.token_hex(16),
        )
        the_lock = {"p_distributor": distributor, "p_item_id": item_id}
        values = {
            **the_lock,
            "p_holder": holder,
            "p_token": lock.token,
            "p_now": lock.acquired_at,
            "p_expires": lock.expires_at,
        }

        def work(connection: Connection) -> ItemLock | tuple[str | None, datetime | None]:
            if connection.scalar(self._lock, values) == lock.token:
                if recent is not None:
                    lock.recent = self._recent_in(connection, distributor, item_id, recent)
                if also is not None and lock.recent is None:
                    lock.also = also(connection)
                return lock
            row = connection.execute(self._holder, the_lock).one_or_none()
            return (None, None) if row is None else (row[0], row[1])

        return await db.transaction(self._engine, work)

    def _unlock_in(self, connection: Connection, lock: ItemLock) -> None:
        values = {
            "p_distributor": lock.distributor,
            "p_item_id": lock.item_id,
            "p_token": lock.token,
        }
        if connection.execute(self._unlock_statement, values).rowcount != 1:
            log.warning(
                "item lock of %s/%s expired while held (holder %.60r); it was taken over",
                lock.distributor,
                lock.item_id,
                lock.holder,
            )

    async def _unlock(self, lock: ItemLock) -> None:
        try:
            await db.transaction(self._engine, lambda c: self._unlock_in(c, lock))
        except Exception:
            # The work inside is done (maybe a code issued): failing now would hide that. The lock
            # expires by itself at expires_at.
            log.warning("could not release an item lock; it expires by itself", exc_info=True)
            return
        lock.released = True

    async def release(self, lock: ItemLock, *, also: Callable[[Connection], T]) -> T:
        """Give ``lock`` back in the transaction that runs ``also`` (closing the work it guarded,
        e.g. a code intent), so the lock is never free while that work looks unfinished."""

        def work(connection: Connection) -> T:
            result = also(connection)
            self._unlock_in(connection, lock)
            return result

        result = await db.transaction(self._engine, work)
        lock.released = True
        return result
