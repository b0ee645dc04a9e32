"""One person, several chat identities: links, one-time link codes, and who "the same person" is.

Someone who works from two chat apps links the two identities: ``/link`` on one app shows a code,
``/link CODE`` on the other joins that identity to the first one's person. From then on the rules
see one person: an identity's role at a distributor is the highest any identity of its person
holds there (:meth:`PeopleStore.known_in`, folded into the one query the dispatcher already made
for the grants), rate limits and fair turns count the person, the days-over-N and daily-count
approval rules add up what every identity got (:func:`of_person`), and no identity of the
requester's person may decide the request (:meth:`PeopleStore.same_person`). Strangers' limits
stay per identity. Bootstrap admins (``ERM_BOT_ADMINS``) stay per identity too: the setting names
identities, and a link made in chat must not widen what the operator configured.

Storage (revision bot0007):

- ``bot_links``: one row per linked identity; ``person`` is the key (``platform:user_id``) of the
  identity that made the first code. An identity without a current row is a person of its own,
  keyed by its own key. A person never keeps the key of an identity that left it (the rest are
  moved to another key), so an unlinked identity is never taken for its old group.
- Unlinking keeps the row (``unlinked_at``): unlinking must not launder a request. For the
  self-approval check and the 24-hour counts, identities linked at any time since the request
  (or within the counted window) are still one person; otherwise a person could unlink their
  second identity and approve their own request from it.
- ``bot_link_codes``: only a hash of each code (as :class:`bot.storage.invites.InviteStore` keeps
  invites), its maker, expiry and use.

Why a leaked code is not a privilege escalation: a code joins whoever types it to its maker's
person, with the maker's roles, so it is worth what the maker's roles are worth, and it is
guarded like an invite and more. It is shown once, only in the maker's private answer (a retried
request shows that a code was made, never the code, and the reply is not stored); only its hash
is stored; it expires after :data:`LINK_TTL` (10 minutes), works once (compare-and-set), and a
new ``/link`` cancels the maker's earlier code. Guessing is slow: 50 random bits, and
``Limits.invite_attempts_per_user_hour`` tries per identity an hour. When a code is used every
identity of the person is told at once, privately, with the command that undoes it
(``/unlink ID``), which each identity of the person may run itself, without waiting for an
admin; an admin of a distributor where the person has a role may run it too.

Roles travel one way only: a code is refused when whoever types it holds a role its maker's person
does not, so someone talked into typing another person's code cannot hand over their own roles
(they are told to link the other way round), and the reply names the maker, so they see whom they
joined. Every link and unlink is audited (never the code).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Index,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    null,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bot.errors import UsageError
from bot.messages import Identity
from bot.roles import Role
from bot.storage.base import BotBase, Store, aware, checked_identity, step, table_of
from bot.storage.grants import GrantRow, KnownUser, UserRow
from bot.storage.invites import new_invite_code
from erm import db

LINK_TTL = timedelta(minutes=10)
_KEY = 96  # platform:user_id
_CURRENT = text("unlinked_at IS NULL")

UNKNOWN_CODE = (
    "That link code is unknown, used already or expired.\n"
    "On your other chat app send /link for a new one, then send /link CODE here."
)
OWN_CODE = (
    "That code is for your other chat app: it links another identity to this one.\n"
    "Send it there: /link CODE"
)


class LinkError(UsageError):
    """A link refused; the message says why and what to type next."""


class LinkRow(BotBase):
    """One identity linked to a person, from ``linked_at`` until ``unlinked_at`` (None: now)."""

    __tablename__ = "bot_links"
    __table_args__ = (
        Index("ix_bot_links_identity", "platform", "user_id"),
        Index("ix_bot_links_person", "person"),
        # One current link per identity, held by the database (two links at once: one wins).
        Index(
            "uq_bot_links_current",
            "platform",
            "user_id",
            unique=True,
            sqlite_where=_CURRENT,
            postgresql_where=_CURRENT,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(64))
    person: Mapped[str] = mapped_column(String(_KEY))
    linked_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    linked_by: Mapped[str] = mapped_column(String(_KEY))
    unlinked_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)
    unlinked_by: Mapped[str | None] = mapped_column(String(_KEY))


class LinkCodeRow(BotBase):
    """A one-time link code: only its hash, who made it, until when, and its use."""

    __tablename__ = "bot_link_codes"
    __table_args__ = (
        Index("ix_bot_link_codes_created_by", "created_by"),
        Index("ix_bot_link_codes_expires_at", "expires_at"),
    )

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_by: Mapped[str] = mapped_column(String(_KEY))
    created_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(db.UtcDateTime)
    used_by: Mapped[str | None] = mapped_column(String(_KEY))
    used_at: Mapped[datetime | None] = mapped_column(db.UtcDateTime)


@dataclass(frozen=True, slots=True)
class Known:
    """Whose an identity is and what its person may do (read together, in one query)."""

    person: str
    user: KnownUser | None  # None: an identity that cannot hold roles (an unknown platform)


@dataclass(frozen=True, slots=True)
class Linked:
    """A code used: ``identity`` joined ``maker``'s person, now ``identities`` together."""

    person: str
    identity: str
    maker: str
    identities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unlinked:
    """``identity`` left ``person``; ``others`` are the identities it was linked with."""

    identity: str
    person: str
    others: tuple[str, ...]


def _links() -> Table:
    return table_of(LinkRow)


def _linked_since(row: Any, since: Any) -> ColumnElement[bool]:
    """The link row was current at some moment from ``since`` (a time or a column) on."""
    return or_(row.c.unlinked_at.is_(None), row.c.unlinked_at > since)


def of_person(
    platform: ColumnElement[Any], user_id: ColumnElement[Any], identity: Identity, since: Any
) -> ColumnElement[bool]:
    """A condition on an identity's columns: it is ``identity``, or was linked to it at any
    moment since ``since`` (a time, or a column such as a request's ``created_at``).

    The one place that says who "the same person" is, for rules that look back in time (the
    24-hour counts, self-approval): a link undone since still counts.
    """
    links = _links()
    me, other = links.alias(), links.alias()
    linked = (
        select(other.c.platform, other.c.user_id)
        .select_from(me.join(other, other.c.person == me.c.person))
        .where(
            me.c.platform == identity.platform,
            me.c.user_id == identity.user_id,
            _linked_since(me, since),
            _linked_since(other, since),
        )
    )
    return or_(
        and_(platform == identity.platform, user_id == identity.user_id),
        tuple_(platform, user_id).in_(linked),
    )


def _split(key: str) -> tuple[str, str]:
    platform, _, user_id = key.partition(":")
    return platform, user_id


def _code_hash(code: str) -> str:
    normalized = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(f"erm-bot link {normalized}".encode()).hexdigest()


class PeopleStore(Store):
    """Links between identities and the link codes that make them; see the module docstring."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._links = links = _links()
        self._codes = table_of(LinkCodeRow)
        grants, users = table_of(GrantRow), table_of(UserRow)
        me, other = links.alias("me"), links.alias("other")
        platform = bindparam("p_platform", type_=String)
        user_id = bindparam("p_user_id", type_=String)
        # The person and every role of every identity of it, in one statement: the dispatcher's
        # grant read, plus a primary-key probe of bot_links that finds nothing for most people.
        linked = (
            select(me.c.person, grants.c.distributor, grants.c.role)
            .select_from(
                me.join(
                    other, and_(other.c.person == me.c.person, other.c.unlinked_at.is_(None))
                ).outerjoin(
                    grants,
                    and_(
                        grants.c.platform == other.c.platform, grants.c.user_id == other.c.user_id
                    ),
                )
            )
            .where(me.c.platform == platform, me.c.user_id == user_id, me.c.unlinked_at.is_(None))
        )
        own = select(cast(null(), String), grants.c.distributor, grants.c.role).where(
            grants.c.platform == platform, grants.c.user_id == user_id
        )
        self._known = union_all(linked, own)
        self._default_of = select(users.c.default_distributor).where(
            users.c.platform == platform, users.c.user_id == user_id
        )
        self._person_of = select(links.c.person).where(
            links.c.platform == platform, links.c.user_id == user_id, links.c.unlinked_at.is_(None)
        )

    @step
    def known(self, connection: Connection, identity: Identity) -> Known:
        """The identity's person, its roles (the highest per distributor among the person's
        identities) and, when it has several distributors, its own default one."""
        try:
            platform, user_id = checked_identity(identity.platform, identity.user_id)
        except UsageError:
            return Known(identity.key, None)
        values = {"p_platform": platform, "p_user_id": user_id}
        person = identity.key
        roles: dict[str, Role] = {}
        for linked_to, distributor, role in connection.execute(self._known, values):
            if linked_to is not None:
                person = str(linked_to)
            if distributor is not None:
                roles[distributor] = max(roles.get(distributor, Role(role)), Role(role))
        roles = dict(sorted(roles.items()))
        if len(roles) < 2:  # the default only picks among several distributors
            return Known(person, KnownUser(roles))
        default = connection.scalar(self._default_of, values)
        return Known(person, KnownUser(roles, None if default is None else str(default), True))

    async def roles_of(self, identity: Identity) -> dict[str, Role]:
        """The identity's role per distributor, its person's identities' grants included; a
        ``UsageError`` for an identity that cannot exist (as ``GrantStore.grants_of``)."""
        checked_identity(identity.platform, identity.user_id)
        known = await self.known(identity)
        return known.user.roles if known.user is not None else {}

    async def person_of(self, identity: Identity) -> str:
        """The key of the identity's person: its own key when it is linked to nobody."""
        platform, user_id = identity.platform, identity.user_id
        person = await db.transaction(
            self._engine,
            lambda c: c.scalar(self._person_of, {"p_platform": platform, "p_user_id": user_id}),
        )
        return identity.key if person is None else str(person)

    async def identities(self, person: str) -> list[str]:
        """The identities of ``person`` (keys, in the order they were linked); just ``person``
        when it is one identity on its own."""
        links = self._links
        statement = (
            select(links.c.platform, links.c.user_id)
            .where(links.c.person == person, links.c.unlinked_at.is_(None))
            .order_by(links.c.linked_at, links.c.id)
        )
        rows = await db.transaction(self._engine, lambda c: c.execute(statement).all())
        return [f"{p}:{u}" for p, u in rows] or [person]

    async def same_person(self, first: Identity, second: Identity, *, since: datetime) -> bool:
        """Whether the two are one identity, or were linked at any moment since ``since``."""
        if first.key == second.key:
            return True
        links = self._links
        x, y = links.alias("x"), links.alias("y")
        since = aware(since, "since")
        statement = select(
            exists()
            .select_from(x.join(y, y.c.person == x.c.person))
            .where(
                x.c.platform == first.platform,
                x.c.user_id == first.user_id,
                y.c.platform == second.platform,
                y.c.user_id == second.user_id,
                _linked_since(x, since),
                _linked_since(y, since),
            )
        )
        return bool(await db.transaction(self._engine, lambda c: c.scalar(statement)))

    # -- linking ------------------------------------------------------------------------------

    async def start_link(self, identity: Identity, *, now: datetime) -> str:
        """A new one-time code that links another identity to this one's person (returned once;
        only its hash is stored). Earlier unused codes of this identity stop working."""
        platform, user_id = checked_identity(identity.platform, identity.user_id)
        maker, now = f"{platform}:{user_id}", aware(now, "now")
        code = new_invite_code()
        codes = self._codes

        def work(connection: Connection) -> None:
            # Expired codes go with each new one: the table stays as small as its live codes.
            connection.execute(delete(codes).where(codes.c.expires_at <= now))
            connection.execute(
                delete(codes).where(codes.c.created_by == maker, codes.c.used_at.is_(None))
            )
            connection.execute(
                codes.insert().values(
                    code_hash=_code_hash(code),
                    created_by=maker,
                    created_at=now,
                    expires_at=now + LINK_TTL,
                )
            )

        await db.transaction(self._engine, work)
        return code

    async def redeem(self, identity: Identity, code: str, *, now: datetime) -> Linked:
        """Join ``identity`` to the person of the code's maker, using the code up; a
        :class:`LinkError` (nothing changed, the code still usable) when it cannot be."""
        platform, user_id = checked_identity(identity.platform, identity.user_id)
        me, now = f"{platform}:{user_id}", aware(now, "now")
        if not code or len(code) > 64:
            raise LinkError(UNKNOWN_CODE)
        codes, code_hash = self._codes, _code_hash(code)
        usable = and_(
            codes.c.code_hash == code_hash, codes.c.used_at.is_(None), codes.c.expires_at > now
        )

        def work(connection: Connection) -> Linked:
            maker = connection.scalar(select(codes.c.created_by).where(usable))
            if maker is None:
                raise LinkError(UNKNOWN_CODE)
            if maker == me:
                raise LinkError(OWN_CODE)
            person = self._person_in(connection, maker)
            if self._person_in(connection, me) == person:
                raise LinkError(f"{me} and {maker} are linked already.\nSee who you are: /whoami")
            if self._has_link_in(connection, me):
                raise LinkError(
                    f"{me} is linked to other identities already.\n"
                    f"Unlink it first: /unlink {me}, then send /link CODE again."
                )
            mine = self.known.within(connection, identity).user
            theirs = self.known.within(connection, Identity(*_split(maker))).user
            held = mine.roles if mine is not None else {}
            given = theirs.roles if theirs is not None else {}
            if any(role > given.get(where, 0) for where, role in held.items()):
                # A code brings its maker's roles to whoever types it, never the other way:
                # someone talked into typing a stranger's code must not hand over their roles.
                raise LinkError(
                    f"{me} holds roles that {maker} does not, so this code cannot link them.\n"
                    "Link the other way: send /link here, then /link CODE on the other app."
                )
            claim = update(codes).where(usable).values(used_by=me, used_at=now)
            if not connection.execute(claim).rowcount:
                raise LinkError(UNKNOWN_CODE)
            if not self._has_link_in(connection, maker):
                # The maker's first link: its row comes first (the person is keyed by it).
                self._insert_in(connection, maker, person, by=me, now=now)
            self._insert_in(connection, me, person, by=me, now=now)
            return Linked(person, me, maker, tuple(self._current_in(connection, person)))

        try:
            return await db.transaction(self._engine, work)
        except IntegrityError:  # a link of the same identity committed meanwhile
            raise LinkError(
                "Another link of this identity was made at the same moment.\n"
                "See who you are now: /whoami"
            ) from None

    async def unlink(self, identity: Identity, *, by: str, now: datetime) -> Unlinked | None:
        """Take ``identity`` out of its person (None: it was linked to nobody). The row is kept,
        closed, for the rules that look back; a person left with one identity is none any more,
        and one whose key was this identity's moves to another identity's key."""
        platform, user_id = checked_identity(identity.platform, identity.user_id)
        key, now = f"{platform}:{user_id}", aware(now, "now")
        links, by = self._links, by[:_KEY]

        def close(connection: Connection, keys: Sequence[str]) -> None:
            for closed in keys:
                p, u = _split(closed)
                connection.execute(
                    update(links)
                    .where(
                        links.c.platform == p, links.c.user_id == u, links.c.unlinked_at.is_(None)
                    )
                    .values(unlinked_at=now, unlinked_by=by)
                )

        def work(connection: Connection) -> Unlinked | None:
            person = self._person_in(connection, key)
            group = self._current_in(connection, person)
            if key not in group:
                return None
            others = tuple(k for k in group if k != key)
            close(connection, [key])
            if len(others) == 1:
                close(connection, others)  # one identity alone needs no link
            elif others and person == key:
                # The person was keyed by this identity, which is now a person of its own: the
                # others move to the key of the first of them (old rows closed, kept).
                close(connection, others)
                for other in others:
                    self._insert_in(connection, other, others[0], by=by, now=now)
            return Unlinked(key, person, others)

        return await db.transaction(self._engine, work)

    # -- inside a transaction -----------------------------------------------------------------

    def _person_in(self, connection: Connection, key: str) -> str:
        platform, user_id = _split(key)
        person = connection.scalar(self._person_of, {"p_platform": platform, "p_user_id": user_id})
        return key if person is None else str(person)

    def _current_in(self, connection: Connection, person: str) -> list[str]:
        links = self._links
        rows = connection.execute(
            select(links.c.platform, links.c.user_id)
            .where(links.c.person == person, links.c.unlinked_at.is_(None))
            .order_by(links.c.linked_at, links.c.id)
        ).all()
        return [f"{p}:{u}" for p, u in rows]

    def _has_link_in(self, connection: Connection, key: str) -> bool:
        """Whether ``key`` is linked now (one of a person's several identities)."""
        platform, user_id = _split(key)
        values = {"p_platform": platform, "p_user_id": user_id}
        return connection.scalar(self._person_of, values) is not None

    def _insert_in(
        self, connection: Connection, key: str, person: str, *, by: str, now: datetime
    ) -> None:
        platform, user_id = _split(key)
        connection.execute(
            self._links.insert().values(
                platform=platform,
                user_id=user_id,
                person=person,
                linked_at=now,
                linked_by=by,
            )
        )
