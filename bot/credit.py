"""ERM's arithmetic of when the next code can be made: the pause after a code, the credit stack,
the daily limit. Pure functions over an item's code history (newest first)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from erm.models import CodeEvent, CodeType

DAY = timedelta(days=1)


def next_code_after_interval(events: Sequence[CodeEvent], interval_ms: int) -> datetime | None:
    """When ERM's pause after the item's newest code ends (``None``: no dated code known)."""
    last = max((e.created_at for e in events if e.created_at is not None), default=None)
    return None if last is None else last + timedelta(milliseconds=interval_ms)


@dataclass(frozen=True, slots=True)
class CreditStack:
    """Days of credit an item holds against its fleet's maximum, as ERM counts them."""

    stacked: int  # days of the counted codes
    room: int  # days that can still be added now
    frees_at: datetime | None  # when the oldest counted code stops counting


def credit_stack(
    events: Sequence[CodeEvent], max_days: int, window: int | None, now: datetime
) -> CreditStack:
    """ERM's credit-stack rule: the days codes among the newest ``window`` events (``None``: all,
    newest first) made within the last ``max_days`` days count against ``max_days``."""
    newest = events if window is None else events[: max(window, 0)]
    since = now - timedelta(days=max_days)
    counted = [
        (e.created_at, e.code_days)
        for e in newest
        if e.code_type is CodeType.DAYS and e.created_at is not None and e.created_at >= since
    ]
    stacked = sum(days for _, days in counted)
    frees_at = min((at for at, _ in counted), default=None)
    return CreditStack(
        stacked=stacked,
        room=max(0, max_days - stacked),
        frees_at=None if frees_at is None else frees_at + timedelta(days=max_days),
    )


def next_code_after_daily_limit(
    events: Sequence[CodeEvent], limit: int, now: datetime
) -> datetime | None:
    """When the oldest of the item's last ``limit`` codes turns 24 h old, if all ``limit`` fall
    within the last 24 h (events newest first); ``None`` when the history does not show that."""
    recent = [
        e.created_at
        for e in events[: max(limit, 0)]
        if e.created_at is not None and e.created_at > now - DAY
    ]
    if limit <= 0 or len(recent) < limit:
        return None
    return min(recent) + DAY
