"""What every store shares: the declarative base, migrations, dialect helpers, checked values,
and :class:`Store` (the unit of work: a step is written once, run alone or with others in one
transaction)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from sqlalchemy import (
    Connection,
    Executable,
    MetaData,
    Table,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase

from bot.errors import UsageError
from erm import db
from erm.distributors import DistributorRow
from erm.errors import UnknownDistributorError
from erm.secret_box import SecretBox

BOT_MIGRATIONS = Path(__file__).parent.parent / "migrations" / "versions"
"""The bot branch's Alembic revisions, for :func:`erm.db.upgrade` (or use :func:`migrate`)."""


# A platform's name as stored: which platforms exist is the adapters' to say (they register them
# with bot.permissions.Permissions); the database only keeps the name.
PLATFORM_NAME = re.compile(r"[a-z][a-z0-9_-]{0,15}")

Clock = Callable[[], datetime]
T = TypeVar("T")
MAX_USER_ID = 64
MAX_DISTRIBUTOR = 32
MAX_KEY = 255
MAX_FINGERPRINT = 128
MAX_ITEM_ID = 64
MAX_HOLDER = 255
MAX_SCOPE = 64
MAX_CODE_TYPE = 16
CODE_TAIL = 3


def utcnow() -> datetime:
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


class BotBase(DeclarativeBase):
    """Declarative base of the bot's tables.

    A metadata of its own, not erm's: erm's schema (and its migration check) stays exactly erm's
    branch. The same naming convention keeps constraint names stable for batch migrations.
    """

    metadata = MetaData(naming_convention=db.NAMING_CONVENTION)


DISTRIBUTOR_NAME = DistributorRow.__table__.c.name


def table_of(model: type[BotBase]) -> Table:
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


def aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return moment.astimezone(UTC)


def checked_text(value: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError(f"{what} must be 1 to {limit} characters")
    return value


def checked_identity(platform: str, user_id: str) -> tuple[str, str]:
    platform = platform.strip().lower() if isinstance(platform, str) else ""
    if not PLATFORM_NAME.fullmatch(platform):
        raise UsageError(f"{platform[:20]!r} is not a platform name (write platform:user_id)")
    user_id = user_id.strip() if isinstance(user_id, str) else ""
    if not user_id or len(user_id) > MAX_USER_ID:
        raise UsageError(f"a user id is 1 to {MAX_USER_ID} characters")
    return platform, user_id


def checked_distributor(name: str) -> str:
    # Stored names are lower case (erm.vault); anything else simply matches no distributor.
    return name.strip().lower() if isinstance(name, str) else ""


def unknown_distributor(name: str) -> UnknownDistributorError:
    shown = name if len(name) <= 40 else name[:39] + "…"
    return UnknownDistributorError(f"no distributor named {shown!r} is configured")


class Store:
    """A store over one database: the unit of work every store shares.

    A step is written once, as a synchronous method taking the transaction's connection first and
    decorated with :func:`step`. Called plainly, it is a transaction of its own
    (``await store.policy("acme")``); ``store.policy.within(connection, "acme")`` runs it inside a
    transaction someone else opened, so the dispatcher groups several stores' steps into one.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def transaction(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(connection)`` as one transaction (:func:`erm.db.transaction`)."""
        return await db.transaction(self._engine, work)

    async def _execute(self, statement: Executable) -> None:
        """Run one statement as a transaction of its own."""
        await self.transaction(lambda connection: connection.execute(statement))

    async def _changed(self, statement: Executable) -> bool:
        """Run one UPDATE or DELETE as a transaction of its own; whether it changed a row."""
        return await self.transaction(lambda c: bool(c.execute(statement).rowcount))

    async def _scalar(self, statement: Executable) -> Any:
        """The first column of the first row of one statement, run as a transaction."""
        return await self.transaction(lambda connection: connection.scalar(statement))


S = TypeVar("S", bound=Store)
P = ParamSpec("P")
R = TypeVar("R")


class step(Generic[S, P, R]):  # lower case: used as a decorator, like property
    """A store method that is one step of a transaction: see :class:`Store`."""

    def __init__(self, method: Callable[Concatenate[S, Connection, P], R]) -> None:
        self._method = method
        self._name = method.__name__
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type[S], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, store: None, owner: type[S]) -> step[S, P, R]: ...
    @overload
    def __get__(self, store: S, owner: type[S]) -> BoundStep[P, R]: ...
    def __get__(self, store: S | None, owner: type[S]) -> step[S, P, R] | BoundStep[P, R]:
        if store is None:
            return self
        # Made once per store: the instance's own attribute answers every later lookup (this
        # descriptor has no __set__), so a step on the hot path costs no allocation per call.
        bound: BoundStep[P, R] = BoundStep(store, partial(self._method, store))
        store.__dict__[self._name] = bound
        return bound


class BoundStep(Generic[P, R]):
    """A store's step: awaited alone (one transaction), or run :meth:`within` another."""

    __slots__ = ("_bound", "_store")

    def __init__(self, store: Store, bound: Callable[Concatenate[Connection, P], R]) -> None:
        self._store = store
        self._bound = bound

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        bound = self._bound
        return await self._store.transaction(lambda connection: bound(connection, *args, **kwargs))

    def within(self, connection: Connection, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._bound(connection, *args, **kwargs)
