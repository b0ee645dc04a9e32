"""bot: platform names are checked by the application, not by CHECK constraints.

A new chat platform is an adapter plus one registration line; it must not need a migration. The
four ``platform IN (...)`` constraints go; the bot checks identities against the platforms its
adapters register (``adapters.platforms``) before writing them. Every row stays as it is.

The downgrade puts the constraints back; it fails if rows of a platform they do not list exist.

Revision ID: bot0008
Revises: bot0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bot0008"
down_revision: str | Sequence[str] | None = "bot0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (constraint name, the condition it held before this revision)
_CHECKS = {
    "bot_grants": ("ck_bot_grants_platform_known", "platform IN ('slack', 'telegram', 'console')"),
    "bot_users": ("ck_bot_users_platform_known", "platform IN ('slack', 'telegram', 'console')"),
    "bot_links": ("ck_bot_links_platform_known", "platform IN ('slack', 'telegram', 'console')"),
    "bot_approval_channels": (
        "ck_bot_approval_channels_platform_known",
        "platform IN ('slack', 'telegram')",
    ),
}


def upgrade() -> None:
    found = sa.inspect(op.get_bind())
    for table in _CHECKS:
        # The names as the database holds them: the naming convention prefixed the names the
        # earlier revisions gave (ck_bot_grants_ck_bot_grants_platform_known), so they are read.
        # PostgreSQL also shortens names over 63 characters, so the condition tells them apart.
        names = [
            str(check["name"])
            for check in found.get_check_constraints(table)
            if "platform" in str(check.get("sqltext", ""))
        ]
        # Batch mode: SQLite cannot drop a constraint in place, so the table is copied without it.
        with op.batch_alter_table(table) as batch:
            for name in names:
                batch.drop_constraint(op.f(name), type_="check")  # op.f: the name is final


def downgrade() -> None:
    for table, (name, condition) in _CHECKS.items():
        with op.batch_alter_table(table) as batch:
            # Named as the earlier revisions named it (the naming convention prefixes it again).
            batch.create_check_constraint(name, condition)
