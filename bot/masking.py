"""Who sees whole codes, and what the others see instead.

A code is usable until it is typed into its device, so only people who may make codes (agents and
above) see codes whole. Viewers see enough to match a code a client reads out (the last three
digits) and nothing they could type on a keypad.
"""

from __future__ import annotations

from bot.roles import Role
from erm.models import keypad_digits

CODE_VIEWER = Role.AGENT
"""The lowest role that sees whole codes (history, replies, buttons)."""

KEPT_DIGITS = 3
MASK_DIGIT = "•"


def sees_codes(role: Role | None) -> bool:
    """Whether someone with ``role`` (at the distributor the code belongs to) sees it whole."""
    return role is not None and role >= CODE_VIEWER


def masked_code(code: str) -> str:
    """``*024 413 975 593 119 504 641#`` -> ``••• ••• ••• ••• ••• ••• 641``.

    Grouped like the keypad form so a viewer can compare it with what a client reads out; without
    ``*`` and ``#``, since it is not something to type.
    """
    digits = keypad_digits(code)
    hidden = max(0, len(digits) - KEPT_DIGITS)
    shown = MASK_DIGIT * hidden + digits[hidden:]
    return " ".join(shown[i : i + 3] for i in range(0, len(shown), 3))
