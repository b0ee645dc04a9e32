"""Invites: one-time codes an admin hands to a new user (``/invite``, then ``/start CODE``).

Only a hash of the code is stored; redeeming is a compare-and-set, so a code grants a role once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    Connection,
    SmallInteger,
    String,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.roles import Role
from bot.storage.base import BotBase, Store, aware, table_of
from erm import db

INVITE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud or typed on a phone


INVITE_LENGTH = 10  # 50 bits; valid for hours, used once


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


class InviteStore(Store):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._table = table_of(InviteRow)

    async def create(
        self, role: Role, distributor: str, *, created_by: str, now: datetime, ttl: timedelta
    ) -> tuple[str, Invite]:
        """A new one-time code (returned once; only its hash is stored) and what it grants."""
        now = aware(now, "now")
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
            table.c.expires_at > aware(now, "now"),
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
        now = aware(now, "now")
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
