"""Reconciliation: what ERM's code history says about a code request whose answer was lost.

Every code mutation carries ``[erm-bot <reference>]`` in its description, and a lost answer is
looked up in the item's history by that reference. Nothing public shows that ERM keeps
descriptions verbatim (it may truncate, drop or rewrite them), and a federated ERM may commit the
code seconds after the client gave up. So the history is judged, not just searched:

- ``ISSUED``: the reference is there; this is the code.
- ``LIKELY``: no reference, but a code of the same type (and days) appeared after the request
  began, carrying no other request's reference: most likely this request's code; say so.
- ``CHANGED``: codes appeared since the request began, none like this one: someone else made a
  code; whether this request made one too cannot be told.
- ``NONE``: no code appeared since the request began. Only this, held over a window longer than
  ERM's plausible delay, supports "nothing was issued, it is safe to try again".
- ``UNREADABLE``: the history could not be read.

``ISSUED`` and ``LIKELY`` are final as soon as they are seen; the others are final only when the
window has passed (see ``ErmService.settle``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from erm.errors import UncertainOutcomeError
from erm.models import CodeEvent, CodeType, IssuedCode, Item

_TAG = re.compile(r"\[erm-bot ([0-9A-Za-z]{4,16})\]")


def code_description(note: str | None, reference: str) -> str:
    """The description sent with a code: the note plus the reference reconciliation looks for."""
    tag = f"[erm-bot {reference}]"
    return f"{note} {tag}" if note else tag


class Verdict(enum.StrEnum):
    ISSUED = "issued"
    LIKELY = "likely"
    CHANGED = "changed"
    NONE = "none"
    UNREADABLE = "unreadable"

    @property
    def final(self) -> bool:
        """Whether waiting longer could change this verdict."""
        return self in (Verdict.ISSUED, Verdict.LIKELY)


@dataclass(frozen=True, slots=True)
class PendingCode:
    """A code request sent to ERM whose outcome is not known; ``started_at`` is epoch seconds by
    the service's clock, taken just before the mutation was sent."""

    distributor: str
    item: Item
    code_type: CodeType
    days: int | None
    reference: str
    description: str
    started_at: float
    reason: str


@dataclass(frozen=True, slots=True)
class Settlement:
    """What the history showed: the code (``ISSUED``, ``LIKELY``) or the event that changed it."""

    pending: PendingCode
    verdict: Verdict
    code: IssuedCode | None = None
    other: CodeEvent | None = None


class CodeOutcomePendingError(UncertainOutcomeError):
    """A code mutation's answer was lost and the history does not show its outcome yet.

    The caller keeps the item locked and goes on settling it (``ErmService.settle``); it must not
    send the mutation again.
    """

    def __init__(self, pending: PendingCode, settlement: Settlement) -> None:
        super().__init__("a code mutation", pending.reason)
        self.pending = pending
        self.settlement = settlement


def judge(
    pending: PendingCode,
    events: Sequence[CodeEvent],
    *,
    likely_skew: float,
    changed_skew: float,
) -> Settlement:
    """The verdict of one read of the item's newest events.

    ``likely_skew``: how many seconds before ``started_at`` an untagged code may be dated and
    still count as this request's (ERM's clock is not ours). ``changed_skew``: how far before
    ``started_at`` any new code makes the history "changed" (wider, so that a skewed clock never
    turns a code into "nothing was issued").
    """
    for event in events:
        if _carries(event.description, pending):
            return Settlement(pending, Verdict.ISSUED, _issued(pending, event, likely=False))
    likely = pending.started_at - likely_skew
    changed = pending.started_at - changed_skew
    candidates = [
        e
        for e in events
        if _when(e) >= likely and _same_kind(e, pending) and not _tagged_other(e, pending)
    ]
    if candidates:
        oldest = min(candidates, key=_when)  # ours was sent first of anything after it
        return Settlement(pending, Verdict.LIKELY, _issued(pending, oldest, likely=True))
    since = [e for e in events if _when(e) >= changed]
    if since:
        return Settlement(pending, Verdict.CHANGED, other=since[0])
    return Settlement(pending, Verdict.NONE)


def _when(event: CodeEvent) -> float:
    # An undated event is treated as new: it must never make the history look unchanged.
    return event.created_at.timestamp() if event.created_at else float("inf")


def _carries(description: str | None, pending: PendingCode) -> bool:
    if not description:
        return False
    return description == pending.description or f"[erm-bot {pending.reference}]" in description


def _tagged_other(event: CodeEvent, pending: PendingCode) -> bool:
    """The event names another erm-bot request: it is that request's code, not this one's."""
    found = _TAG.search(event.description or "")
    return found is not None and found.group(1) != pending.reference


def _same_kind(event: CodeEvent, pending: PendingCode) -> bool:
    if event.code_type is not pending.code_type:
        return False
    return pending.code_type is not CodeType.DAYS or event.code_days == pending.days


def _issued(pending: PendingCode, event: CodeEvent, *, likely: bool) -> IssuedCode:
    return IssuedCode(
        code_type=pending.code_type,
        code_dec=event.code_dec,
        code_hex=event.code_hex,
        item=pending.item,
        days=pending.days,
        reconciled=True,
        likely=likely,
    )
