"""erm: which sign-in mutation each distributor's credentials take (signInClient or signInUser).

Revision ID: erm0002
Revises: erm0001
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "erm0002"
down_revision: str | Sequence[str] | None = "erm0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("erm_distributors") as batch:
        batch.add_column(
            sa.Column("sign_in", sa.String(8), nullable=False, server_default="client")
        )
        batch.create_check_constraint(
            op.f("ck_erm_distributors_sign_in"), "sign_in IN ('client', 'user')"
        )


def downgrade() -> None:
    with op.batch_alter_table("erm_distributors") as batch:
        batch.drop_constraint(op.f("ck_erm_distributors_sign_in"), type_="check")
        batch.drop_column("sign_in")
