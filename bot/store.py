"""The bot's state in the database: grants, request claims, issued codes, item locks, rate limits.

Every rule here is held by the database, not by process memory, so it holds when several bot
processes share one database:

- :class:`GrantStore`: one role per user per distributor (primary key, upsert); a grant names a
  configured distributor (foreign key to erm's ``erm_distributors``; removing the distributor
  removes its grants).
- :class:`RequestStore`: a platform request key is claimed once (primary key + ``INSERT ... ON
  CONFLICT DO NOTHING``); a redelivery gets the stored reply instead of running again.
- :class:`CodeStore`: a per-(distributor, item) lock row serialises code requests for one item;
  issued codes are recorded so a repeat within minutes shows the same code instead of a new one.
- :class:`RateLimiter`: fixed-window counters, incremented by one atomic upsert.

Each async method is one short transaction (:func:`erm.db.transaction`). The steps a command takes
together also come as synchronous ``*_in(connection, ...)`` methods, so the dispatcher can run
several stores' steps in one transaction: a code command makes 5 transactions, not 11. On SQLite
every transaction starts with ``BEGIN IMMEDIATE`` (see :mod:`erm.db`), so writers queue; on
PostgreSQL the statements themselves are atomic. The statements of that path are built once per
store with bound parameters: building a SQLAlchemy statement anew costs several times what running
it does. The
tables belong to the Alembic branch ``bot`` (``bot/migrations/versions``): run :func:`migrate`.

Unlock codes are stored only as ciphertext, under the same keys as ERM tokens
(:mod:`bot.code_secrets`); records read back carry the decrypted code (kept out of ``repr`` and
log lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Connection,
    CursorResult,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Select,
    SmallInteger,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.code_secrets import last3, open_reply, rotate_codes, seal, seal_reply, unseal
from bot.errors import BusyError, UsageError
from bot.roles import Role
from erm import db
from erm.errors import UnknownDistributorError
from erm.vault import DistributorRow, SecretBox

__all__ = [
    "BOT_MIGRATIONS",
    "PLATFORMS",
    "BotBase",
    "Claim",
    "ClaimStatus",
    "CodeStore",
    "Grant",
    "GrantStore",
    "IssuedCodeRecord",
    "ItemLock",
    "KnownUser",
    "LockBusyError",
    "RateDecision",
    "RateLimiter",
    "RecentQuery",
    "RequestStore",
    "dialect_insert",
    "is_current",
    "migrate",
]

log = logging.getLogger(__name__)

BOT_MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
"""The bot branch's Alembic revisions, for :func:`erm.db.upgrade` (or use :func:`migrate`)."""

PLATFORMS = frozenset({"slack", "telegram", "console"})
"""The platforms an identity can be on."""

Clock = Callable[[], datetime]
T = TypeVar("T")

_MAX_USER_ID = 64
_MAX_DISTRIBUTOR = 32
_MAX_KEY = 255
_MAX_FINGERPRINT = 128
_MAX_ITEM_ID = 64
_MAX_HOLDER = 255
_MAX_SCOPE = 64
_MAX_CODE_TYPE = 16
_MAX_CODE = 64
_CODE_TAIL = 3


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def migrate(
    engine: AsyncEngine, *, secret_box: SecretBox | Callable[[], SecretBox] | None = None
) -> None:
    """Bring erm's and the bot's tables to their newest revisions (safe on every start).

    ``secret_box`` (or a function that makes it): the keys, for revisions that encrypt rows
    written in plain text by older releases; asked for only when there are such rows.
    """
    await db.upgrade(
        engine, version_locations=[BOT_MIGRATIONS], attributes={"secret_box": secret_box}
    )


async def is_current(engine: AsyncEngine) -> bool:
    """Whether erm's and the bot's tables are at their newest revisions."""
    return await db.is_current(engine, [BOT_MIGRATIONS])


# -- models -------------------------------------------------------------------------------------


class BotBase(DeclarativeBase):
    """Declarative base of the bot's tables.

    A metadata of its own, not erm's: erm's schema (and its migration check) stays exactly erm's
    branch. The same naming convention keeps constraint names stable for batch migrations.
    """

    metadata = MetaData(naming_convention=db.NAMING_CONVENTION)


_DISTRIBUTOR_NAME = DistributorRow.__table__.c.name
_PLATFORM_CHECK = "platform IN ('slack', 'telegram', 'console')"


class GrantRow(BotBase):
    """A user's role at one distributor."""

    __tablename__ = "bot_grants"
    __table_args__ = (
        CheckConstraint(_PLATFORM_CHECK, name="platform_known"),
        CheckConstraint("role BETWEEN 1 AND 4", name="role_known"),
        Index("ix_bot_grants_distributor_role", "distributor", "role"),
    )

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(_MAX_USER_ID), primary_key=True)
    distributor: Mapped[str] = mapped_column(
        String(_MAX_DISTRIBUTOR),
        ForeignKey(_DISTRIBUTOR_NAME, ondelete="CASCADE"),
        primary_key=True,
    )
    role: Mapped[int] = mapped_column(SmallInteger)
    granted_by: Mapped[str] = mapped_column(String(128))
    granted_at: Mapped[datetime] = mapped_column(db.UtcDateTime)


class UserRow(BotBase):
    """What the bot remembers about a user besides grants: a default distributor, a name."""

    __tablename__ = "bot_users"
    __table_args__ = (CheckConstraint(_PLATFORM_CHECK, name="platform_known"),)

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(_MAX_USER_ID), primary_key=True)
    default_distributor: Mapped[str | None] = mapped_column(
        String(_MAX_DISTRIBUTOR), ForeignKey(_DISTRIBUTOR_NAME, ondelete="SET NULL")
    )
    display_name: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(db.UtcDateTime)


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

    key: Mapped[str] = mapped_column(String(_MAX_KEY), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(_MAX_FINGERPRINT))
    state: Mapped[str] = mapped_column(String(8))
    reply: Mapped[str | None] = mapped_column(Text)  # JSON
    claimed_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)


class ItemLockRow(BotBase):
    """Who is issuing a code for an item right now, until when."""

    __tablename__ = "bot_item_locks"

    distributor: Mapped[str] = mapped_column(String(_MAX_DISTRIBUTOR), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(_MAX_ITEM_ID), primary_key=True)
    holder: Mapped[str] = mapped_column(String(_MAX_HOLDER))
    token: Mapped[str] = mapped_column(String(32))
    acquired_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(db.UtcDateTime)


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
    distributor: Mapped[str] = mapped_column(String(_MAX_DISTRIBUTOR))
    item_id: Mapped[str] = mapped_column(String(_MAX_ITEM_ID))
    item_label: Mapped[str] = mapped_column(Text)
    client_name: Mapped[str | None] = mapped_column(Text)
    code_type: Mapped[str] = mapped_column(String(_MAX_CODE_TYPE))
    days: Mapped[int | None] = mapped_column(Integer)
    # The code (decimal and hex forms) as a SecretBox envelope; see the module docstring.
    code_secret: Mapped[str] = mapped_column(Text)
    code_last3: Mapped[str] = mapped_column(String(_CODE_TAIL))
    issued_by_platform: Mapped[str] = mapped_column(String(16))
    issued_by_user: Mapped[str] = mapped_column(String(_MAX_USER_ID))
    issued_by_name: Mapped[str] = mapped_column(Text)
    request_key: Mapped[str | None] = mapped_column(String(_MAX_KEY))
    note: Mapped[str | None] = mapped_column(Text)
    reconciled: Mapped[bool] = mapped_column(Boolean)
    issued_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    approval_id: Mapped[str | None] = mapped_column(String(64))


class RateHitRow(BotBase):
    """How many hits one (scope, key) had in the fixed window starting at ``window_start``."""

    __tablename__ = "bot_rate_hits"
    __table_args__ = (Index("ix_bot_rate_hits_window_start", "window_start"),)

    scope: Mapped[str] = mapped_column(String(_MAX_SCOPE), primary_key=True)
    key: Mapped[str] = mapped_column(String(_MAX_KEY), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(db.UtcDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


def _table(model: type[BotBase]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)  # narrows FromClause for mypy
    return table


def dialect_insert(engine: AsyncEngine, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which has ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    name = engine.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"erm-bot stores its state in SQLite or PostgreSQL, not {name}")


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return moment.astimezone(UTC)


def _text(value: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{what} must be 1 to {limit} characters")
    return value


# -- grants -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    """One user's role at one distributor."""

    platform: str
    user_id: str
    distributor: str
    role: Role
    granted_by: str
    granted_at: datetime


@dataclass(frozen=True, slots=True)
class KnownUser:
    """What the grants say about one user, read together: roles and default distributor.

    The default is read only for users with several roles (``default_read``); a bootstrap admin
    can have several distributors without, and is looked up again.
    """

    roles: dict[str, Role]
    default_distributor: str | None = None
    default_read: bool = False


class GrantStore:
    """Roles per (platform, user id) and distributor, plus each user's default distributor.

    Identities and distributor names are typed by admins (``/grant slack:U123 agent``), so the
    checks here raise :class:`~bot.errors.UsageError` (shown as is), and a distributor that is not
    configured raises :class:`~erm.errors.UnknownDistributorError`.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Clock = _utcnow) -> None:
        self._engine = engine
        self._clock = clock
        self._grants = _table(GrantRow)
        self._users = _table(UserRow)
        grants, users = self._grants, self._users
        self._grants_of = (
            select(grants.c.distributor, grants.c.role)
            .where(grants.c.platform == bindparam("p_platform"))
            .where(grants.c.user_id == bindparam("p_user_id"))
            .order_by(grants.c.distributor)
        )
        self._default_of = select(users.c.default_distributor).where(
            users.c.platform == bindparam("p_platform"), users.c.user_id == bindparam("p_user_id")
        )

    @property
    def engine(self) -> AsyncEngine:
        """The database; the dispatcher runs several stores' steps in one transaction on it."""
        return self._engine

    async def grant(
        self, platform: str, user_id: str, role: Role, distributor: str, granted_by: str
    ) -> None:
        """Give the user ``role`` at ``distributor``, replacing the role they had there."""
        platform, user_id = _identity(platform, user_id)
        distributor = _distributor(distributor)
        role = Role(role)
        granted_by = granted_by.strip()[:128] or "?"
        insert = dialect_insert(self._engine, self._grants).values(
            platform=platform,
            user_id=user_id,
            distributor=distributor,
            role=int(role),
            granted_by=granted_by,
            granted_at=self._clock(),
        )
        statement = insert.on_conflict_do_update(
            index_elements=["platform", "user_id", "distributor"],
            set_={
                "role": insert.excluded.role,
                "granted_by": insert.excluded.granted_by,
                "granted_at": insert.excluded.granted_at,
            },
        )
        try:
            await db.transaction(self._engine, lambda connection: connection.execute(statement))
        except IntegrityError:  # the foreign key: no such distributor configured
            raise _unknown_distributor(distributor) from None

    async def revoke(self, platform: str, user_id: str, distributor: str | None = None) -> int:
        """Take the user's role at ``distributor`` (None: at every distributor); rows removed."""
        platform, user_id = _identity(platform, user_id)
        table = self._grants
        statement = delete(table).where(table.c.platform == platform, table.c.user_id == user_id)
        if distributor is not None:
            statement = statement.where(table.c.distributor == _distributor(distributor))
        return await db.transaction(self._engine, lambda c: int(c.execute(statement).rowcount))

    async def grants_of(self, platform: str, user_id: str) -> dict[str, Role]:
        """The user's role per distributor (empty if they have none)."""
        platform, user_id = _identity(platform, user_id)
        return await db.transaction(
            self._engine, lambda connection: self.grants_of_in(connection, platform, user_id)
        )

    def grants_of_in(self, connection: Connection, platform: str, user_id: str) -> dict[str, Role]:
        """:meth:`grants_of` inside a transaction; ``platform`` and ``user_id`` as stored."""
        rows = connection.execute(
            self._grants_of, {"p_platform": platform, "p_user_id": user_id}
        ).all()
        return {str(distributor): Role(role) for distributor, role in rows}

    def known_in(self, connection: Connection, platform: str, user_id: str) -> KnownUser | None:
        """The user's roles and default distributor, inside a transaction; None for an identity
        that cannot have any (:meth:`grants_of` says why)."""
        try:
            platform, user_id = _identity(platform, user_id)
        except UsageError:
            return None
        roles = self.grants_of_in(connection, platform, user_id)
        if len(roles) < 2:  # the default only picks among several distributors
            return KnownUser(roles)
        return KnownUser(roles, self.default_distributor_in(connection, platform, user_id), True)

    async def users(self) -> list[Grant]:
        """Every grant, by platform, user id, then distributor."""
        table = self._grants
        statement = select(table).order_by(table.c.platform, table.c.user_id, table.c.distributor)
        return await self._select_grants(statement)

    async def holders(self, distributor: str, min_role: Role) -> list[Grant]:
        """Who holds at least ``min_role`` at ``distributor``: highest role first."""
        table = self._grants
        statement = (
            select(table)
            .where(table.c.distributor == _distributor(distributor), table.c.role >= int(min_role))
            .order_by(table.c.role.desc(), table.c.granted_at, table.c.platform, table.c.user_id)
        )
        return await self._select_grants(statement)

    async def _select_grants(self, statement: Select[Any]) -> list[Grant]:
        rows = await db.transaction(
            self._engine, lambda connection: connection.execute(statement).mappings().all()
        )
        return [
            Grant(
                platform=row["platform"],
                user_id=row["user_id"],
                distributor=row["distributor"],
                role=Role(row["role"]),
                granted_by=row["granted_by"],
                granted_at=row["granted_at"],
            )
            for row in rows
        ]

    async def set_default_distributor(
        self, platform: str, user_id: str, distributor: str | None
    ) -> None:
        """The distributor the user's commands use when they name none (None forgets it)."""
        platform, user_id = _identity(platform, user_id)
        name = _distributor(distributor) if distributor is not None else None
        try:
            await self._upsert_user(platform, user_id, default_distributor=name)
        except IntegrityError:  # the foreign key
            assert name is not None
            raise _unknown_distributor(name) from None

    async def default_distributor(self, platform: str, user_id: str) -> str | None:
        return await self._user_column(platform, user_id, "default_distributor")

    def default_distributor_in(
        self, connection: Connection, platform: str, user_id: str
    ) -> str | None:
        """:meth:`default_distributor` inside a transaction; ``platform`` and ``user_id`` as
        stored."""
        value = connection.scalar(self._default_of, {"p_platform": platform, "p_user_id": user_id})
        return None if value is None else str(value)

    async def set_display_name(self, platform: str, user_id: str, name: str | None) -> None:
        """Remember the user's last known name (for readable audit rows and replies)."""
        platform, user_id = _identity(platform, user_id)
        cleaned = " ".join(name.split())[:128] if name else None
        await self._upsert_user(platform, user_id, display_name=cleaned or None)

    async def display_name(self, platform: str, user_id: str) -> str | None:
        return await self._user_column(platform, user_id, "display_name")

    async def _upsert_user(self, platform: str, user_id: str, **values: str | None) -> None:
        now = self._clock()
        insert = dialect_insert(self._engine, self._users).values(
            platform=platform, user_id=user_id, updated_at=now, **values
        )
        statement = insert.on_conflict_do_update(
            index_elements=["platform", "user_id"], set_={"updated_at": now, **values}
        )
        await db.transaction(self._engine, lambda connection: connection.execute(statement))

    async def _user_column(self, platform: str, user_id: str, column: str) -> str | None:
        platform, user_id = _identity(platform, user_id)
        table = self._users
        statement = select(table.c[column]).where(
            table.c.platform == platform, table.c.user_id == user_id
        )
        value = await db.transaction(self._engine, lambda c: c.scalar(statement))
        return None if value is None else str(value)


def _identity(platform: str, user_id: str) -> tuple[str, str]:
    platform = platform.strip().lower() if isinstance(platform, str) else ""
    if platform not in PLATFORMS:
        known = ", ".join(sorted(PLATFORMS))
        raise UsageError(f"unknown platform {platform[:20]!r} (platforms: {known})")
    user_id = user_id.strip() if isinstance(user_id, str) else ""
    if not user_id or len(user_id) > _MAX_USER_ID:
        raise UsageError(f"a user id is 1 to {_MAX_USER_ID} characters")
    return platform, user_id


def _distributor(name: str) -> str:
    # Stored names are lower case (erm.vault); anything else simply matches no distributor.
    return name.strip().lower() if isinstance(name, str) else ""


def _unknown_distributor(name: str) -> UnknownDistributorError:
    shown = name if len(name) <= 40 else name[:39] + "…"
    return UnknownDistributorError(f"no distributor named {shown!r} is configured")


# -- request claims (idempotency) ---------------------------------------------------------------


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


class RequestStore:
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
        clock: Clock = _utcnow,
    ) -> None:
        self._engine = engine
        self._box = box  # seals the codes of stored replies (bot.code_secrets.seal_reply)
        self._table = _table(RequestRow)
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

    @property
    def engine(self) -> AsyncEngine:
        """The database; the dispatcher runs several stores' steps in one transaction on it."""
        return self._engine

    async def claim(self, key: str, fingerprint: str, *, now: datetime | None = None) -> Claim:
        """Claim ``key`` for a request with ``fingerprint``; see :class:`ClaimStatus`."""
        moment = _aware(now if now is not None else self._clock(), "now")
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
        key = _text(key, "a request key", _MAX_KEY)
        fingerprint = _text(fingerprint, "a request fingerprint", _MAX_FINGERPRINT)
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

    async def finish(
        self, key: str, reply: Mapping[str, Any], *, now: datetime | None = None
    ) -> bool:
        """Store the reply of a claimed request; a later claim of ``key`` gets it back.

        Returns False (and logs a warning) when ``key`` has no running claim (finished, abandoned
        or purged already): finishing comes after the work is done and must not undo its success.
        ``reply`` must be JSON-able (a ``TypeError`` / ``ValueError`` says otherwise).
        """
        finished_at = _aware(now if now is not None else self._clock(), "now")
        return await db.transaction(
            self._engine, lambda connection: self.finish_in(connection, key, reply, finished_at)
        )

    def finish_in(
        self, connection: Connection, key: str, reply: Mapping[str, Any], now: datetime
    ) -> bool:
        """:meth:`finish` inside a transaction."""
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
        statement = delete(table).where(table.c.claimed_at < _aware(cutoff, "older_than"))
        return await db.transaction(self._engine, lambda c: int(c.execute(statement).rowcount))


# -- issued codes and item locks ----------------------------------------------------------------


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
    the transaction that took the lock. ``released`` turns true once the lock is given back.
    """

    distributor: str
    item_id: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
    token: str = field(repr=False)
    recent: IssuedCodeRecord | None = None
    released: bool = False
    # Handed on (CodeStore.keep): the ``async with`` body ends without giving the lock back.
    kept: bool = False


@dataclass(frozen=True, slots=True)
class RecentQuery:
    """Codes of one type (and days) issued for an item at or after ``since``."""

    code_type: str
    days: int | None
    since: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedCodeRecord:
    """A code the bot issued, as recorded; ``id`` is set on records read back."""

    distributor: str
    item_id: str
    item_label: str
    client_name: str | None = None
    code_type: str  # CodeType value: DAYSCODE, FREECODE, RESETCODE, ...
    days: int | None = None
    code_dec: str = field(repr=False)
    code_hex: str = field(repr=False)
    issued_by_platform: str
    issued_by_user: str
    issued_by_name: str
    request_key: str | None = None
    note: str | None = None
    reconciled: bool = False
    issued_at: datetime
    approval_id: str | None = None
    id: int | None = None

    @property
    def code_last3(self) -> str:
        """The last 3 digits of the code: what may be shown to tell it from another."""
        return last3(self.code_dec)


# Stored as they are; the code itself is sealed (bot.code_secrets).
_RECORD_FIELDS = (
    "distributor",
    "item_id",
    "item_label",
    "client_name",
    "code_type",
    "days",
    "issued_by_platform",
    "issued_by_user",
    "issued_by_name",
    "request_key",
    "note",
    "reconciled",
    "issued_at",
    "approval_id",
)


class CodeStore:
    """Issued codes, and the per-item lock that keeps two code requests for one item apart."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        box: SecretBox,
        clock: Clock = _utcnow,
        poll_interval: float = 0.05,
    ) -> None:
        self._engine = engine
        self._box = box
        self._clock = clock
        self._poll_interval = poll_interval
        self._codes = _table(IssuedCodeRow)
        self._locks = _table(ItemLockRow)
        codes, locks = self._codes, self._locks
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

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

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
    ) -> AsyncIterator[ItemLock]:
        """Hold the exclusive lock of (distributor, item) for the ``async with`` body.

        Waits up to ``wait`` seconds for another holder to leave, then raises
        :class:`LockBusyError`. A lock not released within ``ttl`` seconds (its process died) is
        taken over by the next one to ask, so ``ttl`` must outlast the work inside (an ERM code
        request takes at most its total timeout, 20 s by default). ``holder`` names who holds it
        (e.g. the request key), for diagnostics; the lock is not re-entrant. With ``recent``, the
        newest matching code (:meth:`recent_issue`) is read in the same transaction, into
        ``ItemLock.recent``. ``record_issue(..., release=lock)`` gives the lock back with the
        record; otherwise it is given back when the body ends.
        """
        if ttl <= 0 or wait < 0:
            raise ValueError("ttl must be positive and wait not negative")
        distributor = _text(distributor, "a distributor", _MAX_DISTRIBUTOR)
        item_id = _text(item_id, "an item id", _MAX_ITEM_ID)
        holder = holder[:_MAX_HOLDER] or "?"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            lock = await self._try_lock(distributor, item_id, holder, ttl, recent)
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
        if record.days is not None and record.days <= 0:
            raise ValueError("days must be positive (or None for a free or reset code)")
        values = {name: getattr(record, name) for name in _RECORD_FIELDS}
        values["code_secret"] = seal(
            self._box, record.distributor, record.item_id, record.code_dec, record.code_hex
        )
        values["code_last3"] = record.code_last3
        values["issued_at"] = _aware(record.issued_at, "issued_at")
        for name in ("item_label", "client_name", "issued_by_name", "note"):
            # Names come from ERM and chat platforms: PostgreSQL refuses NUL in text.
            if isinstance(values[name], str):
                values[name] = values[name].replace("\x00", "\ufffd")
        _text(record.distributor, "a distributor", _MAX_DISTRIBUTOR)
        _text(record.item_id, "an item id", _MAX_ITEM_ID)
        _text(record.code_type, "a code type", _MAX_CODE_TYPE)

        def work(connection: Connection) -> int:
            row_id = connection.scalar(self._record, values)
            assert row_id is not None
            if also is not None:
                also(connection)
            if release is not None:
                self._unlock_in(connection, release)
            return int(row_id)

        row_id = await db.transaction(self._engine, work)
        if release is not None:
            release.released = True
        return row_id

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
            "p_since": _aware(query.since, "since"),
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
            **{name: row[name] for name in _RECORD_FIELDS},
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
            table.c.issued_at >= _aware(since, "since"),
        )
        return await db.transaction(self._engine, lambda c: int(c.scalar(statement) or 0))


# -- rate limits --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a hit is allowed; if not, how many seconds until its window ends."""

    allowed: bool
    retry_after: float
    count: int  # hits counted in the current window, this one included when allowed


class RateLimiter:
    """Fixed-window counters per (scope, key), kept in the database.

    Windows are aligned to the Unix epoch (a 3600 s window runs from one full hour to the next).
    A hit over the limit is refused and not counted, so a user who keeps trying is let in again as
    soon as the window ends.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Clock = _utcnow) -> None:
        self._engine = engine
        self._clock = clock
        self._table = _table(RateHitRow)
        table = self._table
        insert = dialect_insert(engine, table).values(
            scope=bindparam("p_scope"),
            key=bindparam("p_key"),
            window_start=bindparam("p_window"),
            count=1,
        )
        self._hit = insert.on_conflict_do_update(
            index_elements=["scope", "key", "window_start"],
            set_={"count": table.c.count + 1},
            where=table.c.count < bindparam("p_limit"),
        ).returning(table.c.count)
        self._count = select(table.c.count).where(
            table.c.scope == bindparam("p_scope"),
            table.c.key == bindparam("p_key"),
            table.c.window_start == bindparam("p_window"),
        )

    @property
    def engine(self) -> AsyncEngine:
        """The database; the dispatcher runs several stores' steps in one transaction on it."""
        return self._engine

    async def hit(
        self,
        scope: str,
        key: str,
        limit: int,
        window_seconds: int,
        *,
        now: datetime | None = None,
    ) -> RateDecision:
        """Count one hit of ``key`` in ``scope`` unless it already reached ``limit`` this window."""
        moment = now if now is not None else self._clock()
        return await db.transaction(
            self._engine,
            lambda c: self.hit_in(c, scope, key, limit, window_seconds, moment),
        )

    def hit_in(
        self,
        connection: Connection,
        scope: str,
        key: str,
        limit: int,
        window_seconds: int,
        now: datetime,
    ) -> RateDecision:
        """:meth:`hit` inside a transaction."""
        if limit < 1 or window_seconds < 1:
            raise ValueError("a rate limit needs limit >= 1 and window_seconds >= 1")
        scope = _text(scope, "a rate-limit scope", _MAX_SCOPE)
        key = _text(key, "a rate-limit key", _MAX_KEY)
        epoch = _aware(now, "now").timestamp()
        start = int(epoch // window_seconds) * window_seconds
        values = {
            "p_scope": scope,
            "p_key": key,
            "p_window": datetime.fromtimestamp(start, UTC),
            "p_limit": limit,
        }
        counted = connection.scalar(self._hit, values)
        if counted is not None:
            return RateDecision(allowed=True, retry_after=0.0, count=int(counted))
        count = connection.scalar(self._count, values)
        retry_after = max(0.0, start + window_seconds - epoch)
        return RateDecision(allowed=False, retry_after=retry_after, count=int(count or limit))

    async def purge(self, before: datetime) -> int:
        """Forget windows that started before ``before``; rows removed.

        Pass a time at least one longest window ago (e.g. now minus a day).
        """
        table = self._table
        statement = delete(table).where(table.c.window_start < _aware(before, "before"))
        return await db.transaction(self._engine, lambda c: int(c.execute(statement).rowcount))
