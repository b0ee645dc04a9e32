"""Grants: one role per user per distributor (primary key, upsert); a grant names a configured
distributor (foreign key to erm's ``erm_distributors``; removing the distributor removes its
grants). Users' default distributor and display name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Connection,
    ForeignKey,
    Index,
    Select,
    SmallInteger,
    String,
    bindparam,
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.errors import UsageError
from bot.roles import Role
from bot.storage.base import (
    DISTRIBUTOR_NAME,
    MAX_DISTRIBUTOR,
    MAX_USER_ID,
    BotBase,
    Clock,
    Store,
    checked_distributor,
    checked_identity,
    dialect_insert,
    step,
    table_of,
    unknown_distributor,
    utcnow,
)
from erm import db


class GrantRow(BotBase):
    """A user's role at one distributor."""

    __tablename__ = "bot_grants"
    __table_args__ = (
        CheckConstraint("role BETWEEN 1 AND 4", name="role_known"),
        Index("ix_bot_grants_distributor_role", "distributor", "role"),
    )

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(MAX_USER_ID), primary_key=True)
    distributor: Mapped[str] = mapped_column(
        String(MAX_DISTRIBUTOR),
        ForeignKey(DISTRIBUTOR_NAME, ondelete="CASCADE"),
        primary_key=True,
    )
    role: Mapped[int] = mapped_column(SmallInteger)
    granted_by: Mapped[str] = mapped_column(String(128))
    granted_at: Mapped[datetime] = mapped_column(db.UtcDateTime)


class UserRow(BotBase):
    """What the bot remembers about a user besides grants: a default distributor, a name."""

    __tablename__ = "bot_users"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(MAX_USER_ID), primary_key=True)
    default_distributor: Mapped[str | None] = mapped_column(
        String(MAX_DISTRIBUTOR), ForeignKey(DISTRIBUTOR_NAME, ondelete="SET NULL")
    )
    display_name: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(db.UtcDateTime)


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


class GrantStore(Store):
    """Roles per (platform, user id) and distributor, plus each user's default distributor.

    Identities and distributor names are typed by admins (``/grant chat:U123 agent``), so the
    checks here raise :class:`~bot.errors.UsageError` (shown as is), and a distributor that is not
    configured raises :class:`~erm.errors.UnknownDistributorError`.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utcnow) -> None:
        super().__init__(engine)
        self._clock = clock
        self._grants = table_of(GrantRow)
        self._users = table_of(UserRow)
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

    async def grant(
        self, platform: str, user_id: str, role: Role, distributor: str, granted_by: str
    ) -> None:
        """Give the user ``role`` at ``distributor``, replacing the role they had there."""
        platform, user_id = checked_identity(platform, user_id)
        distributor = checked_distributor(distributor)
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
            raise unknown_distributor(distributor) from None

    async def revoke(self, platform: str, user_id: str, distributor: str | None = None) -> int:
        """Take the user's role at ``distributor`` (None: at every distributor); rows removed."""
        platform, user_id = checked_identity(platform, user_id)
        table = self._grants
        statement = delete(table).where(table.c.platform == platform, table.c.user_id == user_id)
        if distributor is not None:
            statement = statement.where(table.c.distributor == checked_distributor(distributor))
        return await db.transaction(self._engine, lambda c: int(c.execute(statement).rowcount))

    @step
    def grants_of(self, connection: Connection, platform: str, user_id: str) -> dict[str, Role]:
        """The user's role per distributor (their own grants; bot.people adds linked ones); a
        ``UsageError`` for an identity that cannot exist."""
        platform, user_id = checked_identity(platform, user_id)
        rows = connection.execute(
            self._grants_of, {"p_platform": platform, "p_user_id": user_id}
        ).all()
        return {str(distributor): Role(role) for distributor, role in rows}

    def known_in(self, connection: Connection, platform: str, user_id: str) -> KnownUser | None:
        """The user's roles and default distributor, inside a transaction; None for an identity
        that cannot have any (:meth:`grants_of` says why)."""
        try:
            platform, user_id = checked_identity(platform, user_id)
        except UsageError:
            return None
        roles = self.grants_of.within(connection, platform, user_id)
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
            .where(
                table.c.distributor == checked_distributor(distributor),
                table.c.role >= int(min_role),
            )
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
        platform, user_id = checked_identity(platform, user_id)
        name = checked_distributor(distributor) if distributor is not None else None
        try:
            await self._upsert_user(platform, user_id, default_distributor=name)
        except IntegrityError:  # the foreign key
            assert name is not None
            raise unknown_distributor(name) from None

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
        platform, user_id = checked_identity(platform, user_id)
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
        platform, user_id = checked_identity(platform, user_id)
        table = self._users
        statement = select(table.c[column]).where(
            table.c.platform == platform, table.c.user_id == user_id
        )
        value = await db.transaction(self._engine, lambda c: c.scalar(statement))
        return None if value is None else str(value)
