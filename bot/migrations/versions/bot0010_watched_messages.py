"""bot: held messages may be *watched*: sent, kept until the platform may report them undelivered.

``bot_held_messages.message_ref`` (nullable): the platform's id of a message the bot started and
the platform took, which it may still report undelivered (a ``failed`` status for a closed
messaging window). Such a row is never handed over; the report finds it by this id, so a
restart or another replica no longer loses it (``bot.storage.held``). Existing rows are held
messages and keep NULL. The downgrade drops watched rows first (they are copies of messages that
were sent), then the column.

Revision ID: bot0010
Revises: bot0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bot0010"
down_revision: str | Sequence[str] | None = "bot0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bot_held_messages") as batch:
        batch.add_column(sa.Column("message_ref", sa.String(128), nullable=True))
    op.create_index("ix_bot_held_messages_ref", "bot_held_messages", ["platform", "message_ref"])


def downgrade() -> None:
    op.drop_index("ix_bot_held_messages_ref", "bot_held_messages")
    op.execute("DELETE FROM bot_held_messages WHERE message_ref IS NOT NULL")
    with op.batch_alter_table("bot_held_messages") as batch:
        batch.drop_column("message_ref")
