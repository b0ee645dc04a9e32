"""bot: button cards (server-side state behind chat buttons) and one-time invites.

Revision ID: bot0002
Revises: bot0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bot0002"
down_revision: str | Sequence[str] | None = "bot0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bot_buttons",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("card", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("owner", sa.String(96)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(16)),
        sa.Column("decided_by", sa.String(160)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_bot_buttons"),
    )
    op.create_index("ix_bot_buttons_card", "bot_buttons", ["card"])
    op.create_index("ix_bot_buttons_expires_at", "bot_buttons", ["expires_at"])
    op.create_table(
        "bot_invites",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.SmallInteger, nullable=False),
        sa.Column("distributor", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(96), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_by", sa.String(96)),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("role BETWEEN 1 AND 4", name="ck_bot_invites_role_known"),
        sa.PrimaryKeyConstraint("code_hash", name="pk_bot_invites"),
    )


def downgrade() -> None:
    op.drop_table("bot_invites")
    op.drop_index("ix_bot_buttons_expires_at", "bot_buttons")
    op.drop_index("ix_bot_buttons_card", "bot_buttons")
    op.drop_table("bot_buttons")
