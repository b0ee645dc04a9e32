"""Approval policy settings as typed in chat (``/approvals policy``) or on the command line."""

from __future__ import annotations

from dataclasses import replace

from bot.errors import UsageError
from bot.registry import Retype, parse_days
from bot.registry import number as whole_number
from bot.storage.approval_tables import Policy

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
    number: int | None = None
    if raw != "off":
        try:
            number = _days_over(raw) if name == "days-over" else whole_number(raw, name, 1, 1000)
        except Retype as retype:
            raise UsageError(
                f"{retype}.\nType: /approvals policy days-over {retype.replacement}"
            ) from None
        except ValueError as exc:
            raise UsageError(f"{exc}, or off.") from None
    if name == "days-over":
        return replace(policy, days_over=number)
    return replace(policy, daily_count=number)


def _days_over(raw: str) -> int:
    """Days as ``/code days`` reads them (``30``, ``30d``, ``2w``, ``30 days``): one way to say
    days everywhere, and the same refusals (months are not days)."""
    if not raw:
        raise ValueError("days-over takes a number of days like 30, 30d or 2w")
    return parse_days(raw)
