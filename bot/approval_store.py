"""Storage of the approval flow: policies, approval chats, requests and the cards that show them.

Every change is one short transaction, and every state change of a request is a compare-and-set
(``UPDATE ... WHERE status = 'pending'`` and the like, checking the row count), so several bot
processes on one database decide, expire and remind each request once. The tables belong to the
Alembic branch ``bot`` (revisions ``bot0003`` and later). :mod:`bot.approvals` runs the flow over
this store; the cards' storage is :mod:`bot.approval_card_store`.
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
    RowMapping,
    String,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.cards import INVITE_ALPHABET
from bot.errors import UsageError
from bot.messages import Field, Identity
from bot.people import of_person
from bot.store import (
    _DISTRIBUTOR_NAME,
    BotBase,
    IssuedCodeRow,
    RequestRow,
    _aware,
    _table,
    dialect_insert,
)
from erm import db
from erm.models import CodeType
from erm.vault import DistributorRow

ID_LENGTH = 6  # 30 bits from a 32-letter alphabet without 0/O and 1/I: typed on phones
CARD = "card"
REMINDER = "reminder"
SETTLE_FOR = timedelta(days=1)  # how long the sweep keeps trying to edit a decided card
# How far back the sweep finishes approved requests whose process died: older ones were surely
# noticed by a person already, and a message about them now would only confuse.
RECOVER_FOR = timedelta(days=7)


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
        # One pending request per identical ask, enforced by the database: a check-then-insert
        # alone lets two processes (or two connections) insert the same request at once.
        Index(
            "uq_bot_approvals_pending_dedupe_key",
            "dedupe_key",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
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
    # See :func:`dedupe_key`; None for a duplicate left by a release before bot0006.
    dedupe_key: Mapped[str | None] = mapped_column(String(64))
    # While an approved request runs: until when its runner is presumed alive (a lease); the
    # recovery sweep finishes requests whose lease ended without a result.
    run_until: Mapped[datetime | None] = mapped_column(db.UtcDateTime)


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
    # None until the message exists: only then does the card count as shown.
    message_ref: Mapped[str | None] = mapped_column(String(64))
    posted_at: Mapped[datetime] = mapped_column(db.UtcDateTime)  # claimed, then posted
    settled_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)  # shows the decision
    # Posting: failed attempts so far, and when the claim (or the wait after a failure) ends, so a
    # card whose poster died or failed is posted again, later each time (bot0006).
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    retry_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)
    failure: Mapped[str | None] = mapped_column(String(64))  # why the last attempt failed


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
    attempts: int = 0
    failure: str | None = None


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
    def dedupe_key(self) -> str:
        return dedupe_key(
            distributor=self.distributor,
            requester=self.requester.key,
            item_id=self.item_id,
            code_type=self.code_type,
            days=self.days,
        )

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


def dedupe_key(
    *, distributor: str, requester: str, item_id: str, code_type: CodeType, days: int | None
) -> str:
    """What makes two pending requests the same ask: who wants which code for which item.

    The note and the exact wording are left out on purpose: asking again with another note while
    one waits is the same ask (migration bot0006 computes it the same way for existing rows).
    """
    canonical = json.dumps(
        [distributor, requester, item_id, code_type.value, days], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_approval_id() -> str:
    return "".join(secrets.choice(INVITE_ALPHABET) for _ in range(ID_LENGTH))


def normalise_id(text: str) -> str:
    return text.strip().upper().lstrip("#")[:16]


# -- store --------------------------------------------------------------------------------------


class RunState(enum.Enum):
    """See :meth:`ApprovalStore.run_state`."""

    ISSUED = "issued"  # a code was recorded for the request
    FINISHED = "finished"  # the run ended (its reply is stored) without a code
    CUT_OFF = "cut_off"  # the run started and never ended: ERM may hold a code
    NOT_STARTED = "not_started"


@dataclass(frozen=True, slots=True)
class Usage:
    """What one person got lately (see :meth:`ApprovalStore.usage`)."""

    codes: int
    days_issued: int
    days_waiting: int


class ApprovalStore:
    """Approval policies, channels and requests; every change one transaction (cards:
    :class:`bot.approval_card_store.CardStore`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._codes = _table(IssuedCodeRow)
        self._requests = _table(RequestRow)
        self._policies = _table(ApprovalPolicyRow)
        self._channels = _table(ApprovalChannelRow)
        self._approvals = _table(ApprovalRow)
        self._cards = _table(ApprovalCardRow)
        # Read for every code request: built once (building costs more than running it).
        self._policy = select(self._policies).where(
            self._policies.c.distributor == bindparam("p_distributor")
        )

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

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
        """Store a pending request; the same ask still pending is returned instead (False).

        "The same" is :func:`dedupe_key`; a unique index over the pending rows' keys makes it hold
        when two identical requests arrive at the same instant on two connections: the second
        insert fails and reads the first one's row.
        """
        now = _aware(now, "now")
        table = self._approvals
        fingerprint, key = new.fingerprint, new.dedupe_key
        pending = table.c.status == Status.PENDING.value
        same = select(table.c.id).where(
            table.c.dedupe_key == key, pending, table.c.expires_at > now
        )
        # A request past its expiry that no sweep expired yet still holds the key: it gives the
        # key up (the sweep still expires it and tells its requester, as always).
        release = (
            update(table)
            .where(table.c.dedupe_key == key, pending, table.c.expires_at <= now)
            .values(dedupe_key=None)
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
                connection.execute(release)
                connection.execute(table.insert().values(id=approval_id, dedupe_key=key, **values))
            return self._read_approval(connection, existing or approval_id), existing is None

        for _ in range(5):
            try:
                row, created = await db.transaction(
                    self._engine, partial(work, approval_id=new_approval_id())
                )
            except IntegrityError:
                # The id was taken (draw another), or the same ask was stored at this very moment
                # on another connection (the next round reads it).
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
        run_for: timedelta | None = None,
    ) -> bool:
        """Approve or deny a pending, unexpired request; False when it was not (any more), or
        when ``by`` is the requester's person (linked since the request was made, even if only
        a moment ago: the caller checked before, this holds it against a link made meanwhile).

        ``run_for``: the lease of the approver's process on running the approved request (the
        recovery sweep leaves the request alone until it ends).
        """
        now = _aware(now, "now")
        table = self._approvals
        lease = {"run_until": now + run_for} if run_for is not None else {}
        requester = of_person(
            table.c.requester_platform, table.c.requester_user, by, since=table.c.created_at
        )
        statement = (
            update(table)
            .where(
                table.c.id == approval_id,
                table.c.status == Status.PENDING.value,
                table.c.expires_at > now,
                ~requester,
            )
            .values(
                status=status.value,
                decided_by=by.key[:96],
                decided_by_name=by.label[:160],
                decided_at=now,
                reason=reason,
                **lease,
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
                table.c.expires_at > now,  # past it, the request expires instead
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

    # approved requests whose runner died

    def _unrun(self, now: datetime, grace: timedelta) -> Any:
        """Approved, never recorded as run, and nobody's lease on running it is current (rows
        approved before bot0006 have no lease: ``grace`` after the decision counts as one)."""
        table = self._approvals
        return and_(
            table.c.status == Status.APPROVED.value,
            table.c.executed_at.is_(None),
            table.c.decided_at > now - RECOVER_FOR,
            or_(
                table.c.run_until <= now,
                and_(table.c.run_until.is_(None), table.c.decided_at <= now - grace),
            ),
        )

    async def unrun(self, *, now: datetime, grace: timedelta, limit: int = 20) -> list[str]:
        """Ids of approved requests left unrun (their process died between decision and result)."""
        table = self._approvals
        statement = (
            select(table.c.id)
            .where(self._unrun(_aware(now, "now"), grace))
            .order_by(table.c.decided_at)
            .limit(limit)
        )
        return await db.transaction(
            self._engine, lambda c: [str(i) for i in c.execute(statement).scalars()]
        )

    async def claim_run(
        self, approval_id: str, *, now: datetime, grace: timedelta, lease: timedelta
    ) -> bool:
        """Take over running an unrun approved request for ``lease`` (one process wins)."""
        now = _aware(now, "now")
        table = self._approvals
        statement = (
            update(table)
            .where(table.c.id == approval_id, self._unrun(now, grace))
            .values(run_until=now + lease)
        )
        return await self._changed(statement)

    async def run_state(self, approval_id: str, request_key: str) -> RunState:
        """How far the run of an approved request got, from what it left behind: a code recorded
        for it, the dispatcher's claim of its request key (``running`` or ``done``), or nothing."""
        codes, requests = self._codes, self._requests
        recorded = select(func.count()).where(codes.c.approval_id == approval_id)
        claim = select(requests.c.state).where(requests.c.key == request_key)

        def work(connection: Connection) -> RunState:
            if connection.scalar(recorded):
                return RunState.ISSUED
            state = connection.scalar(claim)
            if state is None:
                return RunState.NOT_STARTED
            return RunState.FINISHED if state == "done" else RunState.CUT_OFF

        return await db.transaction(self._engine, work)

    # what a person asked for lately (the approval rules count it)

    async def usage(
        self,
        requester: Identity,
        distributor: str,
        item_id: str,
        *,
        since: datetime,
        now: datetime,
    ) -> Usage:
        """What ``requester`` got or is waiting for since ``since``: codes issued (any item), and
        days of days codes for this item, issued or waiting for approval (pending, or approved
        and not run yet). "The requester" is their person: every identity linked to them at any
        moment since ``since`` (:func:`bot.people.of_person`).
        """
        since, now = _aware(since, "since"), _aware(now, "now")
        codes, approvals = self._codes, self._approvals
        issued_by = and_(
            of_person(codes.c.issued_by_platform, codes.c.issued_by_user, requester, since),
            codes.c.issued_at >= since,
        )
        count = select(func.count()).where(issued_by)
        days_issued = select(func.coalesce(func.sum(codes.c.days), 0)).where(
            issued_by,
            codes.c.distributor == distributor,
            codes.c.item_id == item_id,
            codes.c.code_type == CodeType.DAYS.value,
        )
        waiting = or_(
            and_(approvals.c.status == Status.PENDING.value, approvals.c.expires_at > now),
            and_(approvals.c.status == Status.APPROVED.value, approvals.c.executed_at.is_(None)),
        )
        days_waiting = select(func.coalesce(func.sum(approvals.c.days), 0)).where(
            of_person(approvals.c.requester_platform, approvals.c.requester_user, requester, since),
            approvals.c.distributor == distributor,
            approvals.c.item_id == item_id,
            approvals.c.code_type == CodeType.DAYS.value,
            waiting,
        )

        def work(connection: Connection) -> Usage:
            return Usage(
                codes=int(connection.scalar(count) or 0),
                days_issued=int(connection.scalar(days_issued) or 0),
                days_waiting=int(connection.scalar(days_waiting) or 0),
            )

        return await db.transaction(self._engine, work)

    async def _select(self, statement: Executable) -> list[Approval]:
        def work(connection: Connection) -> Sequence[RowMapping]:
            return connection.execute(statement).mappings().all()

        rows = await db.transaction(self._engine, work)
        return [_approval(row) for row in rows]

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
