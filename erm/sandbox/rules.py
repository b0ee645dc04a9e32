"""The checks a code request must pass before anything changes (erm-api.md §3).

Argument checks answer like NestJS's class-validator pipe (a list of reasons); the fleet policy
answers like a service throwing ``BadRequestException`` (one reason). Both only read the item, so a
refused request leaves the state as it was.
"""

from __future__ import annotations

from erm.sandbox.errors import (
    MSG_CREDIT_STACK,
    MSG_DAY_LIMIT,
    MSG_FREE_LIMIT,
    MSG_INTERVAL,
    MSG_RESET_LIMIT,
    MSG_TOTAL_LIMIT,
    BadRequestError,
    too_large,
    too_small,
)
from erm.sandbox.model import CodePolicy, CodeType, Item

MIN_CODE_DAYS = 1
MAX_CODE_DAYS = 1095
DAY_SECONDS = 86_400.0
DEFAULT_POLICY = CodePolicy()
"""Applied to an item that belongs to no fleet."""


def check_code_days(days: int) -> None:
    """``codeDays`` of a days code must lie in 1..1095."""
    if days < MIN_CODE_DAYS:
        raise BadRequestError([too_small("codeDays", MIN_CODE_DAYS)])
    if days > MAX_CODE_DAYS:
        raise BadRequestError([too_large("codeDays", MAX_CODE_DAYS)])


def check_count_increase(name: str, count: int) -> None:
    """An allowance can only be raised, by at least one."""
    if count < 1:
        raise BadRequestError([too_small(name, 1)])


def check_policy(item: Item, code_type: CodeType, days: int, now: float) -> None:
    """Refuse a code the item's fleet policy does not allow at ``now``.

    Every issued event counts at once, even one a commit delay still hides from history.
    """
    policy = item.item_fleet.policy if item.item_fleet is not None else DEFAULT_POLICY
    generator = item.code_generator
    events = generator.events
    if not policy.disable_total_code_count_limit and len(events) >= policy.total_code_count_limit:
        raise BadRequestError(MSG_TOTAL_LIMIT)
    if not policy.disable_day_code_count_limit:
        since = now - DAY_SECONDS
        today = 0
        for event in reversed(events):
            if event.created_at <= since:
                break
            today += 1
        if today >= policy.day_code_count_limit:
            raise BadRequestError(MSG_DAY_LIMIT)
    if (
        not policy.disable_code_gen_interval
        and events
        and (now - events[-1].created_at) * 1000 < policy.code_gen_interval
    ):
        raise BadRequestError(MSG_INTERVAL)
    if (
        code_type is CodeType.FREECODE
        and not policy.disable_free_code
        and generator.free_code_count <= 0
    ):
        raise BadRequestError(MSG_FREE_LIMIT)
    if (
        code_type is CodeType.RESETCODE
        and not policy.disable_reset_code_count
        and generator.reset_code_count <= 0
    ):
        raise BadRequestError(MSG_RESET_LIMIT)
    if code_type is CodeType.DAYSCODE and not policy.disable_max_credit_stack_days:
        _check_credit_stack(policy, item, days, now)


def _check_credit_stack(policy: CodePolicy, item: Item, days: int, now: float) -> None:
    events = item.code_generator.events
    if policy.disable_max_credit_stack_code_events:
        window = events
    elif policy.max_credit_stack_code_events <= 0:
        window = []
    else:
        window = events[-policy.max_credit_stack_code_events :]
    since = now - policy.max_credit_stack_days * DAY_SECONDS
    stacked = sum(
        e.code_days for e in window if e.code_type is CodeType.DAYSCODE and e.created_at >= since
    )
    if days + stacked > policy.max_credit_stack_days:
        raise BadRequestError(MSG_CREDIT_STACK)
