"""The approval flow's tables and values: policies, approval chats, requests and cards.

The tables belong to the Alembic branch ``bot`` (revisions ``bot0003`` and later)."""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from bot.messages import Field, Identity
from bot.storage.base import DISTRIBUTOR_NAME, BotBase
from bot.storage.invites import INVITE_ALPHABET
from erm import db
from erm.models import CodeType

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


class ApprovalPolicyRow(BotBase):
    """A distributor's approval policy; no row means the defaults of :class:`Policy`."""

    __tablename__ = "bot_approval_policies"

    distributor: Mapped[str] = mapped_column(
        String(32), ForeignKey(DISTRIBUTOR_NAME, ondelete="CASCADE"), primary_key=True
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

    distributor: Mapped[str] = mapped_column(
        String(32), ForeignKey(DISTRIBUTOR_NAME, ondelete="CASCADE"), primary_key=True
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


def approval_of(row: Any) -> Approval:
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
