"""``odd_answer_next``: a code is made, then answered HTTP 200 with a body a client must doubt."""

from __future__ import annotations

import pytest

from erm.sandbox import FLEET_OPEN
from erm.sandbox.app import ODD_ANSWER_ERROR
from erm.sandbox.model import CodeSystem

DAYS = """
mutation Days($in: GenerateDaysCodeInput!) {
  generateDaysCode(generateDaysCodeInput: $in) { codeType codeHex codeDec }
}"""
FREE = """
mutation Free($in: GenerateCodeInput!) {
  generateFreeCode(generateFreeCodeInput: $in) { codeType codeHex codeDec }
}"""


def _item(state):
    return state.items_of("acme", fleet=FLEET_OPEN, code_system=CodeSystem.ACP1)[0]


async def _odd(acme, state, kind, query=DAYS, days=7):
    """Ask for one code with an odd answer due; the answer's JSON and the item's new events."""
    item = _item(state)
    before = len(item.code_generator.events)
    state.faults.update({"odd_answer_next": 1, "odd_answer": kind})
    request = {"itemId": item.id, "codeDays": days} if query is DAYS else {"itemId": item.id}

    response = await acme.post(query, {"in": request})

    assert response.status_code == 200
    return response.json(), item.code_generator.events[before:]


async def test_bad_enum_answers_a_code_type_the_schema_does_not_list(acme, state):
    body, made = await _odd(acme, state, "bad_enum")

    answer = body["data"]["generateDaysCode"]
    assert answer["codeType"] == "DAYSCODE_V2"
    assert answer["codeDec"] == made[0].code_dec_string
    assert len(made) == 1
    assert "errors" not in body


async def test_data_and_errors_answers_the_code_with_an_error_beside_it(acme, state):
    body, made = await _odd(acme, state, "data_and_errors")

    assert body["data"]["generateDaysCode"]["codeDec"] == made[0].code_dec_string
    [error] = body["errors"]
    assert error["message"] == ODD_ANSWER_ERROR
    assert error["path"] == ["generateDaysCode"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


async def test_no_digits_answers_an_empty_code(acme, state):
    body, made = await _odd(acme, state, "no_digits")

    answer = body["data"]["generateDaysCode"]
    assert (answer["codeDec"], answer["codeHex"]) == ("*#", "")
    assert len(made) == 1


@pytest.mark.parametrize(
    ("query", "asked", "answered"),
    [(DAYS, "DAYSCODE", "FREECODE"), (FREE, "FREECODE", "RESETCODE")],
)
async def test_wrong_type_answers_another_kind_of_code(acme, state, query, asked, answered):
    body, made = await _odd(acme, state, "wrong_type", query)

    [answer] = body["data"].values()
    assert answer["codeType"] == answered
    assert made[0].code_type.value == asked


async def test_the_counter_is_spent_only_on_requests_that_made_a_code(acme, state):
    item = _item(state)
    state.faults.update({"odd_answer_next": 1, "odd_answer": "bad_enum"})

    assert (await acme.post("{ __typename }")).status_code == 200
    refused = await acme.post(DAYS, {"in": {"itemId": item.id, "codeDays": 0}})
    assert refused.json()["errors"]
    assert state.faults.odd_answer_next == 1

    odd = await acme.data(DAYS, {"in": {"itemId": item.id, "codeDays": 3}})
    plain = await acme.data(DAYS, {"in": {"itemId": item.id, "codeDays": 3}})

    assert odd["generateDaysCode"]["codeType"] == "DAYSCODE_V2"
    assert plain["generateDaysCode"]["codeType"] == "DAYSCODE"
    assert state.faults.odd_answer_next == 0
