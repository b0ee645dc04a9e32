"""bot: code requests in flight (intents) so a crash or an expired lock can be reconciled against ERM history.

Revision ID: bot0004
Revises: bot0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "bot0004"
down_revision: str | Sequence[str] | None = "bot0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
