"""The seeded data: layout, determinism, and the migrated legacy history (erm-api.md §8)."""

from __future__ import annotations

import re

import pytest

from erm.sandbox import (
    ACME_SERVICER,
    ACME_STAFF,
    FLEET_ANGAZA,
    FLEET_DEFAULT,
    FLEET_KANO,
    FLEET_LAGOS,
    FLEET_OPEN,
    FLEET_STRICT,
    MIGRATED_ITEMS,
    seed_state,
)
from erm.sandbox.model import CodeType
from erm.sandbox.state import MIGRATED_ACTOR_NAME, MIGRATED_DESCRIPTION

FREE = """
mutation Free($in: GenerateCodeInput!) {
  generateFreeCode(generateFreeCodeInput: $in) { codeType }
}"""
RESET = """
mutation Reset($in: GenerateCodeInput!) {
  generateResetCode(generateResetCodeInput: $in) { codeType }
}"""
HISTORY = """
query History($item: ID!, $dist: ID!) {
  getAllCodeEventsForSpecificItemByDistributor(itemId: $item, distributorId: $dist) {
    page { edges { node {
      codeType codeDays codeNumber codeHexString codeDecString actorName description hashIndex
    } } }
  }
}"""

FLEET_OEM_IDS = {
    FLEET_OPEN: [f"TEST2503{n:06d}" for n in range(1, 21)],
    FLEET_DEFAULT: [
        *(f"SHSA2409{n:06d}" for n in range(101, 136)),
        *(f"SHSB2410{n:06d}" for n in range(201, 226)),
        *(f"LAMP2411{n:06d}" for n in range(301, 321)),
    ],
    FLEET_STRICT: [f"PUMP2501{n:06d}" for n in range(1, 21)],
    FLEET_ANGAZA: [f"SHSA2406{n:06d}" for n in range(501, 531)],
    FLEET_LAGOS: [
        *(f"SHSC2407{n:06d}" for n in range(1, 36)),
        *(f"TVSE2408{n:06d}" for n in range(1, 26)),
    ],
    FLEET_KANO: [f"BTRY2412{n:06d}" for n in range(1, 31)],
}


def _migrated(item):
    return [e for e in item.code_generator.events if e.actor_name == MIGRATED_ACTOR_NAME]


@pytest.mark.parametrize(("fleet", "oem_ids"), FLEET_OEM_IDS.items())
def test_fleets_hold_their_documented_items(state, fleet, oem_ids):
    owner = state.fleet_by_name(fleet).distributor

    assert [i.oem_item_id for i in state.items_of(owner, fleet=fleet)] == sorted(oem_ids)


def test_the_same_seed_gives_the_same_data(state):
    twin = seed_state(0, state.config)

    def codes(sandbox):
        return [
            (event.id, event.code_dec_string, event.hash_index)
            for item in sandbox.items.values()
            for event in item.code_generator.events
        ]

    assert list(twin.items) == list(state.items)
    assert codes(twin) == codes(state)


def test_acme_has_a_servicer_and_a_staff_user(state):
    acme = state.distributor_by_name("acme")

    (servicer,) = state.logins.servicers.values()
    (user,) = state.logins.staff.values()
    assert (servicer.email, servicer.password, servicer.distributor) == (
        ACME_SERVICER.email,
        ACME_SERVICER.password,
        acme,
    )
    assert (user.email, user.password, user.distributor) == (
        ACME_STAFF.email,
        ACME_STAFF.password,
        acme,
    )


# -- migrated history -----------------------------------------------------------------------------


def test_migrated_items_are_the_first_five_of_the_angaza_fleet(state):
    angaza = state.items_of("acme", fleet=FLEET_ANGAZA)

    assert list(MIGRATED_ITEMS) == [i.oem_item_id for i in angaza[:5]]


def test_only_migrated_items_have_migrated_history(state):
    with_migrated = {i.oem_item_id for i in state.items.values() if _migrated(i)}

    assert with_migrated == set(MIGRATED_ITEMS)


@pytest.mark.parametrize("oem_item_id", MIGRATED_ITEMS)
def test_migrated_events_look_like_productions(state, oem_item_id):
    item = state.item_by_oem_id(oem_item_id)
    events = item.code_generator.events
    migrated = _migrated(item)

    assert events[: len(migrated)] == migrated  # the legacy part is the older history
    for event in migrated:
        assert re.fullmatch(r"\*\d{3}( \d{3}){6}#", event.code_dec_string)
        assert event.code_hex_string == "--"
        assert event.code_number == 0
        assert event.description == MIGRATED_DESCRIPTION
    assert all(e.actor_name != MIGRATED_ACTOR_NAME for e in events[len(migrated) :])


def test_migrated_free_and_reset_events_carry_the_acp_jumps(state):
    migrated = [e for oem in MIGRATED_ITEMS for e in _migrated(state.item_by_oem_id(oem))]

    kinds = {(e.code_type, e.code_days) for e in migrated if e.code_type is not CodeType.DAYSCODE}
    assert kinds == {(CodeType.FREECODE, 1096), (CodeType.RESETCODE, 2192)}


@pytest.mark.parametrize("oem_item_id", MIGRATED_ITEMS)
def test_hash_index_starts_at_the_chain_length_and_jumps_by_the_days(state, oem_item_id):
    events = state.item_by_oem_id(oem_item_id).code_generator.events

    previous = 100_000
    for event in events:
        jump = {CodeType.FREECODE: 1096, CodeType.RESETCODE: 2192}.get(
            event.code_type, event.code_days
        )
        assert event.hash_index == previous + jump
        previous = event.hash_index


def test_migrated_codes_leave_the_free_and_reset_allowance_alone(state):
    for oem_item_id in MIGRATED_ITEMS:
        item = state.item_by_oem_id(oem_item_id)
        policy = item.item_fleet.policy
        native = item.code_generator.events[len(_migrated(item)) :]
        native_free = sum(e.code_type is CodeType.FREECODE for e in native)
        native_reset = sum(e.code_type is CodeType.RESETCODE for e in native)

        assert item.code_generator.free_code_count == policy.free_code_count - native_free
        assert item.code_generator.reset_code_count == policy.reset_code_count - native_reset


@pytest.mark.parametrize("query", [FREE, RESET], ids=["free", "reset"])
async def test_migrated_items_still_get_free_and_reset_codes(acme, state, query):
    for oem_item_id in MIGRATED_ITEMS[:2]:
        item = state.item_by_oem_id(oem_item_id)

        data = await acme.data(query, {"in": {"itemId": item.id}})

        assert next(iter(data.values()))["codeType"] in ("FREECODE", "RESETCODE")


async def test_history_lists_migrated_events_as_stored(acme, state):
    item = state.item_by_oem_id(MIGRATED_ITEMS[0])

    data = await acme.data(HISTORY, {"item": item.id, "dist": acme.id})

    nodes = [
        e["node"] for e in data["getAllCodeEventsForSpecificItemByDistributor"]["page"]["edges"]
    ]
    oldest = nodes[-1]
    assert oldest["actorName"] == "eIOT"
    assert oldest["codeHexString"] == "--"
    assert re.fullmatch(r"\*\d{3}( \d{3}){6}#", oldest["codeDecString"])
    assert oldest["codeNumber"] == 0
    free = next(n for n in nodes if n["codeType"] == "FREECODE" and n["actorName"] == "eIOT")
    assert free["codeDays"] == 1096
