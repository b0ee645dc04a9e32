"""Rate limits: fixed-window counters, incremented by one atomic upsert."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Connection,
    Index,
    Integer,
    String,
    bindparam,
    delete,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.storage.base import (
    MAX_KEY,
    MAX_SCOPE,
    BotBase,
    Clock,
    Store,
    aware,
    checked_text,
    dialect_insert,
    step,
    table_of,
    utcnow,
)
from erm import db


class RateHitRow(BotBase):
    """How many hits one (scope, key) had in the fixed window starting at ``window_start``."""

    __tablename__ = "bot_rate_hits"
    __table_args__ = (Index("ix_bot_rate_hits_window_start", "window_start"),)

    scope: Mapped[str] = mapped_column(String(MAX_SCOPE), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(db.UtcDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a hit is allowed; if not, how many seconds until its window ends."""

    allowed: bool
    retry_after: float
    count: int  # hits counted in the current window, this one included when allowed


class RateLimiter(Store):
    """Fixed-window counters per (scope, key), kept in the database.

    Windows are aligned to the Unix epoch (a 3600 s window runs from one full hour to the next).
    A hit over the limit is refused and not counted, so a user who keeps trying is let in again as
    soon as the window ends.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utcnow) -> None:
        super().__init__(engine)
        self._clock = clock
        self._table = table_of(RateHitRow)
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

    @step
    def hit(
        self,
        connection: Connection,
        scope: str,
        key: str,
        limit: int,
        window_seconds: int,
        now: datetime | None = None,
    ) -> RateDecision:
        """Count one hit of ``key`` in ``scope`` unless it already reached ``limit`` this window."""
        now = now if now is not None else self._clock()
        if limit < 1 or window_seconds < 1:
            raise ValueError("a rate limit needs limit >= 1 and window_seconds >= 1")
        scope = checked_text(scope, "a rate-limit scope", MAX_SCOPE)
        key = checked_text(key, "a rate-limit key", MAX_KEY)
        epoch = aware(now, "now").timestamp()
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
        statement = delete(table).where(table.c.window_start < aware(before, "before"))
        return await db.transaction(self._engine, lambda c: int(c.execute(statement).rowcount))
