"""Storage of approval cards: the messages that show a request in an approval chat.

A card row is claimed before its message is posted and counts as shown only once it holds the
message's reference. The claim lasts :data:`CLAIM_FOR`: a poster killed meanwhile (a drain timeout
on SIGTERM, ``kill -9``) leaves a claim that expires, and the next sweep (of any process) posts the
card again. A failed post keeps its row and waits before the next attempt, twice as long each
time (:func:`backoff`), so a chat the bot was removed from costs a few calls an hour, not one per
sweep. Every change is one short transaction with a compare-and-set, safe in several processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Executable, Row, RowMapping, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.approval_tables import (
    CARD,
    SETTLE_FOR,
    Approval,
    ApprovalCardRow,
    ApprovalChannelRow,
    ApprovalRow,
    Card,
    Channel,
    Status,
    approval_of,
)
from bot.storage.base import Store, aware, dialect_insert, table_of
from erm import db

CLAIM_FOR = timedelta(minutes=2)  # far longer than one post takes; then the poster is presumed dead
FIRST_RETRY = timedelta(minutes=1)
LAST_RETRY = timedelta(hours=1)


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed post: 1 min, 2, 4, … at most 1 h."""
    doublings = max(0, min(attempts - 1, 12))
    return min(FIRST_RETRY * (1 << doublings), LAST_RETRY)


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed post changed: attempts of this card, and whether it is the first failure
    of the request in that chat (audited) or at all (the requester is told)."""

    attempts: int
    first_in_chat: bool
    first_of_request: bool


@dataclass(frozen=True, slots=True)
class Unreachable:
    """An approval chat the bot could not post to, with the requests it misses."""

    distributor: str
    platform: str
    chat_id: str
    failure: str | None
    waiting: int


class CardStore(Store):
    """Approval cards: claims that expire, posts that back off, edits once decided."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._cards = table_of(ApprovalCardRow)
        self._approvals = table_of(ApprovalRow)
        self._channels = table_of(ApprovalChannelRow)

    def _free(self, now: datetime) -> Any:
        """Cards without a message whose claim (or wait after a failure) is over; rows left by a
        release before bot0006 have no ``retry_at``."""
        cards = self._cards
        return and_(
            cards.c.message_ref.is_(None),
            or_(cards.c.retry_at.is_(None), cards.c.retry_at <= now),
        )

    async def claim(
        self, approval_id: str, platform: str, chat_id: str, kind: str, *, now: datetime
    ) -> int | None:
        """Reserve the card of (request, chat, kind) for :data:`CLAIM_FOR` before posting it;
        None while it is posted, being posted, or waiting after a failure."""
        now = aware(now, "now")
        cards = self._cards
        insert = (
            dialect_insert(self._engine, cards)
            .values(
                approval_id=approval_id,
                platform=platform,
                chat_id=chat_id,
                kind=kind,
                posted_at=now,
                retry_at=now + CLAIM_FOR,
            )
            .on_conflict_do_nothing(index_elements=["approval_id", "platform", "chat_id", "kind"])
            .returning(cards.c.id)
        )
        same = and_(
            cards.c.approval_id == approval_id,
            cards.c.platform == platform,
            cards.c.chat_id == chat_id,
            cards.c.kind == kind,
        )
        take_over = (
            update(cards)
            .where(same, self._free(now))
            .values(posted_at=now, retry_at=now + CLAIM_FOR)
        )

        def work(connection: Connection) -> int | None:
            card_id = connection.scalar(insert)
            if card_id is not None:
                return int(card_id)
            if not connection.execute(take_over).rowcount:
                return None
            return int(connection.scalar(select(cards.c.id).where(same)) or 0) or None

        return await db.transaction(self._engine, work)

    async def posted(self, card_id: int, message_ref: str, *, now: datetime) -> None:
        """The message exists: from now on the card counts as shown."""
        statement = (
            update(self._cards)
            .where(self._cards.c.id == card_id)
            .values(
                message_ref=message_ref[:64],
                posted_at=aware(now, "now"),
                retry_at=None,
                failure=None,
            )
        )
        await self._execute(statement)

    async def failed(self, card_id: int, failure: str, *, now: datetime) -> Failure:
        """Count a failed post and set when to try again (:func:`backoff`)."""
        now = aware(now, "now")
        cards = self._cards

        def work(connection: Connection) -> Failure:
            row = connection.execute(
                select(
                    cards.c.approval_id, cards.c.platform, cards.c.chat_id, cards.c.attempts
                ).where(cards.c.id == card_id)
            ).one()
            attempts = int(row.attempts or 0) + 1
            connection.execute(
                update(cards)
                .where(cards.c.id == card_id)
                .values(attempts=attempts, retry_at=now + backoff(attempts), failure=failure[:64])
            )
            of_request = cards.c.approval_id == row.approval_id
            in_chat = and_(of_request, cards.c.platform == row.platform)
            in_chat = and_(in_chat, cards.c.chat_id == row.chat_id)
            total = select(func.coalesce(func.sum(cards.c.attempts), 0))
            return Failure(
                attempts=attempts,
                first_in_chat=int(connection.scalar(total.where(in_chat)) or 0) == 1,
                first_of_request=int(connection.scalar(total.where(of_request)) or 0) == 1,
            )

        return await db.transaction(self._engine, work)

    async def settle(self, card_id: int, *, now: datetime) -> None:
        statement = (
            update(self._cards)
            .where(self._cards.c.id == card_id)
            .values(settled_at=aware(now, "now"))
        )
        await self._execute(statement)

    async def of(self, approval_id: str) -> list[Card]:
        cards = self._cards
        statement = select(cards).where(cards.c.approval_id == approval_id).order_by(cards.c.id)
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
                approvals.c.decided_at > aware(now, "now") - SETTLE_FOR,
            )
            .order_by(cards.c.id)
            .limit(limit)
        )
        return await self._select_cards(statement)

    async def due(self, *, now: datetime, limit: int = 100) -> list[tuple[Approval, Channel, str]]:
        """What the sweep posts: (request, approval chat, kind) for pending requests whose card
        is not in a chat yet, and for cards (and reminders) whose claim or wait is over."""
        now = aware(now, "now")
        approvals, channels, cards = self._approvals, self._channels, self._cards
        live = and_(approvals.c.status == Status.PENDING.value, approvals.c.expires_at > now)
        any_card = (
            select(cards.c.id)
            .where(
                cards.c.approval_id == approvals.c.id,
                cards.c.platform == channels.c.platform,
                cards.c.chat_id == channels.c.chat_id,
                cards.c.kind == CARD,
            )
            .exists()
        )
        never = (
            select(
                approvals,
                channels.c.platform.label("c_platform"),
                channels.c.chat_id.label("c_chat"),
            )
            .join(channels, channels.c.distributor == approvals.c.distributor)
            .where(live, ~any_card)
            .order_by(approvals.c.created_at)
            .limit(limit)
        )
        again = (
            select(
                approvals,
                channels.c.platform.label("c_platform"),
                channels.c.chat_id.label("c_chat"),
                cards.c.kind.label("c_kind"),
            )
            .join(cards, cards.c.approval_id == approvals.c.id)
            .join(
                channels,  # only to the chat the distributor has now
                and_(
                    channels.c.distributor == approvals.c.distributor,
                    channels.c.platform == cards.c.platform,
                    channels.c.chat_id == cards.c.chat_id,
                ),
            )
            .where(live, self._free(now))
            .order_by(cards.c.retry_at, cards.c.id)
            .limit(limit)
        )

        def work(connection: Connection) -> list[tuple[RowMapping, str]]:
            out = [(row, CARD) for row in connection.execute(never).mappings().all()]
            out += [(row, row["c_kind"]) for row in connection.execute(again).mappings().all()]
            return out

        rows = await db.transaction(self._engine, work)
        found: list[tuple[Approval, Channel, str]] = []
        for row, kind in rows:
            approval = approval_of(row)
            channel = Channel(approval.distributor, row["c_platform"], row["c_chat"], "", now)
            found.append((approval, channel, kind))
        return found

    async def unreachable(self, distributors: Sequence[str]) -> list[Unreachable]:
        """Approval chats of these distributors whose last post failed, with how many pending
        requests they miss (for ``/approvals`` and the logs)."""
        if not distributors:
            return []
        approvals, channels, cards = self._approvals, self._channels, self._cards
        statement = (
            select(
                channels.c.distributor,
                channels.c.platform,
                channels.c.chat_id,
                func.max(cards.c.failure).label("failure"),
                func.count(func.distinct(cards.c.approval_id)).label("waiting"),
            )
            .join(
                cards,
                and_(
                    cards.c.platform == channels.c.platform, cards.c.chat_id == channels.c.chat_id
                ),
            )
            .join(
                approvals,
                and_(
                    approvals.c.id == cards.c.approval_id,
                    approvals.c.distributor == channels.c.distributor,
                ),
            )
            .where(
                channels.c.distributor.in_(list(distributors)),
                approvals.c.status == Status.PENDING.value,
                cards.c.message_ref.is_(None),
                cards.c.attempts > 0,
            )
            .group_by(channels.c.distributor, channels.c.platform, channels.c.chat_id)
            .order_by(channels.c.distributor, channels.c.platform)
        )

        def work(connection: Connection) -> Sequence[Row[Any]]:
            return connection.execute(statement).all()

        rows = await db.transaction(self._engine, work)
        return [
            Unreachable(r.distributor, r.platform, r.chat_id, r.failure, int(r.waiting))
            for r in rows
        ]

    async def _select_cards(self, statement: Executable) -> list[Card]:
        def work(connection: Connection) -> Sequence[Row[Any]]:
            return connection.execute(statement).all()

        rows = await db.transaction(self._engine, work)
        return [
            Card(
                r.id,
                r.approval_id,
                r.platform,
                r.chat_id,
                r.kind,
                r.message_ref,
                r.settled_at,
                int(r.attempts or 0),
                r.failure,
            )
            for r in rows
        ]
