"""bot: one person, several chat identities.

Two new tables (see :mod:`bot.people`); nothing existing changes, so the upgrade keeps every row:

- ``bot_links``: an identity linked to a person, from ``linked_at`` until ``unlinked_at``; at most
  one current link per identity (a unique index over the rows not unlinked).
- ``bot_link_codes``: one-time link codes, by hash only, with their maker, expiry and use.

The downgrade drops both: every identity is a person of its own again (its own grants, limits and
turns), and unused link codes stop working.

Revision ID: bot0007
Revises: bot0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bot0007"
down_revision: str | Sequence[str] | None = "bot0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)
_CURRENT = sa.text("unlinked_at IS NULL")
_PLATFORMS = "platform IN ('slack', 'telegram', 'console')"


def upgrade() -> None:
    op.create_table(
        "bot_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("person", sa.String(96), nullable=False),
        sa.Column("linked_at", _TIME, nullable=False),
        sa.Column("linked_by", sa.String(96), nullable=False),
        sa.Column("unlinked_at", _TIME, nullable=True),
        sa.Column("unlinked_by", sa.String(96), nullable=True),
        sa.CheckConstraint(_PLATFORMS, name="ck_bot_links_platform_known"),
        sa.PrimaryKeyConstraint("id", name="pk_bot_links"),
    )
    op.create_index("ix_bot_links_identity", "bot_links", ["platform", "user_id"])
    op.create_index("ix_bot_links_person", "bot_links", ["person"])
    op.create_index(
        "uq_bot_links_current",
        "bot_links",
        ["platform", "user_id"],
        unique=True,
        sqlite_where=_CURRENT,
        postgresql_where=_CURRENT,
    )
    op.create_table(
        "bot_link_codes",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(96), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("used_by", sa.String(96), nullable=True),
        sa.Column("used_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name="pk_bot_link_codes"),
    )
    op.create_index("ix_bot_link_codes_created_by", "bot_link_codes", ["created_by"])
    op.create_index("ix_bot_link_codes_expires_at", "bot_link_codes", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_bot_link_codes_expires_at", "bot_link_codes")
    op.drop_index("ix_bot_link_codes_created_by", "bot_link_codes")
    op.drop_table("bot_link_codes")
    op.drop_index("uq_bot_links_current", "bot_links")
    op.drop_index("ix_bot_links_person", "bot_links")
    op.drop_index("ix_bot_links_identity", "bot_links")
    op.drop_table("bot_links")
