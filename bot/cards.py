"""Server-side state behind buttons and invites.

Chat platforms carry little in a button: Telegram's ``callback_data`` is at most 64 bytes, and
anything in a Slack button ``value`` comes back from the client unverified. So a button carries only
a short random id; what it does, for whom and until when lives here. Buttons of one message form a
*card*; a card is decided at most once (compare-and-set in the database), so the first of two
clicks, processes or platforms wins and the others are told so.

Invites are one-time codes an admin hands to a new user (``/invite``, then ``/start CODE``). Only a
hash of the code is stored; redeeming is a compare-and-set, so a code grants a role once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    Connection,
    Index,
    SmallInteger,
    String,
    Text,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.roles import Role
from bot.store import BotBase, _aware, _table
from erm import db

BUTTON_ID_BYTES = 9  # 12 characters of URL-safe base64
INVITE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud or typed on a phone
INVITE_LENGTH = 10  # 50 bits; valid for hours, used once


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


class InviteRow(BotBase):
    __tablename__ = "bot_invites"
    __table_args__ = (CheckConstraint("role BETWEEN 1 AND 4", name="role_known"),)

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[int] = mapped_column(SmallInteger)
    distributor: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    used_by: Mapped[str | None] = mapped_column(String(96))
    used_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)


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


class ButtonStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._table = _table(ButtonRow)

    @property
    def engine(self) -> AsyncEngine:
        """The database; the dispatcher runs several stores' steps in one transaction on it."""
        return self._engine

    async def save(
        self,
        buttons: Sequence[tuple[str, dict[str, Any]]],
        *,
        owner: str | None,
        now: datetime,
        ttl: timedelta,
    ) -> list[str]:
        """Store one card's buttons as (action, payload); returns their ids, in order."""
        return await db.transaction(
            self._engine,
            lambda c: self.save_in(c, buttons, owner=owner, now=now, ttl=ttl),
        )

    def save_in(
        self,
        connection: Connection,
        buttons: Sequence[tuple[str, dict[str, Any]]],
        *,
        owner: str | None,
        now: datetime,
        ttl: timedelta,
    ) -> list[str]:
        """:meth:`save` inside a transaction."""
        now = _aware(now, "now")
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
        if row is None or row.expires_at <= _aware(now, "now"):
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
        now = _aware(now, "now")
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
        statement = delete(table).where(table.c.expires_at <= _aware(now, "now"))
        return await db.transaction(self._engine, lambda c: int(c.execute(statement).rowcount))


@dataclass(frozen=True, slots=True)
class Invite:
    role: Role
    distributor: str
    created_by: str
    expires_at: datetime


def new_invite_code() -> str:
    return "".join(secrets.choice(INVITE_ALPHABET) for _ in range(INVITE_LENGTH))


def _invite_hash(code: str) -> str:
    normalized = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(f"erm-bot invite {normalized}".encode()).hexdigest()


class InviteStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._table = _table(InviteRow)

    async def create(
        self, role: Role, distributor: str, *, created_by: str, now: datetime, ttl: timedelta
    ) -> tuple[str, Invite]:
        """A new one-time code (returned once; only its hash is stored) and what it grants."""
        now = _aware(now, "now")
        code = new_invite_code()
        invite = Invite(role, distributor, created_by, now + ttl)
        statement = self._table.insert().values(
            code_hash=_invite_hash(code),
            role=int(role),
            distributor=distributor,
            created_by=created_by[:96],
            created_at=now,
            expires_at=invite.expires_at,
        )
        await db.transaction(self._engine, lambda c: c.execute(statement))
        return code, invite

    async def find(self, code: str, *, now: datetime) -> Invite | None:
        """What an unused, unexpired code grants (nothing changes); None otherwise. The caller
        checks that the invite still holds (its admin is still an admin) before redeeming it."""
        if not code or len(code) > 64:
            return None
        table = self._table
        statement = select(table).where(
            table.c.code_hash == _invite_hash(code),
            table.c.used_at.is_(None),
            table.c.expires_at > _aware(now, "now"),
        )
        row = await db.transaction(self._engine, lambda c: c.execute(statement).one_or_none())
        if row is None:
            return None
        return Invite(Role(row.role), row.distributor, row.created_by, row.expires_at)

    async def redeem(
        self, code: str, *, by: str, now: datetime, created_by: str | None = None
    ) -> Invite | None:
        """Use a code once; None when it is unknown, used or expired (or, with ``created_by``,
        made by someone else: the invite checked by :meth:`find` is the one redeemed)."""
        if not code or len(code) > 64:
            return None
        now = _aware(now, "now")
        table = self._table
        code_hash = _invite_hash(code)
        unused: list[ColumnElement[bool]] = [
            table.c.code_hash == code_hash,
            table.c.used_at.is_(None),
            table.c.expires_at > now,
        ]
        if created_by is not None:
            unused.append(table.c.created_by == created_by[:96])
        claim = update(table).where(*unused).values(used_by=by[:96], used_at=now)
        redeemed = select(table).where(table.c.code_hash == code_hash)

        def work(connection: Connection) -> Any:
            if not connection.execute(claim).rowcount:
                return None
            return connection.execute(redeemed).one()

        row = await db.transaction(self._engine, work)
        if row is None:
            return None
        return Invite(Role(row.role), row.distributor, row.created_by, row.expires_at)
