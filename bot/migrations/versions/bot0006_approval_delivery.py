"""bot: approval cards count as shown only once posted; failed posts back off; one pending request per identical ask.

Revision ID: bot0006
Revises: bot0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "bot0006"
down_revision: str | Sequence[str] | None = "bot0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
