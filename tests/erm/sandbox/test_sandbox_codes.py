"""Code generation (ACP1 stand-in and real OpenPAYGO tokens) and the recorded history."""

from __future__ import annotations

import re

import openpaygo
import pytest
from openpaygo import TokenType

from erm.sandbox import FLEET_DEFAULT, FLEET_OPEN, seed_state
from erm.sandbox.config import SandboxConfig
from erm.sandbox.model import CodeSystem, CodeType

DAYS = """
mutation Days($in: GenerateDaysCodeInput!) {
  generateDaysCode(generateDaysCodeInput: $in) { codeType codeHex codeDec }
}"""
FREE = """
mutation Free($in: GenerateCodeInput!) {
  generateFreeCode(generateFreeCodeInput: $in) { codeType codeHex codeDec }
}"""
RESET = """
mutation Reset($in: GenerateCodeInput!) {
  generateResetCode(generateResetCodeInput: $in) { codeType codeHex codeDec }
}"""
HISTORY = """
query History(
  $item: ID!, $dist: ID!, $first: Int, $after: String, $last: Int, $before: String
) {
  getAllCodeEventsForSpecificItemByDistributor(
    itemId: $item, distributorId: $dist, first: $first, after: $after, last: $last, before: $before
  ) {
    page {
      edges { cursor node {
        _id createdAt updatedAt triggers type actionScope actorName codeType codeDays codeNumber
        codeGenerator { _id hashIndex hashTop codeCount }
        codeHexString codeDecString description hashIndex hashTop hashRoot codeCount
      } }
      pageInfo { startCursor endCursor hasPreviousPage hasNextPage }
    }
    pageData { count limit offset }
  }
}"""
BATCH = """
query Batch($id: ID!) {
  getSpecificItem(itemId: $id) { itemBatch { secret_key starting_code } }
}"""
INCREASE_FREE = """
mutation More($item: ID!, $n: Int!) {
  distributorIncreaseFreeCodeCountForItem(itemId: $item, freeCodeCount: $n) {
    _id freeCodeCount resetCodeCount codeCount
  }
}"""
INCREASE_RESET = """
mutation More($item: ID!, $n: Int!) {
  distributorIncreaseResetCodeCountForItem(itemId: $item, resetCodeCount: $n) {
    _id freeCodeCount resetCodeCount
  }
}"""


def _open_item(state, system=CodeSystem.ACP1, index=0):
    return state.items_of("acme", fleet=FLEET_OPEN, code_system=system)[index]


async def _days(caller, item_id, days, description=None):
    data = await caller.data(
        DAYS, {"in": {"itemId": item_id, "codeDays": days, "description": description}}
    )
    return data["generateDaysCode"]


async def _history(caller, item_id, **paging):
    variables = {"item": item_id, "dist": caller.distributor_id, **paging}
    data = await caller.data(HISTORY, variables)
    return data["getAllCodeEventsForSpecificItemByDistributor"]


# -- ACP1 -----------------------------------------------------------------------------------------


async def test_acp1_days_code_has_21_digits_and_16_hex(acme, state):
    code = await _days(acme, _open_item(state).id, 30)

    assert code["codeType"] == "DAYSCODE"
    assert re.fullmatch(r"\d{21}", code["codeDec"])
    assert re.fullmatch(r"[0-9A-F]{16}", code["codeHex"])


async def test_acp1_codes_differ_from_call_to_call(acme, state):
    item = _open_item(state)

    codes = [(await _days(acme, item.id, 7))["codeDec"] for _ in range(5)]

    assert len(set(codes)) == 5


async def test_acp1_codes_are_deterministic_for_the_same_seed(state, clock):
    twin = seed_state(0, SandboxConfig(clock=clock))
    caller = state.distributor_by_name("acme")
    twin_caller = twin.distributor_by_name("acme")

    one = state.generate(caller, _open_item(state).id, CodeType.DAYSCODE, 30)
    two = twin.generate(twin_caller, _open_item(twin).id, CodeType.DAYSCODE, 30)

    assert one == two


async def test_free_and_reset_codes_have_their_types(acme, state):
    item = _open_item(state)

    free = (await acme.data(FREE, {"in": {"itemId": item.id}}))["generateFreeCode"]
    reset = (await acme.data(RESET, {"in": {"itemId": item.id}}))["generateResetCode"]

    assert free["codeType"] == "FREECODE"
    assert reset["codeType"] == "RESETCODE"
    assert re.fullmatch(r"\d{21}", free["codeDec"])
    assert free["codeDec"] != reset["codeDec"]


# -- history --------------------------------------------------------------------------------------


async def test_every_code_is_recorded_with_all_fields(acme, state, clock):
    item = _open_item(state)

    code = await _days(acme, item.id, 14, "payment 42")
    history = await _history(acme, item.id, first=1)

    event = history["page"]["edges"][0]["node"]
    generator = item.code_generator
    assert event["codeType"] == "DAYSCODE"
    assert event["codeDays"] == 14
    assert event["codeHexString"] == code["codeHex"]
    assert event["codeDecString"] == code["codeDec"]
    assert event["description"] == "payment 42"
    assert event["triggers"] == []
    assert event["type"] == "EVENT"
    assert event["actionScope"] == "CLIENT"
    assert event["actorName"] == state.distributor_by_name("acme").display_name
    assert event["codeNumber"] == generator.code_count
    assert event["codeCount"] == generator.code_count
    assert event["hashIndex"] == generator.hash_index
    assert event["hashTop"] == generator.hash_top
    assert event["hashRoot"] == generator.hash_root
    assert event["codeGenerator"]["_id"] == generator.id
    assert re.fullmatch(r"[0-9a-f]{24}", event["_id"])
    assert event["createdAt"].startswith("2026-06-01T")


async def test_free_and_reset_events_have_zero_days(acme, state):
    item = _open_item(state)
    await acme.data(FREE, {"in": {"itemId": item.id}})
    await acme.data(RESET, {"in": {"itemId": item.id}})

    history = await _history(acme, item.id, first=2)

    nodes = [edge["node"] for edge in history["page"]["edges"]]
    assert [(n["codeType"], n["codeDays"]) for n in nodes] == [("RESETCODE", 0), ("FREECODE", 0)]


async def test_history_is_newest_first(acme, state, clock):
    item = _open_item(state, index=2)
    for days in (1, 2, 3):
        await _days(acme, item.id, days)
        clock.advance(1)

    history = await _history(acme, item.id, first=3)

    nodes = [edge["node"] for edge in history["page"]["edges"]]
    assert [n["codeDays"] for n in nodes] == [3, 2, 1]
    assert nodes[0]["createdAt"] > nodes[1]["createdAt"] > nodes[2]["createdAt"]


async def test_history_pages_forward_and_backward(acme, state, clock):
    item = _open_item(state, index=3)
    seeded = len(item.code_generator.events)
    for days in range(1, 8):
        await _days(acme, item.id, days)
        clock.advance(1)

    first = await _history(acme, item.id, first=3)
    second = await _history(acme, item.id, first=3, after=first["page"]["pageInfo"]["endCursor"])
    back = await _history(acme, item.id, last=2, before=second["page"]["edges"][0]["cursor"])

    assert first["pageData"]["count"] == seeded + 7
    assert [e["node"]["codeDays"] for e in first["page"]["edges"]] == [7, 6, 5]
    assert [e["node"]["codeDays"] for e in second["page"]["edges"]] == [4, 3, 2]
    assert second["pageData"]["offset"] == 3
    assert second["page"]["pageInfo"]["hasPreviousPage"] is True
    assert [e["node"]["codeDays"] for e in back["page"]["edges"]] == [6, 5]


async def test_history_requires_the_distributor_id(acme, state):
    nullable = HISTORY.replace("$dist: ID!", "$dist: ID")

    response = await acme.post(nullable, {"item": _open_item(state).id, "dist": acme.id})

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "$dist" in error["message"]


async def test_history_for_another_distributor_id_is_forbidden(acme, sunbright, state):
    error = await acme.error(HISTORY, {"item": _open_item(state).id, "dist": sunbright.id})

    assert error["message"] == "Forbidden resource"
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_history_of_another_distributors_item_is_forbidden(sunbright, state):
    error = await sunbright.error(HISTORY, {"item": _open_item(state).id, "dist": sunbright.id})

    assert error["message"] == "Forbidden resource"
    assert error["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("item_id", ["ffffffffffffffffffffffff", "TEST2503000001"])
async def test_history_of_an_unknown_item_is_null(acme, item_id):
    await acme.not_found(HISTORY, {"item": item_id, "dist": acme.id})


async def test_code_history_on_the_item_matches_the_paged_history(acme, state):
    item = _open_item(state)
    await _days(acme, item.id, 9)

    data = await acme.data(
        "query I($id: ID!) { getSpecificItem(itemId: $id) "
        "{ codeGenerator { codeHistory { _id codeDays } } } }",
        {"id": item.id},
    )
    paged = await _history(acme, item.id, first=100)

    inline = data["getSpecificItem"]["codeGenerator"]["codeHistory"]
    assert [e["_id"] for e in inline] == [e["node"]["_id"] for e in paged["page"]["edges"]]
    assert inline[0]["codeDays"] == 9


async def test_code_for_another_distributors_item_is_forbidden(sunbright, state):
    error = await sunbright.error(DAYS, {"in": {"itemId": _open_item(state).id, "codeDays": 5}})

    assert error["message"] == "Forbidden resource"
    assert error["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    ("query", "request_input"),
    [(DAYS, {"codeDays": 5}), (FREE, {}), (RESET, {})],
    ids=["days", "free", "reset"],
)
@pytest.mark.parametrize("item_id", ["ffffffffffffffffffffffff", "not-an-object-id"])
async def test_code_for_an_unknown_item_is_null(acme, query, request_input, item_id):
    await acme.not_found(query, {"in": {"itemId": item_id, **request_input}})


# -- hashIndex ------------------------------------------------------------------------------------


async def test_hash_index_jumps_by_the_days_or_the_acp_jumps(acme, state):
    item = _open_item(state, index=4)
    start = item.code_generator.hash_index

    await _days(acme, item.id, 30)
    await acme.data(FREE, {"in": {"itemId": item.id}})
    await acme.data(RESET, {"in": {"itemId": item.id}})

    nodes = [e["node"] for e in (await _history(acme, item.id, first=3))["page"]["edges"]]
    assert [n["hashIndex"] for n in reversed(nodes)] == [
        start + 30,
        start + 30 + 1096,
        start + 30 + 1096 + 2192,
    ]


def test_a_new_generator_starts_at_the_chain_length(state):
    item = next(i for i in state.items.values() if not i.code_generator.events)

    assert item.code_generator.hash_index == 100_000


# -- OPENTOKEN ------------------------------------------------------------------------------------


async def _batch_key(caller, item_id):
    batch = (await caller.data(BATCH, {"id": item_id}))["getSpecificItem"]["itemBatch"]
    return batch["secret_key"], int(batch["starting_code"])


@pytest.mark.parametrize("days", [1, 30, 995])
async def test_opentoken_days_code_decodes_to_the_days(acme, state, days):
    item = _open_item(state, CodeSystem.OPENTOKEN)
    key, starting_code = await _batch_key(acme, item.id)
    device_count = item.code_generator.token_count

    code = await _days(acme, item.id, days)

    assert re.fullmatch(r"\d{9}", code["codeDec"])
    assert int(code["codeHex"], 16) == int(code["codeDec"])
    value, token_type, new_count, _ = openpaygo.decode_token(
        token=code["codeDec"], secret_key=key, count=device_count, starting_code=starting_code
    )
    assert (value, token_type) == (days, TokenType.ADD_TIME)
    assert new_count == item.code_generator.token_count


async def test_opentoken_long_days_code_uses_the_extended_format(acme, state):
    item = _open_item(state, CodeSystem.OPENTOKEN, index=1)
    key, starting_code = await _batch_key(acme, item.id)
    device_count = item.code_generator.token_count

    code = await _days(acme, item.id, 1095)

    assert re.fullmatch(r"\d{12}", code["codeDec"])
    value, token_type, _, _ = openpaygo.decode_token(
        token=code["codeDec"], secret_key=key, count=device_count, starting_code=starting_code
    )
    assert (value, token_type) == (1095, TokenType.ADD_TIME)


async def test_opentoken_tokens_in_a_row_all_decode_on_one_device(acme, state):
    item = _open_item(state, CodeSystem.OPENTOKEN, index=2)
    key, starting_code = await _batch_key(acme, item.id)
    device_count = item.code_generator.token_count
    used = None

    decoded = []
    for days in (7, 14, 30):
        code = await _days(acme, item.id, days)
        value, _, device_count, used = openpaygo.decode_token(
            token=code["codeDec"],
            secret_key=key,
            count=device_count,
            used_counts=used,
            starting_code=starting_code,
        )
        decoded.append(value)

    assert decoded == [7, 14, 30]


async def test_opentoken_free_code_disables_payg(acme, state):
    item = _open_item(state, CodeSystem.OPENTOKEN)
    key, starting_code = await _batch_key(acme, item.id)
    device_count = item.code_generator.token_count

    code = (await acme.data(FREE, {"in": {"itemId": item.id}}))["generateFreeCode"]

    _, token_type, _, _ = openpaygo.decode_token(
        token=code["codeDec"], secret_key=key, count=device_count, starting_code=starting_code
    )
    assert token_type == TokenType.DISABLE_PAYG


async def test_opentoken_reset_code_sets_time_to_zero(acme, state):
    item = _open_item(state, CodeSystem.OPENTOKEN)
    key, starting_code = await _batch_key(acme, item.id)
    device_count = item.code_generator.token_count

    code = (await acme.data(RESET, {"in": {"itemId": item.id}}))["generateResetCode"]

    value, token_type, _, _ = openpaygo.decode_token(
        token=code["codeDec"], secret_key=key, count=device_count, starting_code=starting_code
    )
    assert (value, token_type) == (0, TokenType.SET_TIME)


# -- per-item allowances --------------------------------------------------------------------------


async def test_increasing_free_codes_raises_the_items_allowance(acme, state):
    item = state.items_of("acme", fleet=FLEET_DEFAULT)[0]
    before = item.code_generator.free_code_count

    data = await acme.data(INCREASE_FREE, {"item": item.id, "n": 3})

    generator = data["distributorIncreaseFreeCodeCountForItem"]
    assert generator["_id"] == item.code_generator.id
    assert generator["freeCodeCount"] == before + 3


async def test_increasing_reset_codes_raises_the_items_allowance(acme, state):
    item = state.items_of("acme", fleet=FLEET_DEFAULT)[0]
    before = item.code_generator.reset_code_count

    data = await acme.data(INCREASE_RESET, {"item": item.id, "n": 2})

    assert data["distributorIncreaseResetCodeCountForItem"]["resetCodeCount"] == before + 2


@pytest.mark.parametrize("count", [0, -4])
async def test_increase_by_a_non_positive_count_is_a_validation_refusal(acme, state, count):
    item = state.items_of("acme", fleet=FLEET_DEFAULT)[0]

    free = await acme.refusal(INCREASE_FREE, {"item": item.id, "n": count})
    reset = await acme.refusal(INCREASE_RESET, {"item": item.id, "n": count})

    assert free == ["freeCodeCount must not be less than 1"]
    assert reset == ["resetCodeCount must not be less than 1"]


@pytest.mark.parametrize("query", [INCREASE_FREE, INCREASE_RESET], ids=["free", "reset"])
async def test_increase_for_an_unknown_item_is_null(acme, query):
    await acme.not_found(query, {"item": "ffffffffffffffffffffffff", "n": 1})


async def test_increase_for_another_distributors_item_is_forbidden(sunbright, state):
    item = state.items_of("acme", fleet=FLEET_DEFAULT)[0]

    error = await sunbright.error(INCREASE_RESET, {"item": item.id, "n": 1})

    assert error["extensions"]["code"] == "FORBIDDEN"
