"""bot: issued codes encrypted at rest; the audit trail keeps a fingerprint, never a usable code.

Revision ID: bot0005
Revises: bot0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "bot0005"
down_revision: str | Sequence[str] | None = "bot0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
