"""bot: issued codes encrypted at rest; the audit trail keeps a fingerprint, never a usable code.

Revision ID: bot0005
Revises: bot0004
Create Date: 2026-12-05

Why here, in the migration, and not later at start-up: the upgrade is one transaction, so codes
are encrypted and the plain-text columns dropped together, or nothing happens; no process ever
sees a half-encrypted table, and nothing is left in plain text once ``erm-bot db upgrade`` (or any
start, which migrates) has run. The keys reach the revision as ``config.attributes["secret_box"]``
(a :class:`erm.vault.SecretBox`, or a function that makes one, so that a database with nothing to
encrypt upgrades without keys): :func:`bot.store.migrate` passes what the settings give.

- ``bot_issued_codes``: ``code_dec`` and ``code_hex`` become ``code_secret`` (a SecretBox
  envelope of ``{"dec": ..., "hex": ...}`` bound to the row's distributor and item) and
  ``code_last3``.
- ``bot_audit_log``: ``erm_code_event`` (ERM's hex form of the code, for OpenPAYGO items the
  keypad code itself) becomes ``fp:<key id>.<keyed hash>·…<last 3>`` (``SecretBox.fingerprint`` of
  the decimal code when the issued-codes table knows it, else of the stored value). Rows are
  append-only and chained by hash, so the triggers are lifted for this one transaction, the chain
  is recomputed from the first rewritten row, and a row is appended saying so, with the last hash
  the chain had before (``erm-bot audit verify`` accepts the result).
- ``bot_requests``: the reply kept for a repeat of a request (a day) has its codes sealed under
  the same keys (:func:`bot.code_secrets.seal_reply`); an invite's stored reply loses its code
  and says it was shown once, as replies of new invites are stored.
- The old values must not linger where a dump would find them: SQLite overwrites freed space
  (``secure_delete``) and PostgreSQL rewrites both tables, leaving no dead row versions.

Downgrade decrypts the codes back into plain-text columns (it needs the keys too); fingerprints
cannot be turned back into codes, so the audit rows keep them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from alembic.util import CommandError

from bot.code_secrets import seal_reply
from erm.db import UtcDateTime
from erm.secret_box import FINGERPRINT_PREFIX, SecretBox

revision: str = "bot0005"
down_revision: str | Sequence[str] | None = "bot0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GENESIS = "0" * 64
_APPEND_ONLY = "the audit log is append-only"
_AUDIT_FIELDS = (
    "at",
    "platform",
    "chat_id",
    "user_id",
    "user_name",
    "command",
    "arguments",
    "outcome",
    "detail",
    "distributor",
    "item_id",
    "erm_code_event",
    "approval_id",
    "request_key",
)

_codes = sa.table(
    "bot_issued_codes",
    sa.column("id", sa.Integer()),
    sa.column("distributor", sa.String()),
    sa.column("item_id", sa.String()),
    sa.column("code_dec", sa.String()),
    sa.column("code_hex", sa.String()),
    sa.column("code_secret", sa.Text()),
    sa.column("code_last3", sa.String()),
)
_requests = sa.table("bot_requests", sa.column("key", sa.String()), sa.column("reply", sa.Text()))
_audit = sa.table(
    "bot_audit_log",
    sa.column("id", sa.Integer()),
    sa.column("at", UtcDateTime()),
    *(sa.column(name, sa.String()) for name in _AUDIT_FIELDS[1:]),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


class _Keys:
    """The SecretBox, asked for only when there is something to encrypt."""

    def __init__(self) -> None:
        self._box: SecretBox | None = None

    def box(self, why: str) -> SecretBox:
        if self._box is None:
            given: SecretBox | Callable[[], SecretBox] | None = context.config.attributes.get(
                "secret_box"
            )
            try:
                box = given() if callable(given) and not isinstance(given, SecretBox) else given
            except Exception as exc:  # the settings' own words: no key, a malformed key
                raise CommandError(f"{why}, which needs the keys: {exc}") from None
            if not isinstance(box, SecretBox):
                raise CommandError(
                    f"{why}, which needs the keys: set ERM_BOT_SECRET_KEYS as the bot has it,"
                    " then run `erm-bot db upgrade`"
                )
            self._box = box
        return self._box


def upgrade() -> None:
    bind = op.get_bind()
    keys = _Keys()
    if bind.dialect.name == "sqlite":
        # Freed space (old row versions, the dropped table) is overwritten with zeros.
        bind.exec_driver_sql("PRAGMA secure_delete=ON")
    known = {
        (row.distributor, row.item_id, row.code_hex): row.code_dec
        for row in bind.execute(
            sa.select(_codes.c.distributor, _codes.c.item_id, _codes.c.code_hex, _codes.c.code_dec)
        )
        if row.code_hex
    }
    _fingerprint_audit(bind, keys, known)
    _encrypt_codes(bind, keys)
    _seal_stored_replies(bind, keys)


def _encrypt_codes(bind: sa.Connection, keys: _Keys) -> None:
    op.add_column("bot_issued_codes", sa.Column("code_secret", sa.Text(), nullable=True))
    op.add_column("bot_issued_codes", sa.Column("code_last3", sa.String(3), nullable=True))
    rows = bind.execute(
        sa.select(
            _codes.c.id,
            _codes.c.distributor,
            _codes.c.item_id,
            _codes.c.code_dec,
            _codes.c.code_hex,
        )
    ).all()
    if rows:
        box = keys.box(f"{len(rows)} issued code(s) are stored in plain text and must be encrypted")
        for row in rows:
            plaintext = json.dumps({"dec": row.code_dec, "hex": row.code_hex})
            context_ = f"bot_issued_codes|{row.distributor}|{row.item_id}|code_secret"
            bind.execute(
                _codes.update()
                .where(_codes.c.id == row.id)
                .values(
                    code_secret=box.encrypt(plaintext, context=context_),
                    code_last3="".join(ch for ch in row.code_dec if ch.isdigit())[-3:],
                )
            )
    with op.batch_alter_table("bot_issued_codes") as batch:
        batch.alter_column("code_secret", existing_type=sa.Text(), nullable=False)
        batch.alter_column("code_last3", existing_type=sa.String(3), nullable=False)
        batch.drop_column("code_dec")
        batch.drop_column("code_hex")
    _rewrite(bind, "bot_issued_codes", "code_secret", "text")


def _seal_stored_replies(bind: sa.Connection, keys: _Keys) -> None:
    rows = bind.execute(
        sa.select(_requests.c.key, _requests.c.reply).where(_requests.c.reply.is_not(None))
    ).all()
    for row in rows:
        reply = json.loads(row.reply)
        if str(reply.get("title") or "").startswith("Invite: "):
            reply = {
                **reply,
                "fields": [],
                "lines": ["Its code was shown once, in the first answer, and is not kept."],
            }
        elif reply.get("codes"):
            box = keys.box("stored replies hold codes in plain text and must be encrypted")
            reply = seal_reply(box, row.key, reply)
        else:
            continue
        text = json.dumps(reply, ensure_ascii=False, separators=(",", ":"))
        bind.execute(_requests.update().where(_requests.c.key == row.key).values(reply=text))
    _rewrite(bind, "bot_requests", "reply", "text")


def _fingerprint_audit(bind: sa.Connection, keys: _Keys, known: dict[tuple[Any, ...], str]) -> None:
    plain = bind.scalar(
        sa.select(sa.func.count()).where(
            _audit.c.erm_code_event.is_not(None),
            _audit.c.erm_code_event.not_like(f"{FINGERPRINT_PREFIX}%"),
        )
    )
    if not plain:
        return
    box = keys.box(f"{plain} audit row(s) hold unlock codes that must become fingerprints")
    _drop_triggers(bind)
    rows = bind.execute(sa.select(_audit).order_by(_audit.c.id)).mappings().all()
    prev_hash = _GENESIS
    changed = 0
    first: int | None = None
    old_last = rows[-1]["hash"] if rows else _GENESIS
    for row in rows:
        fields = {name: row[name] for name in _AUDIT_FIELDS}
        value = fields["erm_code_event"]
        if value and not value.startswith(FINGERPRINT_PREFIX):
            code = known.get((row["distributor"], row["item_id"], value), value)
            fields["erm_code_event"] = box.fingerprint(code)
            changed += 1
            first = row["id"] if first is None else first
        digest = _row_hash(row["id"], fields, prev_hash)
        if first is not None:
            bind.execute(
                _audit.update()
                .where(_audit.c.id == row["id"])
                .values(erm_code_event=fields["erm_code_event"], prev_hash=prev_hash, hash=digest)
            )
        prev_hash = digest
    marker: dict[str, Any] = {
        "at": datetime.now(UTC),
        "platform": "system",
        "chat_id": None,
        "user_id": "erm-bot",
        "user_name": "erm-bot",
        "command": "db upgrade",
        "arguments": revision,
        "outcome": "rechained",
        "detail": (
            f"{changed} unlock code(s) replaced by fingerprints; hashes recomputed from row"
            f" {first}; the last hash before was {old_last}"
        ),
        "distributor": None,
        "item_id": None,
        "erm_code_event": None,
        "approval_id": None,
        "request_key": None,
    }
    marker_id = (rows[-1]["id"] if rows else 0) + 1
    bind.execute(
        _audit.insert().values(
            id=marker_id,
            prev_hash=prev_hash,
            hash=_row_hash(marker_id, marker, prev_hash),
            **marker,
        )
    )
    _rewrite(bind, "bot_audit_log", "erm_code_event", "varchar(64)")
    _create_triggers(bind)


def _row_hash(row_id: int, fields: dict[str, Any], prev_hash: str) -> str:
    """``bot.audit.row_hash`` as it is at this revision (a migration must not follow later code)."""
    payload = dict(fields)
    at = payload["at"]
    if isinstance(at, datetime):
        payload["at"] = at.astimezone(UTC).isoformat(timespec="microseconds")
    payload["id"] = row_id
    payload["prev_hash"] = prev_hash
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _rewrite(bind: sa.Connection, table: str, column: str, type_: str) -> None:
    """PostgreSQL: rewrite ``table`` so no old row version (with a plain-text code) survives.

    An expression in USING forces a rewrite of the whole table: only live rows are copied, and
    dropped columns are left out. (SQLite's secure_delete does this job there.)
    """
    if bind.dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {type_} USING ({column} || '')")


def _drop_triggers(bind: sa.Connection) -> None:
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER bot_audit_log_no_change ON bot_audit_log")
        op.execute("DROP TRIGGER bot_audit_log_no_truncate ON bot_audit_log")
    else:
        op.execute("DROP TRIGGER bot_audit_log_no_update")
        op.execute("DROP TRIGGER bot_audit_log_no_delete")


def _create_triggers(bind: sa.Connection) -> None:
    """The append-only triggers of bot0001, again (PostgreSQL's function was kept)."""
    if bind.dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER bot_audit_log_no_change BEFORE UPDATE OR DELETE ON bot_audit_log"
            " FOR EACH ROW EXECUTE FUNCTION bot_audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER bot_audit_log_no_truncate BEFORE TRUNCATE ON bot_audit_log"
            " FOR EACH STATEMENT EXECUTE FUNCTION bot_audit_log_append_only()"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER bot_audit_log_no_{event.lower()} BEFORE {event} ON bot_audit_log"
            f" BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        )


def downgrade() -> None:
    bind = op.get_bind()
    op.add_column("bot_issued_codes", sa.Column("code_dec", sa.String(64), nullable=True))
    op.add_column("bot_issued_codes", sa.Column("code_hex", sa.String(64), nullable=True))
    rows = bind.execute(
        sa.select(_codes.c.id, _codes.c.distributor, _codes.c.item_id, _codes.c.code_secret)
    ).all()
    if rows:
        box = _Keys().box(f"{len(rows)} issued code(s) must be decrypted for the older schema")
        for row in rows:
            context_ = f"bot_issued_codes|{row.distributor}|{row.item_id}|code_secret"
            code = json.loads(box.decrypt(row.code_secret, context=context_))
            bind.execute(
                _codes.update()
                .where(_codes.c.id == row.id)
                .values(code_dec=code["dec"], code_hex=code["hex"])
            )
    with op.batch_alter_table("bot_issued_codes") as batch:
        batch.alter_column("code_dec", existing_type=sa.String(64), nullable=False)
        batch.alter_column("code_hex", existing_type=sa.String(64), nullable=False)
        batch.drop_column("code_secret")
        batch.drop_column("code_last3")
