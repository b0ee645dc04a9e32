"""bot: grants, users, request claims, item locks, issued codes, rate limits, the audit log.

The audit log is append-only in the database too: triggers refuse UPDATE and DELETE (PostgreSQL:
also TRUNCATE). A later revision that rebuilds ``bot_audit_log`` on SQLite (batch mode drops and
recreates the table) must create the SQLite triggers again.

Revision ID: bot0001
Revises:
Create Date: 2025-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bot0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("bot",)
depends_on: str | Sequence[str] | None = "erm0001"

_PLATFORM_CHECK = "platform IN ('slack', 'telegram', 'console')"
_APPEND_ONLY = "the audit log is append-only"

_SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER bot_audit_log_no_{event.lower()}
    BEFORE {event} ON bot_audit_log
    BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END
    """
    for event in ("UPDATE", "DELETE")
]

_POSTGRESQL_TRIGGERS = [
    f"""
    CREATE FUNCTION bot_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{_APPEND_ONLY}';
    END
    $$
    """,
    """
    CREATE TRIGGER bot_audit_log_no_change
    BEFORE UPDATE OR DELETE ON bot_audit_log
    FOR EACH ROW EXECUTE FUNCTION bot_audit_log_append_only()
    """,
    """
    CREATE TRIGGER bot_audit_log_no_truncate
    BEFORE TRUNCATE ON bot_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION bot_audit_log_append_only()
    """,
]


def upgrade() -> None:
    op.create_table(
        "bot_grants",
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("distributor", sa.String(32), nullable=False),
        sa.Column("role", sa.SmallInteger(), nullable=False),
        sa.Column("granted_by", sa.String(128), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_PLATFORM_CHECK, name="ck_bot_grants_platform_known"),
        sa.CheckConstraint("role BETWEEN 1 AND 4", name="ck_bot_grants_role_known"),
        sa.ForeignKeyConstraint(
            ["distributor"],
            ["erm_distributors.name"],
            name="fk_bot_grants_distributor_erm_distributors",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("platform", "user_id", "distributor", name="pk_bot_grants"),
    )
    op.create_index("ix_bot_grants_distributor_role", "bot_grants", ["distributor", "role"])

    op.create_table(
        "bot_users",
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("default_distributor", sa.String(32), nullable=True),
        sa.Column("display_name", sa.String(128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_PLATFORM_CHECK, name="ck_bot_users_platform_known"),
        sa.ForeignKeyConstraint(
            ["default_distributor"],
            ["erm_distributors.name"],
            name="fk_bot_users_default_distributor_erm_distributors",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("platform", "user_id", name="pk_bot_users"),
    )

    op.create_table(
        "bot_requests",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(state = 'running' AND reply IS NULL) OR (state = 'done' AND reply IS NOT NULL)",
            name="ck_bot_requests_state_known",
        ),
        sa.PrimaryKeyConstraint("key", name="pk_bot_requests"),
    )
    op.create_index("ix_bot_requests_claimed_at", "bot_requests", ["claimed_at"])

    op.create_table(
        "bot_item_locks",
        sa.Column("distributor", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("distributor", "item_id", name="pk_bot_item_locks"),
    )

    op.create_table(
        "bot_issued_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("distributor", sa.String(32), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("item_label", sa.Text(), nullable=False),
        sa.Column("client_name", sa.Text(), nullable=True),
        sa.Column("code_type", sa.String(16), nullable=False),
        sa.Column("days", sa.Integer(), nullable=True),
        sa.Column("code_dec", sa.String(64), nullable=False),
        sa.Column("code_hex", sa.String(64), nullable=False),
        sa.Column("issued_by_platform", sa.String(16), nullable=False),
        sa.Column("issued_by_user", sa.String(64), nullable=False),
        sa.Column("issued_by_name", sa.Text(), nullable=False),
        sa.Column("request_key", sa.String(255), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reconciled", sa.Boolean(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approval_id", sa.String(64), nullable=True),
        sa.CheckConstraint("days IS NULL OR days > 0", name="ck_bot_issued_codes_days_positive"),
        sa.PrimaryKeyConstraint("id", name="pk_bot_issued_codes"),
    )
    op.create_index(
        "ix_bot_issued_codes_item", "bot_issued_codes", ["distributor", "item_id", "issued_at"]
    )
    op.create_index(
        "ix_bot_issued_codes_issuer",
        "bot_issued_codes",
        ["issued_by_platform", "issued_by_user", "issued_at"],
    )
    op.create_index("ix_bot_issued_codes_request_key", "bot_issued_codes", ["request_key"])

    op.create_table(
        "bot_rate_hits",
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", "window_start", name="pk_bot_rate_hits"),
    )
    op.create_index("ix_bot_rate_hits_window_start", "bot_rate_hits", ["window_start"])

    op.create_table(
        "bot_audit_log",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("chat_id", sa.String(128), nullable=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(128), nullable=True),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("distributor", sa.String(64), nullable=True),
        sa.Column("item_id", sa.String(64), nullable=True),
        sa.Column("erm_code_event", sa.String(64), nullable=True),
        sa.Column("approval_id", sa.String(64), nullable=True),
        sa.Column("request_key", sa.String(255), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint(
            "length(hash) = 64 AND length(prev_hash) = 64", name="ck_bot_audit_log_hash_length"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bot_audit_log"),
        sa.UniqueConstraint("hash", name="uq_bot_audit_log_hash"),
        sa.UniqueConstraint("prev_hash", name="uq_bot_audit_log_prev_hash"),
    )
    op.create_index("ix_bot_audit_log_at", "bot_audit_log", ["at"])
    op.create_index("ix_bot_audit_log_user", "bot_audit_log", ["platform", "user_id"])
    op.create_index("ix_bot_audit_log_item_id", "bot_audit_log", ["item_id"])
    op.create_index("ix_bot_audit_log_distributor", "bot_audit_log", ["distributor"])
    for statement in _triggers():
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER bot_audit_log_no_truncate ON bot_audit_log")
        op.execute("DROP TRIGGER bot_audit_log_no_change ON bot_audit_log")
        op.execute("DROP FUNCTION bot_audit_log_append_only()")
    for table in (
        "bot_audit_log",
        "bot_rate_hits",
        "bot_issued_codes",
        "bot_item_locks",
        "bot_requests",
        "bot_users",
        "bot_grants",
    ):
        op.drop_table(table)  # SQLite drops a table's triggers with it


def _triggers() -> list[str]:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        return _POSTGRESQL_TRIGGERS
    if dialect == "sqlite":
        return _SQLITE_TRIGGERS
    raise NotImplementedError(f"no append-only triggers for {dialect}")
