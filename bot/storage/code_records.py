"""What is known of an issued code, and the question "was this code issued moments ago?"."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from bot.code_secrets import last3

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RecentQuery:
    """Codes of one type (and days) issued for an item at or after ``since``."""

    code_type: str
    days: int | None
    since: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedCodeRecord:
    """A code the bot issued, as recorded; ``id`` is set on records read back."""

    distributor: str
    item_id: str
    item_label: str
    client_name: str | None = None
    code_type: str  # CodeType value: DAYSCODE, FREECODE, RESETCODE, ...
    days: int | None = None
    code_dec: str = field(repr=False)
    code_hex: str = field(repr=False)
    issued_by_platform: str
    issued_by_user: str
    issued_by_name: str
    request_key: str | None = None
    note: str | None = None
    reconciled: bool = False
    issued_at: datetime
    approval_id: str | None = None
    id: int | None = None

    @property
    def code_last3(self) -> str:
        """The last 3 digits of the code: what may be shown to tell it from another."""
        return last3(self.code_dec)


# Stored as they are; the code itself is sealed (bot.code_secrets).
RECORD_FIELDS = (
    "distributor",
    "item_id",
    "item_label",
    "client_name",
    "code_type",
    "days",
    "issued_by_platform",
    "issued_by_user",
    "issued_by_name",
    "request_key",
    "note",
    "reconciled",
    "issued_at",
    "approval_id",
)
