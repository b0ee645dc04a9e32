"""erm: the token vault's table of distributors and their encrypted secrets.

Revision ID: erm0001
Revises:
Create Date: 2025-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "erm0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("erm",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erm_distributors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=True),
        sa.Column("password_secret", sa.Text(), nullable=False),
        sa.Column("token_secret", sa.Text(), nullable=True),
        sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_erm_distributors"),
        sa.UniqueConstraint("name", name="uq_erm_distributors_name"),
        sa.CheckConstraint(
            "token_secret IS NULL OR client_id IS NOT NULL",
            name="ck_erm_distributors_token_has_client_id",
        ),
    )


def downgrade() -> None:
    op.drop_table("erm_distributors")
