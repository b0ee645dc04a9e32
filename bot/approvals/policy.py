"""Approval policy settings as typed in chat (``/approvals policy``) or on the command line."""

from __future__ import annotations

from dataclasses import replace

from bot.errors import UsageError
from bot.registry import number as whole_number
from bot.storage.approval_tables import Policy
from erm.service import MAX_DAYS

# -- policy settings, as typed ------------------------------------------------------------------


POLICY_SETTINGS = ("free", "reset", "days-over", "daily-count", "supervisors")
POLICY_USAGE = "free on|off, reset on|off, days-over N|off, daily-count N|off, supervisors on|off"


def apply_setting(policy: Policy, setting: str, value: str | None) -> Policy:
    """``policy`` with one setting changed, as typed in chat or on the command line."""
    name = setting.strip().lower()
    raw = (value or "").strip().lower()
    if name not in POLICY_SETTINGS:
        raise UsageError(f"No approval setting {setting[:30]!r}. Settings: {POLICY_USAGE}.")
    if name in ("free", "reset", "supervisors"):
        if raw not in ("on", "off"):
            raise UsageError(f"{name} takes on or off, not {raw[:20]!r}.")
        flag = raw == "on"
        if name == "free":
            return replace(policy, free=flag)
        if name == "reset":
            return replace(policy, reset=flag)
        return replace(policy, supervisors=flag)
    top = MAX_DAYS if name == "days-over" else 1000
    number: int | None = None
    if raw != "off":
        # ASCII digits only (bot.registry.number); days-over also takes "30d", like /code days.
        digits = raw[:-1] if name == "days-over" and raw.endswith("d") else raw
        try:
            number = whole_number(digits, name, 1, top)
        except ValueError as exc:
            raise UsageError(f"{exc}, or off.") from None
    if name == "days-over":
        return replace(policy, days_over=number)
    return replace(policy, daily_count=number)
