"""The fleet code policy: every limit, its switch, and that a refusal changes nothing."""

from __future__ import annotations

import copy

import pytest

from erm.sandbox import FLEET_DEFAULT, FLEET_KANO, FLEET_OPEN, FLEET_STRICT
from erm.sandbox.model import CodeSystem

DAYS = """
mutation Days($in: GenerateDaysCodeInput!) {
  generateDaysCode(generateDaysCodeInput: $in) { codeType codeDec }
}"""
FREE = """
mutation Free($in: GenerateCodeInput!) {
  generateFreeCode(generateFreeCodeInput: $in) { codeType codeDec }
}"""
RESET = """
mutation Reset($in: GenerateCodeInput!) {
  generateResetCode(generateResetCodeInput: $in) { codeType codeDec }
}"""
INCREASE_FREE = """
mutation More($item: ID!, $n: Int!) {
  distributorIncreaseFreeCodeCountForItem(itemId: $item, freeCodeCount: $n) { freeCodeCount }
}"""
INCREASE_RESET = """
mutation More($item: ID!, $n: Int!) {
  distributorIncreaseResetCodeCountForItem(itemId: $item, resetCodeCount: $n) { resetCodeCount }
}"""

MINUTE = 60.0
DAY = 86_400.0


def _days_vars(item, days):
    return {"in": {"itemId": item.id, "codeDays": days}}


def _item(state, fleet, distributor="acme"):
    return state.items_of(distributor, fleet=fleet, code_system=CodeSystem.ACP1)[0]


async def _refused(caller, query, variables, reason):
    """A business refusal: ``Bad Request Exception`` with one reason string (erm-api.md §8)."""
    assert await caller.refusal(query, variables) == reason


# -- codeDays -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "reasons"),
    [
        (0, ["codeDays must not be less than 1"]),
        (-1, ["codeDays must not be less than 1"]),
        (1096, ["codeDays must not be greater than 1095"]),
    ],
)
async def test_days_outside_1_to_1095_are_a_validation_refusal(acme, state, days, reasons):
    refusal = await acme.refusal(DAYS, _days_vars(_item(state, FLEET_OPEN), days))

    assert refusal == reasons


@pytest.mark.parametrize("days", [1, 1095])
async def test_days_at_the_bounds_are_accepted(acme, state, days):
    data = await acme.data(DAYS, _days_vars(_item(state, FLEET_OPEN), days))

    assert data["generateDaysCode"]["codeType"] == "DAYSCODE"


# -- codeGenInterval ------------------------------------------------------------------------------


async def test_second_code_within_the_interval_is_refused(acme, state, clock):
    item = _item(state, FLEET_DEFAULT)
    await acme.data(DAYS, _days_vars(item, 5))
    clock.advance(59.9)

    await _refused(acme, DAYS, _days_vars(item, 5), "Code generation interval not elapsed")


async def test_code_after_the_interval_is_accepted(acme, state, clock):
    item = _item(state, FLEET_DEFAULT)
    await acme.data(DAYS, _days_vars(item, 5))
    clock.advance(MINUTE)

    data = await acme.data(DAYS, _days_vars(item, 5))

    assert data["generateDaysCode"]["codeType"] == "DAYSCODE"


async def test_interval_applies_across_code_types(acme, state):
    item = _item(state, FLEET_DEFAULT)
    await acme.data(DAYS, _days_vars(item, 5))

    await _refused(acme, FREE, {"in": {"itemId": item.id}}, "Code generation interval not elapsed")


async def test_disabled_interval_allows_codes_back_to_back(acme, state):
    item = _item(state, FLEET_OPEN)

    for _ in range(20):
        await acme.data(DAYS, _days_vars(item, 30))


# -- free / reset allowances ----------------------------------------------------------------------


async def test_free_codes_beyond_the_allowance_are_refused(acme, state, clock):
    item = _item(state, FLEET_STRICT)
    await acme.data(FREE, {"in": {"itemId": item.id}})
    clock.advance(MINUTE)

    await _refused(acme, FREE, {"in": {"itemId": item.id}}, "Free code limit reached for this item")


async def test_raised_free_allowance_allows_another_free_code(acme, state, clock):
    item = _item(state, FLEET_STRICT)
    await acme.data(FREE, {"in": {"itemId": item.id}})
    clock.advance(MINUTE)
    await acme.data(INCREASE_FREE, {"item": item.id, "n": 1})

    data = await acme.data(FREE, {"in": {"itemId": item.id}})

    assert data["generateFreeCode"]["codeType"] == "FREECODE"


async def test_reset_codes_beyond_the_allowance_are_refused(acme, state, clock):
    item = _item(state, FLEET_STRICT)
    await acme.data(RESET, {"in": {"itemId": item.id}})
    clock.advance(MINUTE)

    await _refused(
        acme, RESET, {"in": {"itemId": item.id}}, "Reset code limit reached for this item"
    )


async def test_raised_reset_allowance_allows_another_reset_code(acme, state, clock):
    item = _item(state, FLEET_STRICT)
    await acme.data(RESET, {"in": {"itemId": item.id}})
    clock.advance(MINUTE)
    await acme.data(INCREASE_RESET, {"item": item.id, "n": 2})

    for _ in range(2):
        await acme.data(RESET, {"in": {"itemId": item.id}})
        clock.advance(MINUTE)

    await _refused(
        acme, RESET, {"in": {"itemId": item.id}}, "Reset code limit reached for this item"
    )


async def test_default_fleet_allows_its_remaining_free_codes(acme, state, clock):
    item = _item(state, FLEET_DEFAULT)
    remaining = item.code_generator.free_code_count
    assert remaining > 1

    for _ in range(remaining):
        await acme.data(FREE, {"in": {"itemId": item.id}})
        clock.advance(MINUTE)

    await _refused(acme, FREE, {"in": {"itemId": item.id}}, "Free code limit reached for this item")


async def test_disabled_free_limit_allows_any_number(acme, state):
    item = _item(state, FLEET_OPEN)

    for _ in range(8):
        await acme.data(FREE, {"in": {"itemId": item.id}})


# -- maxCreditStackDays ---------------------------------------------------------------------------


async def test_a_single_code_above_the_stack_limit_is_refused(acme, state):
    await _refused(
        acme,
        DAYS,
        _days_vars(_item(state, FLEET_DEFAULT), 61),
        "Maximum credit stack days exceeded for this item",
    )


async def test_recent_days_codes_stack_up_to_the_limit(acme, state, clock):
    item = _item(state, FLEET_DEFAULT)
    await acme.data(DAYS, _days_vars(item, 30))
    clock.advance(MINUTE)
    await acme.data(DAYS, _days_vars(item, 30))
    clock.advance(MINUTE)

    await _refused(
        acme, DAYS, _days_vars(item, 1), "Maximum credit stack days exceeded for this item"
    )


async def test_days_codes_older_than_the_stack_window_no_longer_count(acme, state, clock):
    item = _item(state, FLEET_DEFAULT)
    await acme.data(DAYS, _days_vars(item, 60))
    clock.advance(60 * DAY + 1)

    data = await acme.data(DAYS, _days_vars(item, 60))

    assert data["generateDaysCode"]["codeType"] == "DAYSCODE"


async def test_only_the_last_stack_events_count(acme, state, clock):
    item = _item(state, FLEET_DEFAULT)
    policy = item.item_fleet.policy
    policy.max_credit_stack_code_events = 1
    await acme.data(DAYS, _days_vars(item, 30))
    clock.advance(MINUTE)
    await acme.data(FREE, {"in": {"itemId": item.id}})  # pushes the days code out of the window
    clock.advance(MINUTE)

    data = await acme.data(DAYS, _days_vars(item, 60))

    assert data["generateDaysCode"]["codeType"] == "DAYSCODE"


async def test_disabled_stack_limit_allows_long_codes(acme, state):
    item = _item(state, FLEET_OPEN)

    for _ in range(3):
        await acme.data(DAYS, _days_vars(item, 365))


# -- dayCodeCountLimit / totalCodeCountLimit ------------------------------------------------------


async def test_codes_beyond_the_daily_limit_are_refused(sunbright, state, clock):
    item = _item(state, FLEET_KANO, "sunbright")
    assert item.item_fleet.policy.day_code_count_limit == 3
    for _ in range(3):
        await sunbright.data(DAYS, _days_vars(item, 1))
        clock.advance(6 * MINUTE)

    await _refused(
        sunbright, DAYS, _days_vars(item, 1), "Day code count limit reached for this item"
    )


async def test_daily_limit_frees_up_after_24_hours(sunbright, state, clock):
    item = _item(state, FLEET_KANO, "sunbright")
    for _ in range(3):
        await sunbright.data(DAYS, _days_vars(item, 1))
        clock.advance(6 * MINUTE)
    clock.advance(DAY)

    data = await sunbright.data(DAYS, _days_vars(item, 1))

    assert data["generateDaysCode"]["codeType"] == "DAYSCODE"


async def test_kano_interval_is_five_minutes(sunbright, state, clock):
    item = _item(state, FLEET_KANO, "sunbright")
    await sunbright.data(DAYS, _days_vars(item, 1))
    clock.advance(4 * MINUTE)

    await _refused(sunbright, DAYS, _days_vars(item, 1), "Code generation interval not elapsed")


async def test_codes_beyond_the_total_limit_are_refused(acme, state, clock):
    item = _item(state, FLEET_DEFAULT)
    item.item_fleet.policy.total_code_count_limit = len(item.code_generator.events) + 1
    await acme.data(DAYS, _days_vars(item, 1))
    clock.advance(MINUTE)

    await _refused(acme, DAYS, _days_vars(item, 1), "Total code count limit reached for this item")


# -- atomicity ------------------------------------------------------------------------------------


async def test_a_refused_request_changes_nothing(acme, state, clock):
    item = _item(state, FLEET_STRICT)
    await acme.data(FREE, {"in": {"itemId": item.id}})
    clock.advance(MINUTE)
    before = copy.copy(item.code_generator)
    events_before = list(item.code_generator.events)

    await _refused(acme, FREE, {"in": {"itemId": item.id}}, "Free code limit reached for this item")
    await _refused(
        acme, DAYS, _days_vars(item, 61), "Maximum credit stack days exceeded for this item"
    )
    assert await acme.refusal(DAYS, _days_vars(item, 0)) == ["codeDays must not be less than 1"]

    after = item.code_generator
    assert after.events == events_before
    assert (after.code_count, after.hash_top, after.hash_index, after.free_code_count) == (
        before.code_count,
        before.hash_top,
        before.hash_index,
        before.free_code_count,
    )
