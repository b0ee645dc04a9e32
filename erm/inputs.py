"""What a person types, checked before anything reaches ERM: item ids, days and notes.

The bounds are ERM's (erm-api.md): the bot's parser and its refusals quote them.
"""

from __future__ import annotations

import re

from erm.errors import InvalidInputError

MIN_DAYS = 1
MAX_DAYS = 1095
MAX_ITEM_REF = 64
MAX_NOTE = 200
MAX_HISTORY = 50
_ITEM_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_item_ref(text: object) -> str:
    """What a person typed as an item id, trimmed, or ``InvalidInputError`` saying what is wrong."""
    if not isinstance(text, str):
        raise InvalidInputError("an item id is needed (an OEM item id, seller item id or ERM id)")
    ref = text.strip()
    if not ref:
        raise InvalidInputError("the item id is empty: type the OEM item id printed on the device")
    if len(ref) > MAX_ITEM_REF:
        raise InvalidInputError(
            f"the item id is too long ({len(ref)} characters, at most {MAX_ITEM_REF})"
        )
    if not ref.isascii() or not _ITEM_REF.match(ref):
        raise InvalidInputError(
            "an item id has only letters, digits and - _ . / (for example TEST2503000017)"
        )
    return ref


def check_days(days: object) -> int:
    if isinstance(days, bool) or not isinstance(days, int):
        raise InvalidInputError(f"days must be a whole number from {MIN_DAYS} to {MAX_DAYS}")
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise InvalidInputError(f"days must be from {MIN_DAYS} to {MAX_DAYS}, not {days}")
    return days


def check_note(note: str | None) -> str | None:
    if note is None:
        return None
    clean = _CONTROL.sub(" ", note).strip()
    if len(clean) > MAX_NOTE:
        raise InvalidInputError(
            f"the note is too long ({len(clean)} characters, at most {MAX_NOTE})"
        )
    return clean or None
