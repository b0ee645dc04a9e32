"""bot: messages the bot started that could not reach their user yet, kept for their next message.

``bot_held_messages``: one row per kept message, the reply sealed (a SecretBox envelope bound to
its user), with when it expires and the claim of the process handing it over (see
``bot.storage.held``). No existing row changes; the downgrade drops the table and what it holds.

Revision ID: bot0009
Revises: bot0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bot0009"
down_revision: str | Sequence[str] | None = "bot0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bot_held_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("claim", sa.String(32), nullable=True),
        sa.Column("claimed_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_bot_held_messages"),
    )
    op.create_index("ix_bot_held_messages_user", "bot_held_messages", ["platform", "user_id", "id"])
    op.create_index("ix_bot_held_messages_expires_at", "bot_held_messages", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_bot_held_messages_expires_at", "bot_held_messages")
    op.drop_index("ix_bot_held_messages_user", "bot_held_messages")
    op.drop_table("bot_held_messages")
