"""Issued codes and item locks: a per-(distributor, item) lock row serialises code requests for
one item; issued codes are recorded (sealed: :mod:`bot.code_secrets`) so a repeat within minutes
shows the same code instead of a new one."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Connection,
    CursorResult,
    Index,
    Integer,
    Select,
    String,
    Text,
    bindparam,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.code_secrets import rotate_codes, seal, unseal
from bot.storage.base import (
    CODE_TAIL,
    MAX_CODE_TYPE,
    MAX_DISTRIBUTOR,
    MAX_ITEM_ID,
    MAX_KEY,
    MAX_USER_ID,
    BotBase,
    Clock,
    aware,
    checked_text,
    table_of,
    utcnow,
)
from bot.storage.code_records import RECORD_FIELDS, IssuedCodeRecord, RecentQuery
from bot.storage.locks import ItemLock, ItemLocks
from erm import db
from erm.models import CodeType
from erm.secret_box import SecretBox

log = logging.getLogger("bot.storage")
T = TypeVar("T")


class IssuedCodeRow(BotBase):
    """A code the bot issued. No foreign key: the record outlives the distributor's removal."""

    __tablename__ = "bot_issued_codes"
    __table_args__ = (
        CheckConstraint("days IS NULL OR days > 0", name="days_positive"),
        Index("ix_bot_issued_codes_item", "distributor", "item_id", "issued_at"),
        Index("ix_bot_issued_codes_issuer", "issued_by_platform", "issued_by_user", "issued_at"),
        Index("ix_bot_issued_codes_request_key", "request_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    distributor: Mapped[str] = mapped_column(String(MAX_DISTRIBUTOR))
    item_id: Mapped[str] = mapped_column(String(MAX_ITEM_ID))
    item_label: Mapped[str] = mapped_column(Text)
    client_name: Mapped[str | None] = mapped_column(Text)
    code_type: Mapped[str] = mapped_column(String(MAX_CODE_TYPE))
    days: Mapped[int | None] = mapped_column(Integer)
    # The code (decimal and hex forms) as a SecretBox envelope; see the module docstring.
    code_secret: Mapped[str] = mapped_column(Text)
    code_last3: Mapped[str] = mapped_column(String(CODE_TAIL))
    issued_by_platform: Mapped[str] = mapped_column(String(16))
    issued_by_user: Mapped[str] = mapped_column(String(MAX_USER_ID))
    issued_by_name: Mapped[str] = mapped_column(Text)
    request_key: Mapped[str | None] = mapped_column(String(MAX_KEY))
    note: Mapped[str | None] = mapped_column(Text)
    reconciled: Mapped[bool] = mapped_column(Boolean)
    issued_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    approval_id: Mapped[str | None] = mapped_column(String(64))


class CodeStore(ItemLocks):
    """Issued codes, and the per-item lock that keeps two code requests for one item apart."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        box: SecretBox,
        clock: Clock = utcnow,
        poll_interval: float = 0.05,
    ) -> None:
        super().__init__(engine, clock=clock, poll_interval=poll_interval)
        self._box = box
        self._codes = codes = table_of(IssuedCodeRow)
        self._record = codes.insert().returning(codes.c.id)
        recent = select(codes).where(
            codes.c.distributor == bindparam("p_distributor"),
            codes.c.item_id == bindparam("p_item_id"),
            codes.c.code_type == bindparam("p_code_type"),
            codes.c.issued_at >= bindparam("p_since", type_=db.UtcDateTime),
        )
        # "days = NULL" matches nothing, so free and reset codes (no days) have their own query.
        self._recent_days = self._newest_first(recent.where(codes.c.days == bindparam("p_days")))
        self._recent_no_days = self._newest_first(recent.where(codes.c.days.is_(None)))

    async def issued_for(self, request_key: str) -> IssuedCodeRecord | None:
        """The code recorded for a request key, if any: a recovery must not record it twice."""
        table = self._codes
        statement = select(table).where(table.c.request_key == request_key)
        return await self._newest(statement)

    async def record_issue(
        self,
        record: IssuedCodeRecord,
        *,
        release: ItemLock | None = None,
        also: Callable[[Connection], object] | None = None,
    ) -> int:
        """Keep a code the bot issued; returns its row id.

        ``release``: the item lock held while issuing it, given back in the same transaction.
        ``also``: more work for that transaction (closing the code's intent): one commit.
        """
        values = self.record_values(record)
        row_id = await db.transaction(
            self._engine, lambda c: self.record_in(c, values, release=release, also=also)
        )
        if release is not None:
            release.released = True
        return row_id

    def record_values(self, record: IssuedCodeRecord) -> dict[str, object]:
        """A code record checked and sealed, ready for :meth:`record_in` (outside a transaction:
        sealing is CPU work that need not hold one open)."""
        if record.days is not None and record.days <= 0:
            raise ValueError("days must be positive (or None for a free or reset code)")
        values = {name: getattr(record, name) for name in RECORD_FIELDS}
        values["code_secret"] = seal(
            self._box, record.distributor, record.item_id, record.code_dec, record.code_hex
        )
        values["code_last3"] = record.code_last3
        values["issued_at"] = aware(record.issued_at, "issued_at")
        for name in ("item_label", "client_name", "issued_by_name", "note"):
            # Names come from ERM and chat platforms: PostgreSQL refuses NUL in text.
            if isinstance(values[name], str):
                values[name] = values[name].replace("\x00", "\ufffd")
        checked_text(record.distributor, "a distributor", MAX_DISTRIBUTOR)
        checked_text(record.item_id, "an item id", MAX_ITEM_ID)
        checked_text(record.code_type, "a code type", MAX_CODE_TYPE)
        return values

    def record_in(
        self,
        connection: Connection,
        values: Mapping[str, object],
        *,
        release: ItemLock | None = None,
        also: Callable[[Connection], object] | None = None,
    ) -> int:
        """:meth:`record_issue` inside a transaction of the caller's (the one that stores the
        request's reply and audit row), with :meth:`record_values`' result."""
        row_id = connection.scalar(self._record, values)
        assert row_id is not None
        if also is not None:
            also(connection)
        if release is not None:
            self._unlock_in(connection, release)
        return int(row_id)

    async def recent_issue(
        self,
        distributor: str,
        item_id: str,
        code_type: str,
        days: int | None,
        *,
        since: datetime,
    ) -> IssuedCodeRecord | None:
        """The newest code of this type (and days) issued for the item at or after ``since``."""
        query = RecentQuery(code_type, days, since)
        return await db.transaction(
            self._engine, lambda c: self._recent_in(c, distributor, item_id, query)
        )

    def _recent_in(
        self, connection: Connection, distributor: str, item_id: str, query: RecentQuery
    ) -> IssuedCodeRecord | None:
        values: dict[str, Any] = {
            "p_distributor": distributor,
            "p_item_id": item_id,
            "p_code_type": query.code_type,
            "p_since": aware(query.since, "since"),
        }
        if query.days is None:
            return self._record_of(connection.execute(self._recent_no_days, values))
        values["p_days"] = query.days
        return self._record_of(connection.execute(self._recent_days, values))

    async def last_issue(self, distributor: str, item_id: str) -> IssuedCodeRecord | None:
        """The newest code the bot issued for the item (what ``/resend`` shows), if any."""
        table = self._codes
        statement = select(table).where(
            table.c.distributor == distributor, table.c.item_id == item_id
        )
        return await self._newest(statement)

    async def recent_items(
        self, distributor: str, platform: str, user_id: str, *, limit: int = 5
    ) -> list[tuple[str, str]]:
        """The items the user was issued codes for at the distributor, newest first: (item id,
        label) pairs, each item once (what ``/code`` alone offers). No code is unsealed."""
        table = self._codes
        statement = (
            select(table.c.item_id, table.c.item_label)
            .where(
                table.c.issued_by_platform == platform,
                table.c.issued_by_user == user_id,
                table.c.distributor == distributor,
            )
            .order_by(table.c.issued_at.desc(), table.c.id.desc())
            .limit(limit * 10)  # bounded: a busy agent's last codes repeat a few items
        )
        rows = await db.transaction(self._engine, lambda c: c.execute(statement).all())
        items: dict[str, str] = {}
        for item_id, label in rows:
            items.setdefault(item_id, label)
        return list(items.items())[:limit]

    async def last_days(self, distributor: str, item_id: str) -> int | None:
        """The day count of the newest days code the bot issued for the item, if any."""
        table = self._codes
        statement = (
            select(table.c.days)
            .where(
                table.c.distributor == distributor,
                table.c.item_id == item_id,
                table.c.code_type == CodeType.DAYS.value,
            )
            .order_by(table.c.issued_at.desc(), table.c.id.desc())
            .limit(1)
        )
        days = await db.transaction(self._engine, lambda c: c.scalar(statement))
        return int(days) if days else None

    async def _newest(self, statement: Select[Any]) -> IssuedCodeRecord | None:
        newest = self._newest_first(statement)
        return await db.transaction(self._engine, lambda c: self._record_of(c.execute(newest)))

    def _newest_first(self, statement: Select[Any]) -> Select[Any]:
        table = self._codes
        return statement.order_by(table.c.issued_at.desc(), table.c.id.desc()).limit(1)

    def _record_of(self, result: CursorResult[Any]) -> IssuedCodeRecord | None:
        row = result.mappings().one_or_none()
        if row is None:
            return None
        code_dec, code_hex = unseal(self._box, row)
        return IssuedCodeRecord(
            id=row["id"],
            code_dec=code_dec,
            code_hex=code_hex,
            **{name: row[name] for name in RECORD_FIELDS},
        )

    async def rotate(self) -> int:
        """Re-encrypt every issued code still under an older key (see :func:`rotate_codes`)."""
        return await rotate_codes(self._engine, self._codes, self._box)

    async def count_issued_by(self, platform: str, user_id: str, since: datetime) -> int:
        """How many codes the user was issued at or after ``since``."""
        table = self._codes
        statement = select(func.count()).where(
            table.c.issued_by_platform == platform,
            table.c.issued_by_user == user_id,
            table.c.issued_at >= aware(since, "since"),
        )
        return await db.transaction(self._engine, lambda c: int(c.scalar(statement) or 0))
