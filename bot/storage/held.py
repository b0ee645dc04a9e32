"""Messages the bot started that could not reach their user yet, kept to hand over later.

A platform may refuse a message the bot starts (an approval decided, a code ready) until the user
writes again. Such a message is kept here and handed over with that user's next message, oldest
first. Rules, all held by the database so they hold across restarts and replicas:

- Sealed at rest: the whole reply (it may carry a code) is one :class:`erm.secret_box.SecretBox`
  envelope bound to its user, so a dump shows no code and a row copied to another user does not
  open (a code reaches only its requester).
- Handed over once: :meth:`HeldStore.take` claims the user's rows with a compare-and-set (a claim
  token and time), the caller sends them, then :meth:`HeldStore.done` deletes them. Two replicas
  answering the same user claim disjoint rows; a claim whose process died goes stale after
  :data:`CLAIM_STALE` and is handed over on a later message (at least once, never lost).
- Bounded: a row expires after :data:`KEPT_FOR` (the platforms stop redelivering by then too); an
  expired row is dropped by the housekeeping round (:meth:`HeldStore.purge`) and logged without
  its content; until then it is never handed over.

A platform may also take a message and report later that it could not deliver it (a ``failed``
status for a closed messaging window). Such a message is *watched*: kept the same way with the
platform's message id (``message_ref``) for :data:`WATCHED_FOR`, never handed over; the failure
report finds it by that id (:meth:`HeldStore.returned`), even after a restart or on another
replica: it becomes a held message, claimed, which the adapter sends another way or releases.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Index, Integer, String, Text, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.messages import Reply
from bot.storage.base import (
    MAX_USER_ID,
    BotBase,
    Clock,
    Store,
    aware,
    checked_text,
    table_of,
    utcnow,
)
from erm import db
from erm.errors import VaultError
from erm.secret_box import DecryptionError, SecretBox

log = logging.getLogger("bot.storage")

KEPT_FOR = timedelta(days=7)
WATCHED_FOR = timedelta(days=1)  # failure reports come within minutes; Meta retries for a day
CLAIM_STALE = timedelta(minutes=5)
MAX_MESSAGE_REF = 128
MAX_HELD_PER_USER = 50  # a user away for a week gets the newest this many, not a flood


class HeldMessageRow(BotBase):
    """One kept message. ``sealed``: the reply's JSON as a SecretBox envelope (see above)."""

    __tablename__ = "bot_held_messages"
    __table_args__ = (
        Index("ix_bot_held_messages_user", "platform", "user_id", "id"),
        Index("ix_bot_held_messages_expires_at", "expires_at"),
        Index("ix_bot_held_messages_ref", "platform", "message_ref"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(MAX_USER_ID))
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    claim: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)
    message_ref: Mapped[str | None] = mapped_column(String(MAX_MESSAGE_REF))  # watched only


@dataclass(frozen=True, slots=True)
class Held:
    """A kept message handed over; its ``id`` goes to :meth:`HeldStore.done` once sent."""

    id: int
    reply: Reply
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Watched:
    """A watched message the platform reported undelivered, claimed (:meth:`HeldStore.returned`)."""

    user_id: str
    taken: Taken

    @property
    def reply(self) -> Reply:
        return self.taken.messages[0].reply


@dataclass(frozen=True, slots=True)
class Taken:
    """The user's kept messages, oldest first, claimed with ``claim``."""

    claim: str
    messages: tuple[Held, ...]


def held_context(platform: str, user_id: str) -> str:
    """Associated data of a kept message: it opens only as this user's."""
    return f"bot_held_messages|{platform}|{user_id}|sealed"


class HeldStore(Store):
    """Kept messages by user (see the module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        box: SecretBox,
        kept_for: timedelta = KEPT_FOR,
        clock: Clock = utcnow,
    ) -> None:
        super().__init__(engine)
        self._box = box
        self._clock = clock
        self.kept_for = kept_for
        self._table = table = table_of(HeldMessageRow)
        user = (table.c.platform == bindparam("p_platform")) & (
            table.c.user_id == bindparam("p_user_id")
        )
        self._expired = (
            delete(table)
            .where(table.c.expires_at <= bindparam("p_now", type_=db.UtcDateTime))
            .returning(table.c.platform, table.c.created_at)
        )
        held = table.c.message_ref.is_(None)
        free = table.c.claim.is_(None) | (
            table.c.claimed_at <= bindparam("p_stale", type_=db.UtcDateTime)
        )
        live = table.c.expires_at > bindparam("p_now", type_=db.UtcDateTime)
        self._claim = (
            update(table)
            .where(user, held, free, live)
            .values(claim=bindparam("p_claim"), claimed_at=bindparam("p_now", type_=db.UtcDateTime))
        )
        self._claimed = (
            select(table.c.id, table.c.sealed, table.c.created_at)
            .where(table.c.claim == bindparam("p_claim"))
            .order_by(table.c.id)
        )
        self._count = select(table.c.id).where(user, held).order_by(table.c.id.desc())
        ref = (table.c.platform == bindparam("p_platform")) & (
            table.c.message_ref == bindparam("p_ref")
        )
        self._return = (
            update(table)
            .where(ref, live)
            .values(
                message_ref=None,
                claim=bindparam("p_claim"),
                claimed_at=bindparam("p_now", type_=db.UtcDateTime),
                expires_at=bindparam("p_expires", type_=db.UtcDateTime),
            )
        )
        self._returned = select(
            table.c.id, table.c.user_id, table.c.sealed, table.c.created_at
        ).where(table.c.claim == bindparam("p_claim"))

    async def keep(self, platform: str, user_id: str, reply: Reply) -> None:
        """Keep ``reply`` for ``user_id``'s next message (sealed; see the module docstring)."""
        values = self._row(platform, user_id, reply, self.kept_for)

        def work(connection: Connection) -> None:
            connection.execute(self._table.insert().values(**values))
            self._trim(connection, platform, user_id)

        await self.transaction(work)

    async def watch(self, platform: str, user_id: str, reply: Reply, message_ref: str) -> None:
        """Keep a copy of ``reply``, which the platform took as ``message_ref``, in case it
        reports it undelivered; never handed over unless :meth:`hold` says so."""
        ref = checked_text(message_ref, "a message id", MAX_MESSAGE_REF)
        values = {**self._row(platform, user_id, reply, WATCHED_FOR), "message_ref": ref}
        await self._execute(self._table.insert().values(**values))

    async def returned(self, platform: str, message_ref: str) -> Watched | None:
        """The platform reported ``message_ref`` undelivered: its watched message becomes a
        held one, claimed by the caller (so two replicas given the same report never both act
        on it). Send it another way and :meth:`done` the claim, or :meth:`release` it for the
        user's next message. None when there is none (not one the bot started, expired, or
        taken already) or no key opens it."""
        now = aware(self._clock(), "now")
        claim = secrets.token_hex(16)
        params = {
            "p_platform": platform,
            "p_ref": message_ref,
            "p_now": now,
            "p_claim": claim,
            "p_expires": now + self.kept_for,
        }

        def work(connection: Connection) -> tuple[int, str, str, datetime] | None:
            if not connection.execute(self._return, params).rowcount:
                return None
            row = connection.execute(self._returned, params).first()
            return None if row is None else (row[0], row[1], row[2], row[3])

        row = await self.transaction(work)
        if row is None:
            return None
        row_id, user_id, sealed, created_at = row
        reply = self._open(platform, user_id, sealed)
        if reply is None:
            await self.done(Taken(claim, ()), [row_id])
            return None
        return Watched(user_id, Taken(claim, (Held(row_id, reply, created_at),)))

    def _row(
        self, platform: str, user_id: str, reply: Reply, kept_for: timedelta
    ) -> dict[str, object]:
        now = aware(self._clock(), "now")
        sealed = self._box.encrypt(
            json.dumps(reply.to_dict()), context=held_context(platform, user_id)
        )
        return {
            "platform": platform,
            "user_id": user_id,
            "sealed": sealed,
            "created_at": now,
            "expires_at": now + kept_for,
        }

    def _trim(self, connection: Connection, platform: str, user_id: str) -> None:
        """Past :data:`MAX_HELD_PER_USER`, the oldest go (logged, without their content)."""
        ids = connection.scalars(self._count, {"p_platform": platform, "p_user_id": user_id}).all()
        extra = ids[MAX_HELD_PER_USER:]
        if extra:
            connection.execute(delete(self._table).where(self._table.c.id.in_(extra)))
            log.warning("%d kept messages over the limit dropped (oldest first)", len(extra))

    async def take(self, platform: str, user_id: str) -> Taken:
        """Claim the user's kept messages (not expired, not claimed by a live process), oldest
        first: one statement when there are none, as for most messages.

        A message that no configured key opens any more is dropped. Pass the result to
        :meth:`done` once sent, or :meth:`release`.
        """
        now = aware(self._clock(), "now")
        claim = secrets.token_hex(16)
        params = {
            "p_platform": platform,
            "p_user_id": user_id,
            "p_claim": claim,
            "p_now": now,
            "p_stale": now - CLAIM_STALE,
        }

        def work(connection: Connection) -> list[tuple[int, str, datetime]]:
            if not connection.execute(self._claim, params).rowcount:
                return []
            return [tuple(row) for row in connection.execute(self._claimed, params)]

        rows = await self.transaction(work)
        held: list[Held] = []
        unreadable: list[int] = []
        for row_id, sealed, created_at in rows:
            reply = self._open(platform, user_id, sealed)
            if reply is None:
                unreadable.append(row_id)
            else:
                held.append(Held(row_id, reply, created_at))
        if unreadable:
            log.warning("%d kept messages no key opens: dropped", len(unreadable))
            await self.done(Taken(claim, ()), unreadable)
        return Taken(claim, tuple(held))

    def _open(self, platform: str, user_id: str, sealed: str) -> Reply | None:
        try:
            plain = self._box.decrypt(sealed, context=held_context(platform, user_id))
            return Reply.from_dict(json.loads(plain))
        except (DecryptionError, VaultError, ValueError, TypeError, KeyError):
            return None

    async def done(self, taken: Taken, ids: list[int] | None = None) -> int:
        """Delete the sent messages of a claim (all of it unless ``ids``); how many went."""
        table = self._table
        statement = delete(table).where(table.c.claim == taken.claim)
        if ids is not None:
            statement = statement.where(table.c.id.in_(ids))
        return await self.transaction(lambda c: int(c.execute(statement).rowcount))

    async def release(self, taken: Taken) -> None:
        """Give the claim's remaining messages back, for the user's next message."""
        table = self._table
        await self._execute(
            update(table).where(table.c.claim == taken.claim).values(claim=None, claimed_at=None)
        )

    async def rotate(self) -> int:
        """Re-encrypt under the newest key every kept or watched message still under an older
        one, so a key rotation loses none of them; how many. One no configured key opens is
        left as it is (handing over drops it)."""
        table, box = self._table, self._box
        older = table.c.sealed.not_like(f"v1.{box.current_key_id}.%")
        statement = select(table.c.id, table.c.platform, table.c.user_id, table.c.sealed).where(
            older
        )

        def work(connection: Connection) -> int:
            done = 0
            for row_id, platform, user_id, sealed in connection.execute(statement).all():
                context = held_context(platform, user_id)
                try:
                    plain = box.decrypt(sealed, context=context)
                except (DecryptionError, VaultError):
                    continue
                connection.execute(
                    update(table)
                    .where(table.c.id == row_id, table.c.sealed == sealed)
                    .values(sealed=box.encrypt(plain, context=context))
                )
                done += 1
            return done

        return await self.transaction(work)

    async def purge(self) -> int:
        """Drop expired messages (logged without content); how many."""
        now = aware(self._clock(), "now")
        rows = await self.transaction(lambda c: c.execute(self._expired, {"p_now": now}).all())
        if rows:
            log.warning("%d kept messages expired unread: dropped", len(rows))
        return len(rows)
