"""The audit log: one row per command, append-only, each row chained to the one before by a hash.

Row ``n`` stores ``prev_hash`` (row ``n - 1``'s ``hash``; 64 zeros for row 1) and
``hash = SHA-256(canonical JSON of row n's fields and prev_hash)``. Ids are assigned here, 1, 2,
3, ... without gaps, so :meth:`AuditLog.verify` can tell an edited row (its hash no longer matches
its fields), a deleted row (a gap in the ids or a broken ``prev_hash`` link) and reordered rows (the
id is hashed too).

What the chain cannot show on its own: rows cut off at the end, or a whole tail rewritten by
someone who recomputes every later hash. Keep :attr:`AuditVerdict.last_hash` somewhere else (a
ticket, a chat message) to catch those.

The database guards the log as well: appends are serialised across processes (PostgreSQL: a
transaction-scoped advisory lock; SQLite: the ``BEGIN IMMEDIATE`` every transaction starts with),
``prev_hash`` is unique so the chain cannot fork, and triggers refuse UPDATE and DELETE (and, on
PostgreSQL, TRUNCATE) of audit rows.

No usable unlock code is kept: ``erm_code_event`` is given the code (or ERM's hex form of it, for
OpenPAYGO items the keypad code itself) and stores its fingerprint, ``fp:<key id>.<keyed
hash>·…<last 3>`` (:meth:`erm.vault.SecretBox.fingerprint`): enough to tell which code a row is
about, and to check a code someone reads out against it, never to type it into a device. A log
opened without the keys keeps only ``…<last 3>``. Rows written before that (release 0.1) were
rewritten by migration ``bot0005``, which recomputed the chain and appended a row saying so.

The canonical JSON (the :func:`row_hash` input) is ``json.dumps`` of an object with the keys
``id``, ``at`` (ISO 8601, UTC, microseconds, ``+00:00``), ``platform``, ``chat_id``, ``user_id``,
``user_name``, ``command``, ``arguments``, ``outcome``, ``detail``, ``distributor``, ``item_id``,
``erm_code_event``, ``approval_id``, ``request_key`` and ``prev_hash``, sorted keys, separators
``,`` and ``:``, UTF-8 without escapes; absent values are ``null``. An export carries every field,
so the chain can be checked from a CSV file alone: a cell starting with ``'`` had one ``'`` put in
front so that a spreadsheet shows it as text rather than running it as a formula (anything a
stranger chose, like a display name, may start with ``=``); :func:`csv_value` takes it off again.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TextIO

from sqlalchemy import (
    CheckConstraint,
    Connection,
    Index,
    Integer,
    RowMapping,
    Select,
    String,
    Table,
    Text,
    and_,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import ColumnElement, FromClause

from bot.roles import Role
from bot.storage.base import BotBase, Store, step
from erm import db
from erm.db import UtcDateTime
from erm.secret_box import FINGERPRINT_PREFIX, SecretBox, code_tail

__all__ = [
    "CSV_COLUMNS",
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditRecord",
    "AuditVerdict",
    "csv_value",
    "fingerprint_of",
    "row_hash",
]

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first row."""

# Any constant unique to this purpose (erm.db uses another one for migrations).
_APPEND_LOCK_ID = 0x626F7461756474  # "botaudt"
_BATCH = 500

# Column limits: a longer value is cut, never refused (an audit row must always be written).
_LIMITS: dict[str, int] = {
    "platform": 16,
    "chat_id": 128,
    "user_id": 64,
    "user_name": 128,
    "command": 64,
    "arguments": 2000,
    "outcome": 32,
    "detail": 1000,
    "distributor": 64,
    "item_id": 64,
    "erm_code_event": 64,
    "approval_id": 64,
    "request_key": 255,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """What happened: who ran which command where, and how it ended.

    ``arguments`` and ``detail`` are stored as given: the caller leaves secrets out of them.
    ``outcome`` is a short word: ok, denied, error, duplicate, invalid, rate_limited, busy, ...
    """

    at: datetime
    platform: str
    chat_id: str | None = None
    user_id: str
    user_name: str | None = None
    command: str
    arguments: str = ""
    outcome: str
    detail: str = ""
    distributor: str | None = None
    item_id: str | None = None
    # The code (or ERM's hex form of it): stored as its fingerprint, see the module docstring.
    erm_code_event: str | None = None
    approval_id: str | None = None
    request_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord(AuditEntry):
    """A stored audit row: the entry as kept (long values cut), its id, its place in the chain."""

    id: int
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    """What :meth:`AuditLog.verify` found.

    ``rows`` counts the rows checked (all of them when ``ok``; up to and including the first bad
    one otherwise). ``last_hash`` is the newest row's hash when ``ok``: noted down elsewhere, it
    lets a later check notice rows removed from the end.
    """

    ok: bool
    rows: int
    first_bad_id: int | None
    problem: str | None
    last_hash: str | None = None


_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(AuditEntry))
CSV_COLUMNS = ("id", *_ENTRY_FIELDS, "prev_hash", "hash")
"""The columns of :meth:`AuditLog.export_csv`, in order."""


class AuditRow(BotBase):
    __tablename__ = "bot_audit_log"
    __table_args__ = (
        CheckConstraint("length(hash) = 64 AND length(prev_hash) = 64", name="hash_length"),
        Index("ix_bot_audit_log_at", "at"),
        Index("ix_bot_audit_log_user", "platform", "user_id"),
        Index("ix_bot_audit_log_item_id", "item_id"),
        Index("ix_bot_audit_log_distributor", "distributor"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    platform: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str | None] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(64))
    user_name: Mapped[str | None] = mapped_column(String(128))
    command: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    distributor: Mapped[str | None] = mapped_column(String(64))
    item_id: Mapped[str | None] = mapped_column(String(64))
    erm_code_event: Mapped[str | None] = mapped_column(String(64))
    approval_id: Mapped[str | None] = mapped_column(String(64))
    request_key: Mapped[str | None] = mapped_column(String(255))
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


def _as_table(clause: FromClause) -> Table:
    assert isinstance(clause, Table)  # narrows the declared FromClause for mypy
    return clause


_TABLE = _as_table(AuditRow.__table__)
# Built once: building a statement costs more than running it.
_LAST = select(_TABLE.c.id, _TABLE.c.hash).order_by(_TABLE.c.id.desc()).limit(1)
_INSERT = _TABLE.insert()
_APPEND_LOCK = text("SELECT pg_advisory_xact_lock(:lock)").bindparams(lock=_APPEND_LOCK_ID)


def row_hash(row_id: int, fields: Mapping[str, Any], prev_hash: str) -> str:
    """The hash of one row: SHA-256 hex of its canonical JSON (see the module docstring)."""
    payload: dict[str, Any] = {name: fields[name] for name in _ENTRY_FIELDS}
    at = payload["at"]
    if isinstance(at, datetime):
        payload["at"] = _timestamp(at)
    payload["id"] = row_id
    payload["prev_hash"] = prev_hash
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _timestamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _clean(value: str | None, limit: int) -> str | None:
    """A value every database stores and gives back unchanged: valid UTF-8, no NUL, not too long."""
    if value is None:
        return None
    value = str(value).encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return value[:limit]


# A spreadsheet runs a cell starting with one of these as a formula; ' itself, so that a
# quote put in front can always be told from one that was there.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def _csv_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_value(cell: str) -> str:
    """The stored value of an exported CSV cell (undoing the ``'`` put in front of formulas)."""
    return cell[1:] if cell.startswith("'") else cell


def fingerprint_of(code: str | None, box: SecretBox | None) -> str | None:
    """What the audit trail keeps of ``code``: its fingerprint, never the code itself.

    A value that already is a fingerprint is kept; without keys only ``…`` and the last 3
    characters are kept (nothing keyed can be made).
    """
    if code is None or not code.strip():
        return None
    if code.startswith(FINGERPRINT_PREFIX):
        return code
    if box is None:
        return code_tail(code).lstrip("·") or "…"
    return box.fingerprint(code)


class AuditLog(Store):
    """Append, check, search and export the audit log.

    ``box``: the keys codes are fingerprinted under; reading, checking and exporting need none.
    """

    def __init__(self, engine: AsyncEngine, *, box: SecretBox | None = None) -> None:
        super().__init__(engine)
        self._box = box

    @step
    def append(self, connection: Connection, entry: AuditEntry) -> AuditRecord:
        """Add a row at the end of the chain; returns it as stored. Inside a larger transaction,
        that transaction holds the end of the chain until it ends: keep it short."""
        at = entry.at
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("an audit entry's time must be timezone-aware")
        # Microseconds are what both databases keep; normalised here so the hash sees the same.
        values: dict[str, Any] = {"at": at.astimezone(UTC)}
        for name in _ENTRY_FIELDS[1:]:
            values[name] = _clean(getattr(entry, name), _LIMITS[name])
        values["erm_code_event"] = fingerprint_of(entry.erm_code_event, self._box)
        for name in ("platform", "user_id", "command", "outcome", "arguments", "detail"):
            values[name] = values[name] or ""
        if connection.dialect.name == "postgresql":
            # Held until commit: the next appender reads the row this one writes.
            connection.execute(_APPEND_LOCK)
        previous = connection.execute(_LAST).one_or_none()
        row_id = previous[0] + 1 if previous is not None else 1
        prev_hash = previous[1] if previous is not None else GENESIS_HASH
        digest = row_hash(row_id, values, prev_hash)
        connection.execute(
            _INSERT, {"id": row_id, "prev_hash": prev_hash, "hash": digest, **values}
        )
        return AuditRecord(id=row_id, prev_hash=prev_hash, hash=digest, **values)

    async def verify(self) -> AuditVerdict:
        """Recompute the whole chain; the first row that breaks it is reported."""
        rows = 0
        expected_id = 1
        prev_hash = GENESIS_HASH
        async for record in self._records():
            rows += 1
            if record.id != expected_id:
                missing = (
                    f"row {expected_id} is missing"
                    if record.id == expected_id + 1
                    else f"rows {expected_id} to {record.id - 1} are missing"
                )
                return AuditVerdict(False, rows, record.id, f"{missing} (deleted or renumbered)")
            fields = {name: getattr(record, name) for name in _ENTRY_FIELDS}
            if row_hash(record.id, fields, record.prev_hash) != record.hash:
                return AuditVerdict(
                    False,
                    rows,
                    record.id,
                    f"row {record.id} was changed after it was written"
                    " (its hash does not match its contents)",
                )
            if record.prev_hash != prev_hash:
                where = f"row {record.id - 1}" if record.id > 1 else "the start of the log"
                return AuditVerdict(
                    False,
                    rows,
                    record.id,
                    f"row {record.id} does not follow {where} (prev_hash differs):"
                    " rows were rewritten, removed or reordered",
                )
            prev_hash = record.hash
            expected_id += 1
        return AuditVerdict(True, rows, None, None, prev_hash if rows else None)

    async def export_csv(
        self, out: TextIO, *, since: datetime | None = None, until: datetime | None = None
    ) -> int:
        """Write rows with ``since <= at < until`` as CSV (header first, :data:`CSV_COLUMNS`).

        Times are ISO 8601 in UTC; absent values are empty cells. Returns the number of rows.
        Open ``out`` with ``newline=""``. A cell that a spreadsheet would run as a formula gets a
        ``'`` in front (see :func:`csv_value`).
        """
        conditions = []
        if since is not None:
            conditions.append(_TABLE.c.at >= aware(since, "since"))
        if until is not None:
            conditions.append(_TABLE.c.at < aware(until, "until"))
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        count = 0
        async for record in self._records(*conditions):
            row = [getattr(record, name) for name in CSV_COLUMNS]
            writer.writerow(
                _timestamp(value)
                if isinstance(value, datetime)
                else ""
                if value is None
                else _csv_cell(value)
                if isinstance(value, str)
                else value
                for value in row
            )
            count += 1
        return count

    async def recent(
        self,
        *,
        item_id: str | None = None,
        user: tuple[str, str] | None = None,
        distributor: str | None = None,
        limit: int = 20,
    ) -> list[AuditRecord]:
        """The newest rows first, optionally only those of an item, a user, a distributor."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be 1 to 1000")
        statement = select(_TABLE).order_by(_TABLE.c.id.desc()).limit(limit)
        if item_id is not None:
            statement = statement.where(_TABLE.c.item_id == item_id)
        if user is not None:
            platform, user_id = user
            statement = statement.where(_TABLE.c.platform == platform, _TABLE.c.user_id == user_id)
        if distributor is not None:
            statement = statement.where(
                or_(_TABLE.c.distributor == distributor, _older_rows_about(distributor))
            )
        rows = await db.transaction(self._engine, partial(_all_rows, statement=statement))
        return [AuditRecord(**row) for row in rows]

    async def _records(self, *conditions: Any) -> AsyncIterator[AuditRecord]:
        """Rows in id order, read in short transactions of a batch each (the log is append-only)."""
        after = 0
        while True:
            statement = (
                select(_TABLE)
                .where(_TABLE.c.id > after, *conditions)
                .order_by(_TABLE.c.id)
                .limit(_BATCH)
            )
            rows = await db.transaction(self._engine, partial(_all_rows, statement=statement))
            for row in rows:
                yield AuditRecord(**row)
            if len(rows) < _BATCH:
                return
            after = rows[-1]["id"]


def _older_rows_about(distributor: str) -> ColumnElement[bool]:
    """Rows of /grant, /revoke, /invite and /start written before they named their distributor
    (it was in ``detail`` only): matched by the exact detail each wrote, so never another
    distributor's (distributor names have no spaces; role labels are known)."""
    c = _TABLE.c
    labels = [role.label for role in Role]
    about = or_(
        *(
            c.detail.startswith(f"granted {label} at {distributor} to ", autoescape=True)
            for label in labels
        ),
        and_(
            c.command == "revoke",
            c.detail.startswith("revoked ", autoescape=True),
            c.detail.endswith(f" at {distributor}", autoescape=True),
        ),
        c.detail.in_(
            [f"invite for {label} at {distributor}" for label in labels]
            + [f"joined as {label} at {distributor}" for label in labels]
        ),
    )
    return and_(
        c.distributor.is_(None), c.command.in_(("grant", "revoke", "invite", "start")), about
    )


def _all_rows(connection: Connection, *, statement: Select[Any]) -> Sequence[RowMapping]:
    return connection.execute(statement).mappings().all()


def aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return moment.astimezone(UTC)
