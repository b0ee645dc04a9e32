"""bot: approval policies, approval channels, approval requests and the cards that show them.

Revision ID: bot0003
Revises: bot0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bot0003"
down_revision: str | Sequence[str] | None = "bot0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bot_approval_policies",
        sa.Column("distributor", sa.String(32), nullable=False),
        sa.Column("free", sa.Boolean(), nullable=False),
        sa.Column("reset", sa.Boolean(), nullable=False),
        sa.Column("days_over", sa.Integer(), nullable=True),
        sa.Column("daily_count", sa.Integer(), nullable=True),
        sa.Column("supervisors", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(96), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["distributor"],
            ["erm_distributors.name"],
            name="fk_bot_approval_policies_distributor_erm_distributors",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("distributor", name="pk_bot_approval_policies"),
    )
    op.create_table(
        "bot_approval_channels",
        sa.Column("distributor", sa.String(32), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("set_by", sa.String(96), nullable=False),
        sa.Column("set_at", _TIME, nullable=False),
        sa.CheckConstraint(
            "platform IN ('slack', 'telegram')", name="ck_bot_approval_channels_platform_known"
        ),
        sa.ForeignKeyConstraint(
            ["distributor"],
            ["erm_distributors.name"],
            name="fk_bot_approval_channels_distributor_erm_distributors",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("distributor", "platform", name="pk_bot_approval_channels"),
    )
    op.create_table(
        "bot_approvals",
        sa.Column("id", sa.String(8), nullable=False),
        sa.Column("distributor", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requester_platform", sa.String(16), nullable=False),
        sa.Column("requester_user", sa.String(64), nullable=False),
        sa.Column("requester_name", sa.String(128), nullable=True),
        sa.Column("requester_chat", sa.String(128), nullable=True),
        sa.Column("origin_chat", sa.String(128), nullable=True),
        sa.Column("code_type", sa.String(16), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("item_label", sa.Text(), nullable=False),
        sa.Column("client_name", sa.Text(), nullable=True),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("command_text", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("needs", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("request_key", sa.String(255), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("remind_at", _TIME, nullable=False),
        sa.Column("reminded_at", _TIME, nullable=True),
        sa.Column("decided_by", sa.String(96), nullable=True),
        sa.Column("decided_by_name", sa.String(160), nullable=True),
        sa.Column("decided_at", _TIME, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("executed_at", _TIME, nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("delivered_at", _TIME, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'denied', 'expired', 'cancelled')",
            name="ck_bot_approvals_status_known",
        ),
        sa.CheckConstraint("days IS NULL OR days > 0", name="ck_bot_approvals_days_positive"),
        sa.PrimaryKeyConstraint("id", name="pk_bot_approvals"),
    )
    op.create_index("ix_bot_approvals_status_expires_at", "bot_approvals", ["status", "expires_at"])
    op.create_index(
        "ix_bot_approvals_distributor_status", "bot_approvals", ["distributor", "status"]
    )
    op.create_index(
        "ix_bot_approvals_requester",
        "bot_approvals",
        ["requester_platform", "requester_user", "created_at"],
    )
    op.create_index("ix_bot_approvals_fingerprint", "bot_approvals", ["fingerprint"])
    op.create_table(
        "bot_approval_cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("approval_id", sa.String(8), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("message_ref", sa.String(64), nullable=True),
        sa.Column("posted_at", _TIME, nullable=False),
        sa.Column("settled_at", _TIME, nullable=True),
        sa.CheckConstraint("kind IN ('card', 'reminder')", name="ck_bot_approval_cards_kind_known"),
        sa.ForeignKeyConstraint(
            ["approval_id"],
            ["bot_approvals.id"],
            name="fk_bot_approval_cards_approval_id_bot_approvals",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bot_approval_cards"),
        sa.UniqueConstraint(
            "approval_id",
            "platform",
            "chat_id",
            "kind",
            name="uq_bot_approval_cards_approval_id",
        ),
    )


def downgrade() -> None:
    op.drop_table("bot_approval_cards")
    op.drop_index("ix_bot_approvals_fingerprint", "bot_approvals")
    op.drop_index("ix_bot_approvals_requester", "bot_approvals")
    op.drop_index("ix_bot_approvals_distributor_status", "bot_approvals")
    op.drop_index("ix_bot_approvals_status_expires_at", "bot_approvals")
    op.drop_table("bot_approvals")
    op.drop_table("bot_approval_channels")
    op.drop_table("bot_approval_policies")
