"""bot: one person, several chat identities.

Revision ID: bot0007
Revises: bot0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "bot0007"
down_revision: str | Sequence[str] | None = "bot0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
