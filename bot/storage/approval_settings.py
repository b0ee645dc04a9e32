"""Approval settings: each distributor's policy and its approval chats."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.errors import UsageError
from bot.storage.approval_tables import (
    ApprovalCardRow,
    ApprovalChannelRow,
    ApprovalPolicyRow,
    ApprovalRow,
    Channel,
    Policy,
)
from bot.storage.base import Store, aware, dialect_insert, step, table_of
from bot.storage.codes import IssuedCodeRow
from bot.storage.requests import RequestRow
from erm import db
from erm.distributors import DistributorRow


class ApprovalSettings(Store):
    """Where a distributor's approval requests go (one chat per platform) and which code
    requests need one (its policy)."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._codes = table_of(IssuedCodeRow)
        self._requests = table_of(RequestRow)
        self._policies = table_of(ApprovalPolicyRow)
        self._channels = table_of(ApprovalChannelRow)
        self._approvals = table_of(ApprovalRow)
        self._cards = table_of(ApprovalCardRow)
        # Read for every code request: built once (building costs more than running it).
        self._policy = select(self._policies).where(
            self._policies.c.distributor == bindparam("p_distributor")
        )

    @step
    def policy(self, connection: Connection, distributor: str) -> Policy:
        """The distributor's approval policy (the default one until an admin sets it)."""
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
            "updated_at": aware(now, "now"),
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
        values = {"chat_id": chat_id[:128], "set_by": by[:96], "set_at": aware(now, "now")}
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
