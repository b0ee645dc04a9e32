"""Refusals an agent can act on: an ERM refusal turned into plain words and the next step.

ERM says why it refused in ``ErmRejectedError.erm_message``, but its real wording is not public
(erm-api.md §4, §8), so :func:`classify` sorts reasons by keyword patterns, never by exact text.
Where the fleet's code policy and the item's newest codes tell more (when the next code is
possible, how many days still fit), :func:`explain_code_refusal` reads them, only for the kinds
that need them; a read that fails only makes the answer plainer, so explaining never fails.
The arithmetic and the wording are pure functions of what is known (:class:`Known`), with ``now``
passed in, so they are tested without ERM.

Replies are read on small phones: one idea a line, times as HH:MM UTC with "in about N min",
the exact command to type where one helps, and always what to do next.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from bot.credit import (
    DAY,
    credit_stack,
    next_code_after_daily_limit,
    next_code_after_interval,
)
from bot.errors import ErmRefusedError
from bot.messages import CONTROLS_TO_SPACES, plural
from erm.errors import ErmError, ErmRejectedError
from erm.inputs import MAX_DAYS, MAX_HISTORY, MIN_DAYS
from erm.models import CodeEvent, CodeType, FleetPolicy, Item
from erm.service import ErmService

log = logging.getLogger(__name__)

T = TypeVar("T")

# A refusal is explained at once: a slow ERM must not hold the agent (nor the item's lock).
READS_TIMEOUT = 10.0
MAX_REASON = 200


class RefusalKind(enum.StrEnum):
    INTERVAL = "interval"  # too soon after the item's last code
    CREDIT_STACK = "credit_stack"  # more days than the item may hold
    DAY_LIMIT = "day_limit"  # codes per item in 24 hours
    TOTAL_LIMIT = "total_limit"  # codes per item, ever
    FREE_LIMIT = "free_limit"  # the item's free code allowance is used up
    RESET_LIMIT = "reset_limit"  # the item's reset code allowance is used up
    DAYS_RANGE = "days_range"  # days outside 1..1095
    NO_CODES = "no_codes"  # ERM does not make codes for this item (e.g. OPENTOKEN)
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"  # the distributor's account may not see or do this
    GARBLED = "garbled"  # ERM could not read erm-bot's request (GraphQL validation)
    OTHER = "other"


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_LIMIT = _rx(
    r"limit|count|reach|exceed|exhaust|no\s+more|used\s+up|allowance|quota|max|too\s+many"
    r"|left|remain|out\s+of"
)

# What each kind of reason talks about. The first match wins (in this order), so a GraphQL
# validation message naming codeDays is erm-bot's fault, not the user's days, and "stack" wins
# over "days".
_ABOUT = {
    RefusalKind.GARBLED: (
        r"cannot\s+query\s+field|unknown\s+(argument|type)|variable\s+\"?\$|syntax\s+error"
        r"|of\s+required\s+type|got\s+invalid\s+value|expected\s+(type|value)"
    ),
    RefusalKind.INTERVAL: (
        r"interval|not\s+(yet\s+)?elapsed|too\s+(soon|early|often|frequent|quick)"
        r"|cool\s*-?\s*down|wait\s+(at\s+least|before|until|\d)"
    ),
    RefusalKind.CREDIT_STACK: r"stack",
    RefusalKind.DAY_LIMIT: r"day\s*-?\s*code|daily|per\s+day|a\s+day\b|today|24\s*-?\s*h",
    RefusalKind.TOTAL_LIMIT: r"total|lifetime|overall",
    RefusalKind.FREE_LIMIT: r"free",
    RefusalKind.RESET_LIMIT: r"reset",
    RefusalKind.NO_CODES: (
        r"open\s*-?\s*token|openpaygo|not\s+supported|unsupported|code\s*system"
        r"|can\s*not\s+(be\s+)?(generat|creat|mak|issu)|not\s+(be\s+)?(generat|creat|issu)ed"
        r"|no\s+code\s*generator"
    ),
    RefusalKind.DAYS_RANGE: (
        r"code\s*days|days?\s+must|number\s+of\s+days|between\s+1\s+and|1095"
        r"|days?\b.*\b(range|greater|less|positive|integer|at\s+(least|most))"
    ),
    RefusalKind.NOT_FOUND: (
        r"not\s+found|cannot\s+return\s+null|does\s+not\s+exist|no\s+such|invalid\s+id"
    ),
    RefusalKind.FORBIDDEN: (
        r"forbidden|not\s+assigned|not\s+(allowed|authori[sz]ed|permitted)|permission"
        r"|access\s+denied|does\s+not\s+belong"
    ),
}
_RULES = tuple((kind, _rx(about)) for kind, about in _ABOUT.items())
# The limits need a limit word too: "free codes are not supported here" is no used-up allowance.
_LIMITED = frozenset(
    {
        RefusalKind.DAY_LIMIT,
        RefusalKind.TOTAL_LIMIT,
        RefusalKind.FREE_LIMIT,
        RefusalKind.RESET_LIMIT,
    }
)
_GARBLED_CODES = frozenset({"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"})
# What a server says when it gives no reason: never shown as if it were one.
_NO_REASON = frozenset({"bad request exception", "bad request", "unknown error", "error"})


def classify(reason: str, erm_code: str | None = None) -> RefusalKind:
    """What kind of refusal ERM's reason (several joined with "; ") and code describe."""
    if erm_code in _GARBLED_CODES:
        return RefusalKind.GARBLED
    for kind, about in _RULES:
        if about.search(reason) and (kind not in _LIMITED or _LIMIT.search(reason)):
            return kind
    return RefusalKind.FORBIDDEN if erm_code == "FORBIDDEN" else RefusalKind.OTHER


def clean_reason(reason: str) -> str:
    """ERM's reason fit to show: one line, bounded, empty when ERM gave none."""
    text = " ".join(reason.translate(CONTROLS_TO_SPACES).split())
    if text.rstrip(".").casefold() in _NO_REASON:
        return ""
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


# -- the words ----------------------------------------------------------------------------------

AGAIN = "Send the same command again then."
ADMIN_IN_ERM = "the distributor's ERM admin"
CHECK_IDS = "Check the id you typed and the distributor (add --dist NAME for another one)."
# ERM could not validate the document erm-bot sent (a schema change): the operator's business.
SCHEMA_MISMATCH = (
    "ERM could not read erm-bot's request: nothing was changed.",
    "Tell an operator to run `erm-bot doctor --erm`.",
)


@dataclass(frozen=True, slots=True)
class Known:
    """What a refusal is explained with; what was not read (or could not be) stays ``None``."""

    reason: str
    now: datetime
    distributor: str | None = None
    item: Item | None = None
    code_type: CodeType | None = None
    days: int | None = None
    policy: FleetPolicy | None = None
    events: Sequence[CodeEvent] | None = None  # the item's newest codes, newest first

    @property
    def label(self) -> str:
        return self.item.label if self.item else "this item"

    @property
    def ref(self) -> str:
        """The item as a person types it in a command."""
        if self.item is None:
            return "ITEM"
        return self.item.oem_item_id or self.item.id

    @property
    def codes(self) -> str:
        """What was asked for, e.g. "free codes"."""
        if self.code_type in (CodeType.FREE, CodeType.RESET, CodeType.DAYS):
            return f"{self.code_type.name.lower()} codes"
        return "codes"


def _span(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    if minutes < 90:
        return f"{minutes} min"
    hours = round(seconds / 3600)
    return f"{hours} h" if hours < 48 else plural(round(seconds / 86400), "day")


def _pause(interval_ms: int) -> str:
    seconds = interval_ms / 1000
    if seconds < 60 or (seconds < 600 and seconds % 60):
        return f"{math.ceil(seconds)} s"
    return _span(seconds)


def _when(at: datetime, now: datetime) -> str:
    """``00:05 UTC (in about 5 min)``, with the day when it is not today; rounded up to the
    minute, so that whoever waits for the time shown is not refused again."""
    at, now = at.astimezone(UTC), now.astimezone(UTC)
    if at.second or at.microsecond:
        at = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if at.date() == now.date():
        day = ""
    elif at.date() == (now + DAY).date():
        day = "tomorrow "
    else:
        day = f"{at:%Y-%m-%d} "
    return f"{day}{at:%H:%M} UTC (in about {_span((at - now).total_seconds())})"


def _interval(k: Known) -> list[str]:
    ms = k.policy.interval_ms if k.policy else None
    if ms is None:
        return [
            "Too soon: ERM needs a pause between two codes for one item.",
            "Try again in a minute.",
        ]
    pause = _pause(ms)
    title = f"Too soon: ERM needs {pause} between two codes for one item."
    at = next_code_after_interval(k.events or (), ms)
    if at is None or at <= k.now:
        return [title, f"Try again in {pause}."]
    return [title, f"Next code for {k.label} at {_when(at, k.now)}.", AGAIN]


def _credit_stack(k: Known) -> list[str]:
    policy = k.policy
    history = f"/history {k.ref} shows the recent codes."
    if policy is None or policy.max_credit_stack_days is None:
        return [
            "Too many days: ERM limits the days of credit one item can hold.",
            f"Try fewer days; {history}",
        ]
    top = policy.max_credit_stack_days
    stack = (
        None
        if k.events is None
        else credit_stack(k.events, top, policy.max_credit_stack_events, k.now)
    )
    if stack is None or (k.days is not None and stack.room >= k.days):
        # Unread, or read differently from ERM (a clock apart, history cut short): no number.
        return [
            f"Too many days: ERM allows {top} days of credit on one item.",
            f"Codes of the last {top} days count; {history}",
            "Try fewer days.",
        ]
    held = f"Its codes of the last {top} days add up to {stack.stacked}; ERM allows {top}."
    if stack.room > 0:
        lines = [
            f"Too many days: {k.label} can take at most {plural(stack.room, 'more day')} now.",
            held,
            f"To add {plural(stack.room, 'day')} now, type:",
            f"/code days {k.ref} {stack.room}",
        ]
    else:
        lines = [f"No more days can be added to {k.label} now.", held]
    if stack.frees_at is not None and stack.frees_at > k.now:
        lines.append(f"More days free up from {_when(stack.frees_at, k.now)}.")
    elif stack.room == 0:
        lines.append("A distributor admin can raise the limit in the fleet's code policy in ERM.")
    return lines


def _day_limit(k: Known) -> list[str]:
    limit = k.policy.day_code_limit if k.policy else None
    if limit is None:
        return [
            f"Daily limit: {k.label} has had as many codes as ERM allows in 24 hours.",
            f"/history {k.ref} shows when they were made.",
            "Try again when the oldest of them is 24 hours old.",
        ]
    title = f"Daily limit: ERM allows {plural(limit, 'code')} per item in 24 hours."
    at = next_code_after_daily_limit(k.events, limit, k.now) if k.events is not None else None
    if at is None or at <= k.now:
        return [
            title,
            f"{k.label} has had {limit}; /history {k.ref} shows when.",
            "Try again when the oldest of them is 24 hours old.",
        ]
    return [title, f"Next code for {k.label} at {_when(at, k.now)}.", AGAIN]


def _total_limit(k: Known) -> list[str]:
    limit = k.policy.total_code_limit if k.policy else None
    fleet = k.item.fleet.name if k.item and k.item.fleet and k.item.fleet.name else None
    return [
        f"{k.label} has reached ERM's limit of "
        + (f"{limit} codes in total." if limit is not None else "codes in total."),
        "No code can be made for it until the limit is raised.",
        "A distributor admin can raise it in ERM, in the code policy of "
        + (f"fleet {fleet}." if fleet else "its fleet."),
    ]


def _allowance(k: Known, word: str, allowed: int | None) -> list[str]:
    per = f" (its fleet allows {allowed} per item)" if allowed is not None else ""
    return [
        f"{k.label} has no {word} codes left in ERM{per}.",
        f"Only {ADMIN_IN_ERM} can raise the item's {word} code allowance, in ERM.",
        AGAIN,
    ]


def _free_limit(k: Known) -> list[str]:
    return _allowance(k, "free", k.policy.free_codes if k.policy else None)


def _reset_limit(k: Known) -> list[str]:
    return _allowance(k, "reset", k.policy.reset_codes if k.policy else None)


def _days_range(k: Known) -> list[str]:
    return [
        f"ERM takes {MIN_DAYS} to {MAX_DAYS} days in one code.",
        f"Type a number in that range, e.g. /code days {k.ref} 30",
    ]


def _no_codes(k: Known) -> list[str]:
    system = k.item.code_system if k.item else None
    kind = f" ({system.value} item)" if system else ""
    return [
        f"ERM cannot make {k.codes} for {k.label} here{kind}.",
        *([f"ERM said: {k.reason}"] if k.reason else []),
        f"Ask {ADMIN_IN_ERM} how codes for this item are made.",
    ]


def _not_found(k: Known) -> list[str]:
    return ["ERM has no such record for this distributor.", CHECK_IDS]


def _forbidden(k: Known) -> list[str]:
    whose = f"{k.distributor}'s" if k.distributor else "this distributor's"
    what = f"make {k.codes} for {k.label}" if k.item else "see or do this"
    return [
        f"ERM does not let {whose} account {what}.",
        CHECK_IDS,
        f"If both are right, {ADMIN_IN_ERM} must allow it in ERM.",
    ]


def _garbled(k: Known) -> list[str]:
    return list(SCHEMA_MISMATCH)


def _other(k: Known) -> list[str]:
    first = f"ERM refused: {k.reason}" if k.reason else "ERM refused this without saying why."
    return [
        first,
        "Nothing was done.",
        f"Check the command; if it is right, ask {ADMIN_IN_ERM} about it.",
    ]


_WORDS: dict[RefusalKind, Callable[[Known], list[str]]] = {
    RefusalKind.INTERVAL: _interval,
    RefusalKind.CREDIT_STACK: _credit_stack,
    RefusalKind.DAY_LIMIT: _day_limit,
    RefusalKind.TOTAL_LIMIT: _total_limit,
    RefusalKind.FREE_LIMIT: _free_limit,
    RefusalKind.RESET_LIMIT: _reset_limit,
    RefusalKind.DAYS_RANGE: _days_range,
    RefusalKind.NO_CODES: _no_codes,
    RefusalKind.NOT_FOUND: _not_found,
    RefusalKind.FORBIDDEN: _forbidden,
    RefusalKind.GARBLED: _garbled,
    RefusalKind.OTHER: _other,
}


def describe(kind: RefusalKind, known: Known) -> str:
    """The reply text: first line what happened, then what to do next."""
    return "\n".join(_WORDS[kind](known))


# -- reading what the words need ------------------------------------------------------------------

_NEEDS_POLICY = _LIMITED | {RefusalKind.INTERVAL, RefusalKind.CREDIT_STACK}


def _history_depth(kind: RefusalKind, policy: FleetPolicy | None) -> int | None:
    """How many of the item's newest codes the explanation needs (``None``: none)."""
    if policy is None:
        return None
    wanted: int | None = None
    if kind is RefusalKind.INTERVAL and policy.interval_ms is not None:
        wanted = 1
    elif kind is RefusalKind.CREDIT_STACK and policy.max_credit_stack_days is not None:
        wanted = policy.max_credit_stack_events or MAX_HISTORY
    elif kind is RefusalKind.DAY_LIMIT and policy.day_code_limit is not None:
        wanted = policy.day_code_limit
    return None if wanted is None else max(1, min(wanted, MAX_HISTORY))


async def _quietly(what: str, read: Awaitable[T]) -> T | None:
    """The read's result, or ``None`` when it fails or is slow: it only adds detail."""
    try:
        async with asyncio.timeout(READS_TIMEOUT):
            return await read
    except (ErmError, TimeoutError) as exc:
        log.info("refusal explained without the %s: %s", what, exc)
        return None


async def explain_code_refusal(
    erm: ErmService,
    distributor: str,
    item: Item,
    code_type: CodeType,
    days: int | None,
    exc: ErmRejectedError,
    now: datetime,
) -> ErmRefusedError:
    """ERM refused a code for ``item``: why, in plain words, and what to do next."""
    kind = classify(exc.erm_message, exc.erm_code)
    policy: FleetPolicy | None = None
    fleet = item.fleet
    if kind in _NEEDS_POLICY and fleet is not None:
        found = await _quietly(
            "fleet policy",
            erm.run_as(distributor, lambda token, _: erm.client.fleet(token, fleet.id)),
        )
        policy = found.policy if found else None
    events: Sequence[CodeEvent] | None = None
    depth = _history_depth(kind, policy)
    if depth is not None:
        history = await _quietly("code history", erm.code_history(distributor, item.id, depth))
        events = history[1] if history else None
    known = Known(
        reason=clean_reason(exc.erm_message),
        now=now,
        distributor=distributor,
        item=item,
        code_type=code_type,
        days=days,
        policy=policy,
        events=events,
    )
    return _refused(kind, known, exc)


def explain_refusal(exc: ErmRejectedError, distributor: str | None = None) -> ErmRefusedError:
    """A refusal outside the code path (lookups): plain words, nothing read."""
    kind = classify(exc.erm_message, exc.erm_code)
    known = Known(
        reason=clean_reason(exc.erm_message), now=datetime.now(UTC), distributor=distributor
    )
    return _refused(kind, known, exc)


def _refused(kind: RefusalKind, known: Known, exc: ErmRejectedError) -> ErmRefusedError:
    return ErmRefusedError(
        describe(kind, known), kind=kind, erm_message=exc.erm_message, erm_code=exc.erm_code
    )
