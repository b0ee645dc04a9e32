"""Storage of approval requests.

Every change is one short transaction, and every state change of a request is a compare-and-set
(``UPDATE ... WHERE status = 'pending'`` and the like, checking the row count), so several bot
processes on one database decide, expire and remind each request once. :mod:`bot.approvals` runs
the flow over this store; the cards' storage is :mod:`bot.storage.approval_cards`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import (
    Connection,
    Executable,
    RowMapping,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from bot.messages import Identity
from bot.people import of_person
from bot.storage.approval_settings import ApprovalSettings
from bot.storage.approval_tables import (
    RECOVER_FOR,
    Approval,
    NewApproval,
    RunState,
    Status,
    Usage,
    approval_of,
    new_approval_id,
)
from bot.storage.base import aware
from erm import db
from erm.models import CodeType


class ApprovalStore(ApprovalSettings):
    """Approval requests (with the policies and channels of :class:`ApprovalSettings`); every
    change one transaction (cards: :class:`bot.storage.approval_cards.CardStore`)."""

    async def create(
        self, new: NewApproval, *, now: datetime, ttl: timedelta
    ) -> tuple[Approval, bool]:
        """Store a pending request; the same ask still pending is returned instead (False).

        "The same" is :func:`dedupe_key`; a unique index over the pending rows' keys makes it hold
        when two identical requests arrive at the same instant on two connections: the second
        insert fails and reads the first one's row.
        """
        now = aware(now, "now")
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
            return approval_of(row), created
        raise RuntimeError("could not draw a free approval id")

    async def get(self, approval_id: str) -> Approval | None:
        def work(connection: Connection) -> RowMapping | None:
            return self._read_approval(connection, approval_id)

        row = await db.transaction(self._engine, work)
        return None if row is None else approval_of(row)

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
                table.c.expires_at > aware(now, "now"),
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
            table.c.expires_at > aware(now, "now"),
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
        now = aware(now, "now")
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
        now = aware(now, "now")
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
        now = aware(now, "now")
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
        now = aware(now, "now")
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
        now = aware(now, "now")
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
            .values(executed_at=aware(now, "now"), result=result[:300])
        )
        await self._execute(statement)

    async def record_delivery(self, approval_id: str, *, now: datetime) -> None:
        table = self._approvals
        statement = (
            update(table).where(table.c.id == approval_id).values(delivered_at=aware(now, "now"))
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
            .where(self._unrun(aware(now, "now"), grace))
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
        now = aware(now, "now")
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
        since, now = aware(since, "since"), aware(now, "now")
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
        return [approval_of(row) for row in rows]
