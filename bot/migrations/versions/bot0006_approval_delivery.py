"""bot: approval cards shown only once posted, failed posts back off, one pending request per ask.

- ``bot_approvals.dedupe_key`` with a unique index over the pending rows: two identical requests
  sent at the same instant (two processes, two connections) make one request, not two.
- ``bot_approvals.run_until``: the lease of the process running an approved request; the
  recovery sweep finishes a request whose runner died only once the lease is over.
- ``bot_approval_cards.attempts`` / ``retry_at`` / ``failure``: a claim to post expires
  (``retry_at``), a failed post waits longer each time, and admins see why a chat is unreachable.

Existing rows are kept: pending requests get their key (the oldest of identical pending ones
keeps it; the others keep none and expire as before), cards need nothing (a card without a message
and without ``retry_at`` is one a dead process left claimed: the sweep posts it again).

Revision ID: bot0006
Revises: bot0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "bot0006"
down_revision: str | Sequence[str] | None = "bot0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)
_PENDING = sa.text("status = 'pending'")
_INDEX = "uq_bot_approvals_pending_dedupe_key"


def _key(row: Sequence[Any]) -> str:
    # Kept in step with bot.approval_store.dedupe_key (a revision must not import the app: the
    # function may change later, the rows written here may not).
    distributor, platform, user, item_id, code_type, days = row
    canonical = json.dumps(
        [distributor, f"{platform}:{user}", item_id, code_type, days], separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def upgrade() -> None:
    op.add_column("bot_approvals", sa.Column("dedupe_key", sa.String(64), nullable=True))
    op.add_column("bot_approvals", sa.Column("run_until", _TIME, nullable=True))
    op.add_column(
        "bot_approval_cards",
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("bot_approval_cards", sa.Column("retry_at", _TIME, nullable=True))
    op.add_column("bot_approval_cards", sa.Column("failure", sa.String(64), nullable=True))

    approvals = sa.table(
        "bot_approvals",
        sa.column("id", sa.String),
        sa.column("distributor", sa.String),
        sa.column("status", sa.String),
        sa.column("requester_platform", sa.String),
        sa.column("requester_user", sa.String),
        sa.column("item_id", sa.String),
        sa.column("code_type", sa.String),
        sa.column("days", sa.Integer),
        sa.column("created_at", _TIME),
        sa.column("dedupe_key", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            approvals.c.id,
            approvals.c.distributor,
            approvals.c.requester_platform,
            approvals.c.requester_user,
            approvals.c.item_id,
            approvals.c.code_type,
            approvals.c.days,
        )
        .where(approvals.c.status == "pending")
        .order_by(approvals.c.created_at, approvals.c.id)
    ).all()
    seen: set[str] = set()
    for row in rows:
        key = _key(row[1:])
        if key in seen:
            continue  # a duplicate made before this revision: it keeps no key
        seen.add(key)
        connection.execute(
            sa.update(approvals).where(approvals.c.id == row[0]).values(dedupe_key=key)
        )
    op.create_index(
        _INDEX,
        "bot_approvals",
        ["dedupe_key"],
        unique=True,
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index(_INDEX, "bot_approvals")
    with op.batch_alter_table("bot_approval_cards") as batch:
        batch.drop_column("failure")
        batch.drop_column("retry_at")
        batch.drop_column("attempts")
    with op.batch_alter_table("bot_approvals") as batch:
        batch.drop_column("run_until")
        batch.drop_column("dedupe_key")
