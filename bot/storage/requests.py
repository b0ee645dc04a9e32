"""Request claims (idempotency): a platform request key is claimed once (primary key + ``INSERT
... ON CONFLICT DO NOTHING``); a redelivery gets the stored reply instead of running again."""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Connection,
    Index,
    String,
    Text,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.code_secrets import open_reply, seal_reply
from bot.storage.base import (
    MAX_FINGERPRINT,
    MAX_KEY,
    BotBase,
    Clock,
    Store,
    aware,
    checked_text,
    dialect_insert,
    step,
    table_of,
    utcnow,
)
from erm import db
from erm.secret_box import SecretBox

log = logging.getLogger("bot.storage")


class RequestRow(BotBase):
    """A claimed platform request key: running, or done with the reply it got."""

    __tablename__ = "bot_requests"
    __table_args__ = (
        CheckConstraint(
            "(state = 'running' AND reply IS NULL) OR (state = 'done' AND reply IS NOT NULL)",
            name="state_known",
        ),
        Index("ix_bot_requests_claimed_at", "claimed_at"),
    )

    key: Mapped[str] = mapped_column(String(MAX_KEY), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(MAX_FINGERPRINT))
    state: Mapped[str] = mapped_column(String(8))
    reply: Mapped[str | None] = mapped_column(Text)  # JSON
    claimed_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)


class ClaimStatus(enum.StrEnum):
    NEW = "new"  # the key is now ours: run the command, then finish() or abandon()
    DONE = "done"  # it ran before: send ``Claim.reply`` again, run nothing
    RUNNING = "running"  # someone else is running it now (or crashed while running it)
    MISMATCH = "mismatch"  # the key was used for a different request: refuse


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to :meth:`RequestStore.claim`."""

    status: ClaimStatus
    reply: dict[str, Any] | None = None  # DONE only
    claimed_at: datetime | None = None  # when the key was first claimed (None for MISMATCH)
    stale: bool = False  # RUNNING for longer than the store's ``stale_after``


_RUNNING = "running"


_DONE = "done"


class RequestStore(Store):
    """Claims of platform request keys, so a redelivered or repeated request runs at most once.

    Design as in platforms.md §3.4 (IETF Idempotency-Key draft, Stripe): the key is unique in the
    database and stored with a fingerprint of the request and, once done, the reply.

    A claim that stays RUNNING past ``stale_after`` is reported with ``stale=True`` but is never
    handed out again: the process that claimed it may have issued a code before it died, and running
    a code request twice is the one thing this store exists to prevent. Such a key stays RUNNING
    until :meth:`purge` removes it (after ``retention``); the user sends a new request (a new key)
    and, for codes, ``/resend`` and the item's history show whether the first one got through.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        box: SecretBox,
        stale_after: timedelta = timedelta(minutes=5),
        retention: timedelta = timedelta(hours=24),
        clock: Clock = utcnow,
    ) -> None:
        super().__init__(engine)
        self._box = box  # seals the codes of stored replies (bot.code_secrets.seal_reply)
        self._table = table_of(RequestRow)
        self._clock = clock
        self.stale_after = stale_after
        self.retention = retention
        table = self._table
        self._insert = (
            dialect_insert(engine, table)
            .values(
                key=bindparam("p_key"),
                fingerprint=bindparam("p_fingerprint"),
                state=_RUNNING,
                claimed_at=bindparam("p_now"),
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(table.c.key)
        )
        self._existing = select(
            table.c.fingerprint, table.c.state, table.c.reply, table.c.claimed_at
        ).where(table.c.key == bindparam("p_key"))
        self._finish = (
            update(table)
            .where(table.c.key == bindparam("p_key"), table.c.state == _RUNNING)
            .values(state=_DONE, reply=bindparam("p_reply"), finished_at=bindparam("p_now"))
        )

    async def claim(self, key: str, fingerprint: str, *, now: datetime | None = None) -> Claim:
        """Claim ``key`` for a request with ``fingerprint``; see :class:`ClaimStatus`."""
        moment = aware(now if now is not None else self._clock(), "now")
        # The existing row can vanish between the two statements (abandoned, purged) on
        # PostgreSQL; then the key is free again and the insert is tried once more.
        for _ in range(3):
            claim = await db.transaction(
                self._engine, lambda connection: self.claim_in(connection, key, fingerprint, moment)
            )
            if claim is not None:
                return claim
        raise RuntimeError("the request key kept disappearing while it was being claimed")

    def claim_in(
        self, connection: Connection, key: str, fingerprint: str, now: datetime
    ) -> Claim | None:
        """:meth:`claim` inside a transaction; None when the key vanished meanwhile (try again in
        a new transaction)."""
        key = checked_text(key, "a request key", MAX_KEY)
        fingerprint = checked_text(fingerprint, "a request fingerprint", MAX_FINGERPRINT)
        values = {"p_key": key, "p_fingerprint": fingerprint, "p_now": now}
        if connection.scalar(self._insert, values) is not None:
            return Claim(ClaimStatus.NEW, claimed_at=now)
        row = connection.execute(self._existing, {"p_key": key}).one_or_none()
        if row is None:
            return None
        stored_fingerprint, state, reply, claimed_at = row
        if stored_fingerprint != fingerprint:
            return Claim(ClaimStatus.MISMATCH)
        if state == _DONE and reply is not None:
            stored = open_reply(self._box, key, json.loads(reply))
            return Claim(ClaimStatus.DONE, reply=stored, claimed_at=claimed_at)
        stale = now - claimed_at > self.stale_after
        return Claim(ClaimStatus.RUNNING, claimed_at=claimed_at, stale=stale)

    @step
    def finish(
        self,
        connection: Connection,
        key: str,
        reply: Mapping[str, Any],
        now: datetime | None = None,
    ) -> bool:
        """Store the reply of a claimed request; a later claim of ``key`` gets it back.

        Returns False (and logs a warning) when ``key`` has no running claim (finished, abandoned
        or purged already): finishing comes after the work is done and must not undo its success.
        ``reply`` must be JSON-able (a ``TypeError`` / ``ValueError`` says otherwise).
        """
        now = aware(now if now is not None else self._clock(), "now")
        payload = json.dumps(
            seal_reply(self._box, key, dict(reply)),
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )
        values = {"p_key": key, "p_reply": payload, "p_now": now}
        if connection.execute(self._finish, values).rowcount != 1:
            log.warning("request key %.60r had no running claim to finish", key)
            return False
        return True

    async def abandon(self, key: str) -> bool:
        """Forget a running claim whose run failed before doing anything irreversible.

        The next delivery of ``key`` runs afresh. Done claims are kept. True if one was removed.
        """
        table = self._table
        statement = delete(table).where(table.c.key == key, table.c.state == _RUNNING)
        return await db.transaction(self._engine, lambda c: bool(c.execute(statement).rowcount))

    async def purge(self, older_than: datetime | None = None) -> int:
        """Forget claims made before ``older_than`` (default: ``retention`` ago); rows removed.

        Running claims that old are removed too: nothing runs for a day.
        """
        cutoff = older_than if older_than is not None else self._clock() - self.retention
        table = self._table
        statement = delete(table).where(table.c.claimed_at < aware(cutoff, "older_than"))
        return await db.transaction(self._engine, lambda c: int(c.execute(statement).rowcount))
