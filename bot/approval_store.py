"""Storage of the approval flow: policies, approval chats, requests and the cards that show them.

Every change is one short transaction, and every state change of a request is a compare-and-set
(``UPDATE ... WHERE status = 'pending'`` and the like, checking the row count), so several bot
processes on one database decide, expire and remind each request once. The tables belong to the
Alembic branch ``bot`` (revisions ``bot0003`` and later). :mod:`bot.approvals` runs the flow over this store.
"""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Connection,
    Executable,
    ForeignKey,
    Index,
    Integer,
    Row,
    RowMapping,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.cards import INVITE_ALPHABET
from bot.context import Field, Identity
from bot.errors import UsageError
from bot.store import _DISTRIBUTOR_NAME, BotBase, _aware, _table, dialect_insert
from erm import db
from erm.models import CodeType
from erm.vault import DistributorRow

ID_LENGTH = 6  # 30 bits from a 32-letter alphabet without 0/O and 1/I: typed on phones
CARD = "card"
REMINDER = "reminder"
SETTLE_FOR = timedelta(days=1)  # how long the sweep keeps trying to edit a decided card


class Status(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# -- policy -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """Which code requests of a distributor need approval."""

    free: bool = True
    reset: bool = True
    days_over: int | None = 30  # days codes of more days than this
    daily_count: int | None = 10  # days codes once the requester issued this many in 24 hours
    supervisors: bool = False  # supervisors' and admins' own requests too

    def fields(self) -> tuple[Field, ...]:
        def needs(flag: bool) -> str:
            return "need approval" if flag else "supervisors only, no approval"

        days = f"need approval above {self.days_over} days" if self.days_over else "no approval"
        count = (
            f"need approval once the requester issued {self.daily_count} codes in 24 hours"
            if self.daily_count
            else "no approval"
        )
        return (
            Field("Free codes", needs(self.free)),
            Field("Reset codes", needs(self.reset)),
            Field("Days codes", days),
            Field("Many codes", count),
            Field(
                "Supervisors and admins",
                "need approval too" if self.supervisors else "issue directly",
            ),
            Field("Over a quota", "goes to approval"),
        )


# -- tables -------------------------------------------------------------------------------------


class ApprovalPolicyRow(BotBase):
    """A distributor's approval policy; no row means the defaults of :class:`Policy`."""

    __tablename__ = "bot_approval_policies"

    distributor: Mapped[str] = mapped_column(
        String(32), ForeignKey(_DISTRIBUTOR_NAME, ondelete="CASCADE"), primary_key=True
    )
    free: Mapped[bool] = mapped_column(Boolean)
    reset: Mapped[bool] = mapped_column(Boolean)
    days_over: Mapped[int | None] = mapped_column(Integer)
    daily_count: Mapped[int | None] = mapped_column(Integer)
    supervisors: Mapped[bool] = mapped_column(Boolean)
    updated_by: Mapped[str] = mapped_column(String(96))
    updated_at: Mapped[datetime] = mapped_column(db.UtcDateTime)


class ApprovalChannelRow(BotBase):
    """Where a distributor's approval cards go: one channel or group per platform."""

    __tablename__ = "bot_approval_channels"
    __table_args__ = (CheckConstraint("platform IN ('slack', 'telegram')", name="platform_known"),)

    distributor: Mapped[str] = mapped_column(
        String(32), ForeignKey(_DISTRIBUTOR_NAME, ondelete="CASCADE"), primary_key=True
    )
    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(128))
    set_by: Mapped[str] = mapped_column(String(96))
    set_at: Mapped[datetime] = mapped_column(db.UtcDateTime)


class ApprovalRow(BotBase):
    """One approval request. No foreign key: like issued codes, it outlives its distributor."""

    __tablename__ = "bot_approvals"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'approved', 'denied', 'expired', 'cancelled')",
            name="status_known",
        ),
        CheckConstraint("days IS NULL OR days > 0", name="days_positive"),
        Index("ix_bot_approvals_status_expires_at", "status", "expires_at"),
        Index("ix_bot_approvals_distributor_status", "distributor", "status"),
        Index("ix_bot_approvals_requester", "requester_platform", "requester_user", "created_at"),
        Index("ix_bot_approvals_fingerprint", "fingerprint"),
    )

    id: Mapped[str] = mapped_column(String(8), primary_key=True)
    distributor: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    requester_platform: Mapped[str] = mapped_column(String(16))
    requester_user: Mapped[str] = mapped_column(String(64))
    requester_name: Mapped[str | None] = mapped_column(String(128))
    requester_chat: Mapped[str | None] = mapped_column(String(128))  # their private chat, if known
    origin_chat: Mapped[str | None] = mapped_column(String(128))  # where they asked
    code_type: Mapped[str] = mapped_column(String(16))
    item_id: Mapped[str] = mapped_column(String(64))
    item_label: Mapped[str] = mapped_column(Text)
    client_name: Mapped[str | None] = mapped_column(Text)
    days: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(Text)
    command_text: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    needs: Mapped[str] = mapped_column(Text)  # why it needs approval
    context: Mapped[str] = mapped_column(Text)  # JSON: account and last codes, for the card
    request_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    remind_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(96))
    decided_by_name: Mapped[str | None] = mapped_column(String(160))
    decided_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)
    reason: Mapped[str | None] = mapped_column(Text)  # the approver's, on deny
    executed_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)
    result: Mapped[str | None] = mapped_column(Text)  # "code issued", or why not (never a code)
    delivered_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)


class ApprovalCardRow(BotBase):
    """A message showing a request in an approval channel, so it can be edited after the decision.

    One card and at most one reminder per request and chat (the unique constraint is also the
    claim that keeps two processes from posting the same card).
    """

    __tablename__ = "bot_approval_cards"
    __table_args__ = (
        UniqueConstraint("approval_id", "platform", "chat_id", "kind"),
        CheckConstraint("kind IN ('card', 'reminder')", name="kind_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    approval_id: Mapped[str] = mapped_column(
        String(8), ForeignKey("bot_approvals.id", ondelete="CASCADE")
    )
    platform: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(8))
    message_ref: Mapped[str | None] = mapped_column(String(64))  # None while being posted
    posted_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)  # shows the decision


# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Channel:
    distributor: str
    platform: str
    chat_id: str
    set_by: str
    set_at: datetime


@dataclass(frozen=True, slots=True)
class Card:
    id: int
    approval_id: str
    platform: str
    chat_id: str
    kind: str
    message_ref: str | None
    settled_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewApproval:
    """What a request needs approval for, as the code command resolved it."""

    distributor: str
    requester: Identity
    requester_chat: str | None
    origin_chat: str | None
    code_type: CodeType
    item_id: str
    item_label: str
    client_name: str | None
    days: int | None
    note: str | None
    command_text: str
    needs: str
    context: dict[str, Any]
    request_key: str | None

    @property
    def fingerprint(self) -> str:
        return request_fingerprint(
            distributor=self.distributor,
            requester=self.requester.key,
            code_type=self.code_type,
            item_id=self.item_id,
            days=self.days,
            note=self.note,
            command_text=self.command_text,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Approval:
    id: str
    distributor: str
    status: Status
    requester: Identity
    requester_chat: str | None
    origin_chat: str | None
    code_type: CodeType
    item_id: str
    item_label: str
    client_name: str | None
    days: int | None
    note: str | None
    command_text: str
    fingerprint: str
    needs: str
    context: dict[str, Any]
    request_key: str | None
    created_at: datetime
    expires_at: datetime
    remind_at: datetime
    reminded_at: datetime | None
    decided_by: str | None
    decided_by_name: str | None
    decided_at: datetime | None
    reason: str | None
    executed_at: datetime | None
    result: str | None
    delivered_at: datetime | None

    @property
    def what(self) -> str:
        """``30-day code``, ``free code``, ``reset code``."""
        return describe(self.code_type, self.days)

    def matches(
        self,
        *,
        distributor: str,
        requester: str,
        code_type: CodeType,
        item_id: str,
        days: int | None,
        note: str | None,
    ) -> bool:
        """Whether a request is exactly this approved one (and the row was not altered)."""
        stored = request_fingerprint(
            distributor=self.distributor,
            requester=self.requester.key,
            code_type=self.code_type,
            item_id=self.item_id,
            days=self.days,
            note=self.note,
            command_text=self.command_text,
        )
        asked = request_fingerprint(
            distributor=distributor,
            requester=requester,
            code_type=code_type,
            item_id=item_id,
            days=days,
            note=note,
            command_text=self.command_text,
        )
        return secrets.compare_digest(stored, self.fingerprint) and stored == asked


def describe(code_type: CodeType, days: int | None) -> str:
    if code_type is CodeType.DAYS:
        return f"{days}-day code"
    return f"{code_type.name.lower()} code"


def request_fingerprint(
    *,
    distributor: str,
    requester: str,
    code_type: CodeType,
    item_id: str,
    days: int | None,
    note: str | None,
    command_text: str,
) -> str:
    """SHA-256 of exactly the values an approval is for (canonical JSON)."""
    canonical = json.dumps(
        {
            "distributor": distributor,
            "requester": requester,
            "code_type": code_type.value,
            "item_id": item_id,
            "days": days,
            "note": note,
            "command_text": command_text,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_approval_id() -> str:
    return "".join(secrets.choice(INVITE_ALPHABET) for _ in range(ID_LENGTH))


def normalise_id(text: str) -> str:
    return text.strip().upper().lstrip("#")[:16]


# -- store --------------------------------------------------------------------------------------


class ApprovalStore:
    """Approval policies, channels, requests and their cards; every change one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._policies = _table(ApprovalPolicyRow)
        self._channels = _table(ApprovalChannelRow)
        self._approvals = _table(ApprovalRow)
        self._cards = _table(ApprovalCardRow)
        # Read for every code request: built once (building costs more than running it).
        self._policy = select(self._policies).where(
            self._policies.c.distributor == bindparam("p_distributor")
        )

    # policy and channels

    async def policy(self, distributor: str) -> Policy:
        return await db.transaction(self._engine, lambda c: self.policy_in(c, distributor))

    def policy_in(self, connection: Connection, distributor: str) -> Policy:
        """:meth:`policy` inside a transaction."""
        row = connection.execute(self._policy, {"p_distributor": distributor}).one_or_none()
        if row is None:
            return Policy()
        return Policy(
            free=bool(row.free),
            reset=bool(row.reset),
            days_over=row.days_over,
            daily_count=row.daily_count,
            supervisors=bool(row.supervisors),
        )

    async def distributor_known(self, distributor: str) -> bool:
        """Whether ``distributor`` is configured (erm's distributor table)."""
        statement = select(func.count()).where(DistributorRow.name == distributor)
        return bool(await self._scalar(statement))

    async def set_policy(self, distributor: str, policy: Policy, *, by: str, now: datetime) -> None:
        values = {
            "free": policy.free,
            "reset": policy.reset,
            "days_over": policy.days_over,
            "daily_count": policy.daily_count,
            "supervisors": policy.supervisors,
            "updated_by": by[:96],
            "updated_at": _aware(now, "now"),
        }
        insert = dialect_insert(self._engine, self._policies).values(
            distributor=distributor, **values
        )
        statement = insert.on_conflict_do_update(index_elements=["distributor"], set_=values)
        try:
            await self._execute(statement)
        except IntegrityError:  # the foreign key: no such distributor
            raise UsageError(f"No distributor {distributor!r} is configured.") from None

    async def set_channel(
        self, distributor: str, platform: str, chat_id: str, *, by: str, now: datetime
    ) -> Channel | None:
        """Make ``chat_id`` the distributor's approval channel on ``platform``; the one before."""
        table = self._channels
        values = {"chat_id": chat_id[:128], "set_by": by[:96], "set_at": _aware(now, "now")}
        insert = dialect_insert(self._engine, table).values(
            distributor=distributor, platform=platform, **values
        )
        statement = insert.on_conflict_do_update(
            index_elements=["distributor", "platform"], set_=values
        )

        def work(connection: Connection) -> list[Channel]:
            before = self._read_channels(connection, distributor)
            connection.execute(statement)
            return [c for c in before if c.platform == platform]

        try:
            before = await db.transaction(self._engine, work)
        except IntegrityError:
            raise UsageError(f"No distributor {distributor!r} is configured.") from None
        return before[0] if before else None

    async def remove_channel(self, distributor: str, platform: str, chat_id: str) -> bool:
        table = self._channels
        statement = delete(table).where(
            table.c.distributor == distributor,
            table.c.platform == platform,
            table.c.chat_id == chat_id,
        )
        return await self._changed(statement)

    async def channels(self, distributor: str) -> list[Channel]:
        def work(connection: Connection) -> list[Channel]:
            return self._read_channels(connection, distributor)

        return await db.transaction(self._engine, work)

    def _read_channels(self, connection: Connection, distributor: str) -> list[Channel]:
        table = self._channels
        statement = (
            select(table).where(table.c.distributor == distributor).order_by(table.c.platform)
        )
        rows = connection.execute(statement).all()
        return [Channel(r.distributor, r.platform, r.chat_id, r.set_by, r.set_at) for r in rows]

    # requests

    async def create(
        self, new: NewApproval, *, now: datetime, ttl: timedelta
    ) -> tuple[Approval, bool]:
        """Store a pending request; an identical one still pending is returned instead (False)."""
        now = _aware(now, "now")
        table = self._approvals
        fingerprint = new.fingerprint
        same = select(table.c.id).where(
            table.c.fingerprint == fingerprint,
            table.c.status == Status.PENDING.value,
            table.c.expires_at > now,
        )
        values: dict[str, Any] = {
            "distributor": new.distributor,
            "status": Status.PENDING.value,
            "requester_platform": new.requester.platform,
            "requester_user": new.requester.user_id,
            "requester_name": (new.requester.name or "")[:128] or None,
            "requester_chat": new.requester_chat,
            "origin_chat": new.origin_chat,
            "code_type": new.code_type.value,
            "item_id": new.item_id,
            "item_label": new.item_label,
            "client_name": new.client_name,
            "days": new.days,
            "note": new.note,
            "command_text": new.command_text,
            "fingerprint": fingerprint,
            "needs": new.needs,
            "context": json.dumps(new.context, ensure_ascii=False, separators=(",", ":")),
            "request_key": new.request_key,
            "created_at": now,
            "expires_at": now + ttl,
            "remind_at": now + ttl / 2,
        }

        def work(connection: Connection, approval_id: str) -> tuple[RowMapping | None, bool]:
            existing = connection.scalar(same.limit(1))
            if existing is None:
                connection.execute(table.insert().values(id=approval_id, **values))
            return self._read_approval(connection, existing or approval_id), existing is None

        for _ in range(5):
            try:
                row, created = await db.transaction(
                    self._engine, partial(work, approval_id=new_approval_id())
                )
            except IntegrityError:  # the id was taken: draw another
                continue
            assert row is not None
            return _approval(row), created
        raise RuntimeError("could not draw a free approval id")

    async def get(self, approval_id: str) -> Approval | None:
        def work(connection: Connection) -> RowMapping | None:
            return self._read_approval(connection, approval_id)

        row = await db.transaction(self._engine, work)
        return None if row is None else _approval(row)

    def _read_approval(self, connection: Connection, approval_id: str) -> RowMapping | None:
        table = self._approvals
        statement = select(table).where(table.c.id == approval_id)
        return connection.execute(statement).mappings().one_or_none()

    async def pending(
        self, distributors: Sequence[str], *, now: datetime, limit: int = 20
    ) -> list[Approval]:
        """Pending, unexpired requests of these distributors, oldest first."""
        if not distributors:
            return []
        table = self._approvals
        statement = (
            select(table)
            .where(
                table.c.distributor.in_(list(distributors)),
                table.c.status == Status.PENDING.value,
                table.c.expires_at > _aware(now, "now"),
            )
            .order_by(table.c.created_at, table.c.id)
            .limit(limit)
        )
        return await self._select(statement)

    async def requested_by(self, requester: Identity, *, limit: int = 5) -> list[Approval]:
        """The requester's newest requests, any status."""
        table = self._approvals
        statement = (
            select(table)
            .where(
                table.c.requester_platform == requester.platform,
                table.c.requester_user == requester.user_id,
            )
            .order_by(table.c.created_at.desc(), table.c.id)
            .limit(limit)
        )
        return await self._select(statement)

    async def count_pending_by(self, requester: Identity, *, now: datetime) -> int:
        table = self._approvals
        statement = select(func.count()).where(
            table.c.requester_platform == requester.platform,
            table.c.requester_user == requester.user_id,
            table.c.status == Status.PENDING.value,
            table.c.expires_at > _aware(now, "now"),
        )
        return int(await self._scalar(statement) or 0)

    async def decide(
        self,
        approval_id: str,
        status: Status,
        *,
        by: Identity,
        reason: str | None = None,
        now: datetime,
    ) -> bool:
        """Approve or deny a pending, unexpired request; False when it was not (any more)."""
        now = _aware(now, "now")
        table = self._approvals
        statement = (
            update(table)
            .where(
                table.c.id == approval_id,
                table.c.status == Status.PENDING.value,
                table.c.expires_at > now,
            )
            .values(
                status=status.value,
                decided_by=by.key[:96],
                decided_by_name=by.label[:160],
                decided_at=now,
                reason=reason,
            )
        )
        return await self._changed(statement)

    async def cancel(self, approval_id: str, requester: Identity, *, now: datetime) -> bool:
        now = _aware(now, "now")
        table = self._approvals
        statement = (
            update(table)
            .where(
                table.c.id == approval_id,
                table.c.status == Status.PENDING.value,
                table.c.requester_platform == requester.platform,
                table.c.requester_user == requester.user_id,
            )
            .values(
                status=Status.CANCELLED.value,
                decided_by=requester.key[:96],
                decided_by_name=requester.label[:160],
                decided_at=now,
            )
        )
        return await self._changed(statement)

    async def expire(self, approval_id: str, *, now: datetime) -> bool:
        now = _aware(now, "now")
        table = self._approvals
        statement = (
            update(table)
            .where(
                table.c.id == approval_id,
                table.c.status == Status.PENDING.value,
                table.c.expires_at <= now,
            )
            .values(status=Status.EXPIRED.value, decided_at=now)
        )
        return await self._changed(statement)

    async def claim_reminder(self, approval_id: str, *, now: datetime) -> bool:
        """Take the one reminder of a pending request (the first process to ask gets it)."""
        now = _aware(now, "now")
        table = self._approvals
        statement = (
            update(table)
            .where(
                table.c.id == approval_id,
                table.c.status == Status.PENDING.value,
                table.c.reminded_at.is_(None),
                table.c.remind_at <= now,
                table.c.expires_at > now,
            )
            .values(reminded_at=now)
        )
        return await self._changed(statement)

    async def due(self, *, now: datetime, limit: int = 100) -> tuple[list[str], list[str]]:
        """Ids of pending requests past their expiry, and of those due a reminder."""
        now = _aware(now, "now")
        table = self._approvals
        pending = table.c.status == Status.PENDING.value
        expired = select(table.c.id).where(pending, table.c.expires_at <= now).limit(limit)
        remind = (
            select(table.c.id)
            .where(
                pending,
                table.c.expires_at > now,
                table.c.remind_at <= now,
                table.c.reminded_at.is_(None),
            )
            .limit(limit)
        )

        def work(connection: Connection) -> tuple[list[str], list[str]]:
            expired_ids = list(connection.execute(expired).scalars())
            remind_ids = list(connection.execute(remind).scalars())
            return expired_ids, remind_ids

        return await db.transaction(self._engine, work)

    async def record_execution(self, approval_id: str, result: str, *, now: datetime) -> None:
        table = self._approvals
        statement = (
            update(table)
            .where(table.c.id == approval_id)
            .values(executed_at=_aware(now, "now"), result=result[:300])
        )
        await self._execute(statement)

    async def record_delivery(self, approval_id: str, *, now: datetime) -> None:
        table = self._approvals
        statement = (
            update(table).where(table.c.id == approval_id).values(delivered_at=_aware(now, "now"))
        )
        await self._execute(statement)

    # cards

    async def claim_card(
        self, approval_id: str, platform: str, chat_id: str, kind: str, *, now: datetime
    ) -> int | None:
        """Reserve the card of (request, chat, kind) before posting it; None if it exists."""
        table = self._cards
        statement = (
            dialect_insert(self._engine, table)
            .values(
                approval_id=approval_id,
                platform=platform,
                chat_id=chat_id,
                kind=kind,
                posted_at=_aware(now, "now"),
            )
            .on_conflict_do_nothing(index_elements=["approval_id", "platform", "chat_id", "kind"])
            .returning(table.c.id)
        )
        card_id = await self._scalar(statement)
        return None if card_id is None else int(card_id)

    async def card_posted(self, card_id: int, message_ref: str) -> None:
        table = self._cards
        statement = update(table).where(table.c.id == card_id).values(message_ref=message_ref[:64])
        await self._execute(statement)

    async def drop_card(self, card_id: int) -> None:
        """Give up a claimed card that could not be posted (a later sweep tries again)."""
        table = self._cards
        await self._execute(delete(table).where(table.c.id == card_id))

    async def settle_card(self, card_id: int, *, now: datetime) -> None:
        table = self._cards
        statement = update(table).where(table.c.id == card_id).values(settled_at=_aware(now, "now"))
        await self._execute(statement)

    async def cards(self, approval_id: str) -> list[Card]:
        table = self._cards
        statement = select(table).where(table.c.approval_id == approval_id).order_by(table.c.id)
        return await self._select_cards(statement)

    async def unsettled(self, *, now: datetime, limit: int = 100) -> list[Card]:
        """Posted cards still showing buttons although their request was decided (in the last
        day: a card someone deleted is not tried for ever)."""
        cards, approvals = self._cards, self._approvals
        statement = (
            select(cards)
            .join(approvals, approvals.c.id == cards.c.approval_id)
            .where(
                cards.c.message_ref.is_not(None),
                cards.c.settled_at.is_(None),
                approvals.c.status != Status.PENDING.value,
                approvals.c.decided_at > _aware(now, "now") - SETTLE_FOR,
            )
            .order_by(cards.c.id)
            .limit(limit)
        )
        return await self._select_cards(statement)

    async def missing_cards(
        self, *, now: datetime, limit: int = 100
    ) -> list[tuple[Approval, Channel]]:
        """Pending requests and the approval channels that do not show them yet."""
        approvals, channels, cards = self._approvals, self._channels, self._cards
        shown = (
            select(cards.c.id)
            .where(
                cards.c.approval_id == approvals.c.id,
                cards.c.platform == channels.c.platform,
                cards.c.chat_id == channels.c.chat_id,
                cards.c.kind == CARD,
            )
            .exists()
        )
        statement = (
            select(approvals, channels.c.platform.label("channel_platform"))
            .join(channels, channels.c.distributor == approvals.c.distributor)
            .where(
                approvals.c.status == Status.PENDING.value,
                approvals.c.expires_at > _aware(now, "now"),
                ~shown,
            )
            .order_by(approvals.c.created_at)
            .limit(limit)
        )

        def work(
            connection: Connection,
        ) -> tuple[Sequence[RowMapping], dict[str, list[Channel]]]:
            rows = connection.execute(statement).mappings().all()
            known: dict[str, list[Channel]] = {}
            for row in rows:
                if row["distributor"] not in known:
                    known[row["distributor"]] = self._read_channels(connection, row["distributor"])
            return rows, known

        rows, known = await db.transaction(self._engine, work)
        out: list[tuple[Approval, Channel]] = []
        for row in rows:
            approval = _approval(row)
            found = [
                c for c in known[approval.distributor] if c.platform == row["channel_platform"]
            ]
            out.extend((approval, c) for c in found)
        return out

    async def _select(self, statement: Executable) -> list[Approval]:
        def work(connection: Connection) -> Sequence[RowMapping]:
            return connection.execute(statement).mappings().all()

        rows = await db.transaction(self._engine, work)
        return [_approval(row) for row in rows]

    async def _select_cards(self, statement: Executable) -> list[Card]:
        def work(connection: Connection) -> Sequence[Row[Any]]:
            return connection.execute(statement).all()

        rows = await db.transaction(self._engine, work)
        return [
            Card(r.id, r.approval_id, r.platform, r.chat_id, r.kind, r.message_ref, r.settled_at)
            for r in rows
        ]

    async def _execute(self, statement: Executable) -> None:
        """Run one statement as a transaction of its own."""

        def work(connection: Connection) -> None:
            connection.execute(statement)

        await db.transaction(self._engine, work)

    async def _changed(self, statement: Executable) -> bool:
        """Run one UPDATE or DELETE as a transaction of its own; whether it changed a row."""

        def work(connection: Connection) -> bool:
            return bool(connection.execute(statement).rowcount)

        return await db.transaction(self._engine, work)

    async def _scalar(self, statement: Executable) -> Any:
        """The first column of the first row of one statement, run as a transaction."""

        def work(connection: Connection) -> Any:
            return connection.scalar(statement)

        return await db.transaction(self._engine, work)


def _approval(row: Any) -> Approval:
    try:
        context = json.loads(row["context"] or "{}")
    except ValueError:
        context = {}
    return Approval(
        id=row["id"],
        distributor=row["distributor"],
        status=Status(row["status"]),
        requester=Identity(row["requester_platform"], row["requester_user"], row["requester_name"]),
        requester_chat=row["requester_chat"],
        origin_chat=row["origin_chat"],
        code_type=CodeType(row["code_type"]),
        item_id=row["item_id"],
        item_label=row["item_label"],
        client_name=row["client_name"],
        days=row["days"],
        note=row["note"],
        command_text=row["command_text"],
        fingerprint=row["fingerprint"],
        needs=row["needs"],
        context=context if isinstance(context, dict) else {},
        request_key=row["request_key"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        remind_at=row["remind_at"],
        reminded_at=row["reminded_at"],
        decided_by=row["decided_by"],
        decided_by_name=row["decided_by_name"],
        decided_at=row["decided_at"],
        reason=row["reason"],
        executed_at=row["executed_at"],
        result=row["result"],
        delivered_at=row["delivered_at"],
    )
