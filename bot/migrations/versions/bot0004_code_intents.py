"""bot: code requests in flight (intents), reconciled against ERM history after a crash.

A new table only: nothing existing changes, so the upgrade keeps every row and the downgrade
drops the table (open intents are lost with it: downgrade only with no code request in flight).

Revision ID: bot0004
Revises: bot0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bot0004"
down_revision: str | Sequence[str] | None = "bot0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)
_STATES = "'open', 'delivered', 'refused', 'ok', 'uncertain', 'not_issued'"


def upgrade() -> None:
    op.create_table(
        "bot_code_intents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("distributor", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("oem_item_id", sa.String(64), nullable=False),
        sa.Column("item_label", sa.Text(), nullable=False),
        sa.Column("code_type", sa.String(16), nullable=False),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reference", sa.String(16), nullable=False),
        sa.Column("request_key", sa.String(255), nullable=False),
        sa.Column("approval_id", sa.String(64), nullable=True),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("requester_platform", sa.String(16), nullable=False),
        sa.Column("requester_user", sa.String(64), nullable=False),
        sa.Column("requester_name", sa.Text(), nullable=True),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("notify_user", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("closed_at", _TIME, nullable=True),
        sa.CheckConstraint(f"state IN ({_STATES})", name="ck_bot_code_intents_state_known"),
        sa.CheckConstraint("days IS NULL OR days > 0", name="ck_bot_code_intents_days_positive"),
        sa.PrimaryKeyConstraint("id", name="pk_bot_code_intents"),
    )
    op.create_index(
        "ix_bot_code_intents_item", "bot_code_intents", ["distributor", "item_id", "state"]
    )
    op.create_index("ix_bot_code_intents_state", "bot_code_intents", ["state", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_bot_code_intents_state", "bot_code_intents")
    op.drop_index("ix_bot_code_intents_item", "bot_code_intents")
    op.drop_table("bot_code_intents")
