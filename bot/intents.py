"""Code requests in flight ("intents"): a durable note, committed before a code mutation is sent.

A code request holds its item's lock while ERM works; if the process dies after the mutation was
sent, the lock expires and nothing in memory remains to say that ERM may hold a code nobody was
given. The intent is that memory: what was asked (distributor, item, type, days, the reference
tag ERM's description carries), who asked and where to tell them, and when. It is closed (with
its outcome) when the outcome is known: delivered, refused, or settled by reconciliation.

An open intent whose item lock is free or expired has lost its holder: a live holder keeps the
lock (renewed) until it closes the intent, and :meth:`IntentStore.close` releases the lock in the
same transaction. Whoever takes the lock next (the next request for the item, or the recovery
sweep in :mod:`bot.recovery`) reconciles it against ERM's history first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Connection,
    Index,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.base import BotBase, Store, aware, table_of
from bot.storage.codes import CodeStore
from bot.storage.locks import ItemLock
from erm import db


class IntentState(enum.StrEnum):
    OPEN = "open"
    DELIVERED = "delivered"  # ERM answered with the code, which was recorded and shown
    REFUSED = "refused"  # ERM refused, or nothing was sent (ERM unreachable before sending)
    OK = "ok"  # settled by reconciliation: the history shows the code
    UNCERTAIN = "uncertain"  # settled: the history could not tell
    NOT_ISSUED = "not_issued"  # settled: no code was made


_STATES = ", ".join(f"'{s.value}'" for s in IntentState)


class CodeIntentRow(BotBase):
    """One code request from just before its mutation is sent until its outcome is known.

    No secret here: the code itself lives only in ERM and (encrypted) in ``bot_issued_codes``.
    """

    __tablename__ = "bot_code_intents"
    __table_args__ = (
        CheckConstraint(f"state IN ({_STATES})", name="state_known"),
        CheckConstraint("days IS NULL OR days > 0", name="days_positive"),
        Index("ix_bot_code_intents_item", "distributor", "item_id", "state"),
        Index("ix_bot_code_intents_state", "state", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    distributor: Mapped[str] = mapped_column(String(32))
    item_id: Mapped[str] = mapped_column(String(64))
    oem_item_id: Mapped[str] = mapped_column(String(64))
    item_label: Mapped[str] = mapped_column(Text)
    code_type: Mapped[str] = mapped_column(String(16))
    days: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(String(16))
    request_key: Mapped[str] = mapped_column(String(255))
    approval_id: Mapped[str | None] = mapped_column(String(64))
    command: Mapped[str] = mapped_column(String(64))
    requester_platform: Mapped[str] = mapped_column(String(16))
    requester_user: Mapped[str] = mapped_column(String(64))
    requester_name: Mapped[str | None] = mapped_column(Text)
    chat_id: Mapped[str] = mapped_column(String(128))
    # Who is told the outcome privately (the notifier's send_private target on that platform).
    notify_user: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)


@dataclass(frozen=True, slots=True, kw_only=True)
class Intent:
    """A code request in flight, as recorded; ``id`` is set once stored."""

    distributor: str
    item_id: str
    oem_item_id: str
    item_label: str
    code_type: str  # CodeType value
    days: int | None = None
    note: str | None = None
    reference: str
    request_key: str
    approval_id: str | None = None
    command: str
    requester_platform: str
    requester_user: str
    requester_name: str | None = None
    chat_id: str = ""
    notify_user: str
    state: IntentState = IntentState.OPEN
    started_at: datetime
    closed_at: datetime | None = None
    id: int | None = None


_FIELDS = (
    "distributor",
    "item_id",
    "oem_item_id",
    "item_label",
    "code_type",
    "days",
    "note",
    "reference",
    "request_key",
    "approval_id",
    "command",
    "requester_platform",
    "requester_user",
    "requester_name",
    "chat_id",
    "notify_user",
    "started_at",
)


def _clean(value: str | None, limit: int | None = None) -> str | None:
    # Names and notes come from chat platforms: PostgreSQL refuses NUL in text.
    if value is None:
        return None
    value = value.replace("\x00", "\ufffd")
    return value[:limit] if limit else value


class IntentStore(Store):
    """Intents: opened before a code mutation, closed with its outcome."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        table = self._table = table_of(CodeIntentRow)
        self._insert = table.insert().returning(table.c.id)
        self._open_for = (
            select(table)
            .where(
                table.c.distributor == bindparam("p_distributor"),
                table.c.item_id == bindparam("p_item_id"),
                table.c.state == IntentState.OPEN.value,
            )
            .order_by(table.c.started_at, table.c.id)
        )
        self._close = (
            update(table)
            .where(table.c.id == bindparam("p_id"), table.c.state == IntentState.OPEN.value)
            .values(state=bindparam("p_state"), closed_at=bindparam("p_now"))
        )

    async def begin(self, intent: Intent) -> Intent | list[Intent]:
        """Store ``intent`` (open) and return it with its id, unless the item has open intents
        already: then store nothing and return those (their holders are gone; the caller holds
        the item lock). One transaction either way."""
        return await db.transaction(self._engine, lambda c: self.begin_in(c, intent))

    def begin_in(self, connection: Connection, intent: Intent) -> Intent | list[Intent]:
        """:meth:`begin` inside a transaction of the caller's (the one taking the item lock)."""
        if intent.days is not None and intent.days <= 0:
            raise ValueError("days must be positive (or None for a free or reset code)")
        the_item = {"p_distributor": intent.distributor, "p_item_id": intent.item_id}
        found = [_intent_of(row) for row in connection.execute(self._open_for, the_item)]
        if found:
            return found
        values: dict[str, Any] = {name: getattr(intent, name) for name in _FIELDS}
        values["started_at"] = aware(intent.started_at, "started_at")
        for name in ("item_label", "note", "requester_name"):
            values[name] = _clean(values[name])
        values["state"] = IntentState.OPEN.value
        row_id = connection.scalar(self._insert, values)
        assert row_id is not None
        return replace(intent, id=int(row_id), state=IntentState.OPEN)

    async def open_for(self, distributor: str, item_id: str) -> list[Intent]:
        """The item's open intents, oldest first."""
        the_item = {"p_distributor": distributor, "p_item_id": item_id}
        return await db.transaction(
            self._engine,
            lambda c: [_intent_of(row) for row in c.execute(self._open_for, the_item)],
        )

    async def open_intents(self, *, limit: int = 100) -> list[Intent]:
        """Every open intent (oldest first, at most ``limit``): what the recovery sweep looks at."""
        table = self._table
        statement = (
            select(table)
            .where(table.c.state == IntentState.OPEN.value)
            .order_by(table.c.started_at, table.c.id)
            .limit(limit)
        )
        return await db.transaction(
            self._engine, lambda c: [_intent_of(row) for row in c.execute(statement)]
        )

    async def close(
        self,
        intent: Intent,
        state: IntentState,
        *,
        now: datetime,
        codes: CodeStore | None = None,
        release: ItemLock | None = None,
    ) -> bool:
        """Close ``intent`` with its outcome; False if it was closed already (by a recovery).

        ``release`` (with ``codes``): the item lock, given back in the same transaction, so the
        lock is never free while the intent is open and its holder alive.
        """

        def work(connection: Connection) -> bool:
            return self.close_in(connection, intent, state, now=now)

        if release is None or codes is None:
            return await db.transaction(self._engine, work)
        return await codes.release(release, also=work)

    def close_in(
        self, connection: Connection, intent: Intent, state: IntentState, *, now: datetime
    ) -> bool:
        """:meth:`close` inside a transaction of the caller's (e.g. the one recording the code)."""
        if state is IntentState.OPEN:
            raise ValueError("an intent is closed with an outcome, not 'open'")
        assert intent.id is not None, "only a stored intent can be closed"
        values = {"p_id": intent.id, "p_state": state.value, "p_now": aware(now, "now")}
        return bool(connection.execute(self._close, values).rowcount == 1)

    async def purge(self, before: datetime) -> int:
        """Forget intents closed before ``before`` (open ones are kept whatever their age)."""
        table = self._table
        statement = delete(table).where(
            table.c.state != IntentState.OPEN.value,
            table.c.closed_at < aware(before, "before"),
        )
        return await db.transaction(self._engine, lambda c: int(c.execute(statement).rowcount))


def _intent_of(row: Any) -> Intent:
    mapping = row._mapping
    return Intent(
        id=mapping["id"],
        state=IntentState(mapping["state"]),
        closed_at=mapping["closed_at"],
        **{name: mapping[name] for name in _FIELDS},
    )
