"""The ``erm_distributors`` table: one row per configured distributor, and the rules for its values.

The row holds the distributor's secrets only as envelopes from :class:`erm.secret_box.SecretBox`;
:class:`erm.vault.TokenVault` is the one place that reads and writes it. Kept apart from the vault
so the table's shape, its lookups and what counts as a valid name, email or client id are in one
short place, and the migrations register the table without the vault's logic.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from erm.db import Base, UtcDateTime
from erm.errors import InvalidInputError, UnknownDistributorError
from erm.models import SignInMethod

__all__ = [
    "PASSWORD",
    "TOKEN",
    "DistributorRow",
    "existing_row",
    "find_row",
    "secret_context",
    "valid_client_id",
    "valid_email",
    "valid_name",
]

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_MAX_EMAIL = 254
_MAX_CLIENT_ID = 128
_TABLE = "erm_distributors"


class DistributorRow(Base):
    """A configured distributor; its secrets are envelopes from a :class:`SecretBox`."""

    __tablename__ = _TABLE
    __table_args__ = (
        CheckConstraint(
            "token_secret IS NULL OR client_id IS NOT NULL", name="token_has_client_id"
        ),
        CheckConstraint("sign_in IN ('client', 'user')", name="sign_in"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(_MAX_EMAIL))
    # The ERM id of the distributor (the clientId / distributorId ERM's queries want).
    client_id: Mapped[str | None] = mapped_column(String(_MAX_CLIENT_ID))
    # Which sign-in mutation the credentials take (SignInMethod).
    sign_in: Mapped[str] = mapped_column(
        String(8), default=SignInMethod.CLIENT.value, server_default=SignInMethod.CLIENT.value
    )
    password_secret: Mapped[str] = mapped_column(Text)
    token_secret: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


# (column, what it is called in messages) of the two secrets a row holds.
PASSWORD = ("password_secret", "password")
TOKEN = ("token_secret", "access token")


def secret_context(name: str, column: str) -> str:
    """What a secret of this row and column is bound to (the envelope's associated data)."""
    return f"{_TABLE}|{name}|{column}"


async def find_row(
    session: AsyncSession, name: str, *, lock: bool = False
) -> DistributorRow | None:
    statement = select(DistributorRow).where(DistributorRow.name == name)
    if lock:
        statement = statement.with_for_update()  # PostgreSQL; SQLite's BEGIN IMMEDIATE locks
    return await session.scalar(statement)


async def existing_row(session: AsyncSession, name: str, *, lock: bool = False) -> DistributorRow:
    normalized = name.strip().lower() if isinstance(name, str) else ""
    row = await find_row(session, normalized, lock=lock) if _NAME.fullmatch(normalized) else None
    if row is None:
        shown = normalized if len(normalized) <= 40 else normalized[:39] + "…"
        raise UnknownDistributorError(f"no distributor named {shown!r} is configured")
    return row


def valid_name(name: str) -> str:
    normalized = name.strip().lower() if isinstance(name, str) else ""
    if not _NAME.fullmatch(normalized):
        shown = normalized if len(normalized) <= 40 else normalized[:39] + "…"
        raise InvalidInputError(
            f"{shown!r} cannot be a distributor name: use 1 to 32 characters, a letter first,"
            " then letters, digits, '-' or '_'"
        )
    return normalized


def valid_email(email: str) -> str:
    email = email.strip() if isinstance(email, str) else ""
    if not email:
        raise InvalidInputError("the email must not be empty")
    if len(email) > _MAX_EMAIL or not _EMAIL.fullmatch(email):
        raise InvalidInputError("the email must look like name@example.org")
    return email


def valid_client_id(client_id: str) -> str:
    client_id = client_id.strip() if isinstance(client_id, str) else ""
    if not client_id or len(client_id) > _MAX_CLIENT_ID:
        raise InvalidInputError(
            f"the client id must be 1 to {_MAX_CLIENT_ID} characters (the distributor's ERM _id)"
        )
    return client_id
