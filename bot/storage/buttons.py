"""Server-side state behind buttons.

Chat platforms carry little in a button (64 bytes of callback data on some, an unverified value
on others). So a button carries only a short random id; what it does, for whom and until when
lives here. Buttons of one message form a *card*; a card is decided at most once (compare-and-set
in the database), so the first of two clicks, processes or platforms wins and the others are told
so."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Index,
    String,
    Text,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.base import BotBase, Store, aware, step, table_of
from erm import db

BUTTON_ID_BYTES = 9  # 12 characters of URL-safe base64


class ButtonRow(BotBase):
    __tablename__ = "bot_buttons"
    __table_args__ = (
        Index("ix_bot_buttons_card", "card"),
        Index("ix_bot_buttons_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    card: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    payload: Mapped[str] = mapped_column(Text)  # JSON
    owner: Mapped[str | None] = mapped_column(String(96))  # platform:user_id of the card's user
    created_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    decision: Mapped[str | None] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(160))
    decided_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)


@dataclass(frozen=True, slots=True)
class StoredButton:
    id: str
    card: str
    action: str
    payload: dict[str, Any]
    owner: str | None
    expires_at: datetime
    decision: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What :meth:`ButtonStore.decide` did: ``won`` is False if the card was decided before."""

    won: bool
    decision: str
    decided_by: str
    decided_at: datetime


class ButtonStore(Store):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._table = table_of(ButtonRow)

    @step
    def save(
        self,
        connection: Connection,
        buttons: Sequence[tuple[str, dict[str, Any]]],
        *,
        owner: str | None,
        now: datetime,
        ttl: timedelta,
    ) -> list[str]:
        """Store one card's buttons as (action, payload); returns their ids, in order."""
        now = aware(now, "now")
        card = secrets.token_urlsafe(BUTTON_ID_BYTES)
        ids = [secrets.token_urlsafe(BUTTON_ID_BYTES) for _ in buttons]
        rows = [
            {
                "id": button_id,
                "card": card,
                "action": action,
                "payload": json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                "owner": owner,
                "created_at": now,
                "expires_at": now + ttl,
            }
            for button_id, (action, payload) in zip(ids, buttons, strict=True)
        ]
        if rows:
            connection.execute(self._table.insert(), rows)
        return ids

    async def get(self, button_id: str, *, now: datetime) -> StoredButton | None:
        """The button, or None when the id is unknown or the button has expired."""
        if not button_id or len(button_id) > 16:
            return None
        table = self._table
        statement = select(table).where(table.c.id == button_id)
        row = await db.transaction(self._engine, lambda c: c.execute(statement).one_or_none())
        if row is None or row.expires_at <= aware(now, "now"):
            return None
        return StoredButton(
            id=row.id,
            card=row.card,
            action=row.action,
            payload=json.loads(row.payload),
            owner=row.owner,
            expires_at=row.expires_at,
            decision=row.decision,
            decided_by=row.decided_by,
            decided_at=row.decided_at,
        )

    async def decide(self, card: str, decision: str, *, by: str, now: datetime) -> Decision:
        """Decide a card once: the first caller wins, later callers get the earlier decision."""
        now = aware(now, "now")
        table = self._table
        claim = (
            update(table)
            .where(table.c.card == card, table.c.decision.is_(None))
            .values(decision=decision, decided_by=by[:160], decided_at=now)
        )
        earlier = (
            select(table.c.decision, table.c.decided_by, table.c.decided_at)
            .where(table.c.card == card, table.c.decision.is_not(None))
            .limit(1)
        )

        def work(connection: Connection) -> tuple[bool, Any]:
            if connection.execute(claim).rowcount:
                return True, None
            return False, connection.execute(earlier).one_or_none()

        won, row = await db.transaction(self._engine, work)
        if won:
            return Decision(True, decision, by, now)
        if row is None:
            raise LookupError(f"no card {card!r}")
        return Decision(False, row.decision, row.decided_by or "", row.decided_at or now)

    async def purge(self, *, now: datetime) -> int:
        """Forget expired buttons; returns how many rows went."""
        table = self._table
        statement = delete(table).where(table.c.expires_at <= aware(now, "now"))
        return await db.transaction(self._engine, lambda c: int(c.execute(statement).rowcount))
