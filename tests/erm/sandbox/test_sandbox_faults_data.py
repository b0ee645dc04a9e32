"""Faults that bend the data rather than the connection: kept descriptions, late commits, lists
that ignore their paging arguments."""

from __future__ import annotations

import pytest

from erm.sandbox import FLEET_DEFAULT, FLEET_OPEN
from erm.sandbox.model import CodeSystem

DAYS = """
mutation Days($in: GenerateDaysCodeInput!) {
  generateDaysCode(generateDaysCodeInput: $in) { codeDec }
}"""
HISTORY = """
query History($item: ID!, $dist: ID!, $first: Int) {
  getAllCodeEventsForSpecificItemByDistributor(itemId: $item, distributorId: $dist, first: $first) {
    page { edges { node { codeDecString description } } }
    pageData { count }
  }
}"""
INLINE_HISTORY = """
query Item($id: ID!) { getSpecificItem(itemId: $id) { codeGenerator { codeHistory { _id } } } }
"""
ITEMS = """
query Items($client: ID!, $first: Int, $after: String) {
  getAllClientItems(
    clientId: $client, first: $first, after: $after, assetaccount: false, queryorder: ASC
  ) {
    page { edges { node { _id } } pageInfo { endCursor hasNextPage } }
    pageData { count }
  }
}"""

DESCRIPTION = "payment 0123456789 from the M-PESA till of the Thika shop"


def _item(state, fleet=FLEET_OPEN):
    return state.items_of("acme", fleet=fleet, code_system=CodeSystem.ACP1)[0]


async def _days(caller, item, days=7, description=None):
    variables = {"in": {"itemId": item.id, "codeDays": days, "description": description}}
    return (await caller.data(DAYS, variables))["generateDaysCode"]


async def _history(caller, item, first=100):
    variables = {"item": item.id, "dist": caller.id, "first": first}
    return (await caller.data(HISTORY, variables))["getAllCodeEventsForSpecificItemByDistributor"]


# -- description_mode -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "kept"),
    [("verbatim", DESCRIPTION), ("truncate", DESCRIPTION[:24]), ("drop", None)],
)
async def test_description_mode_decides_what_history_keeps(acme, state, mode, kept):
    state.faults.description_mode = mode
    item = _item(state)

    await _days(acme, item, description=DESCRIPTION)

    latest = (await _history(acme, item, first=1))["page"]["edges"][0]["node"]
    assert latest["description"] == kept
    assert item.code_generator.events[-1].description == kept


async def test_truncate_keeps_the_configured_length(acme, state):
    state.faults.update({"description_mode": "truncate", "description_max_chars": 7})
    item = _item(state)

    await _days(acme, item, description=DESCRIPTION)

    latest = (await _history(acme, item, first=1))["page"]["edges"][0]["node"]
    assert latest["description"] == "payment"


# -- commit_delay_seconds -------------------------------------------------------------------------


async def test_a_late_commit_hides_the_code_from_history_until_the_delay_passed(acme, state, clock):
    state.faults.commit_delay_seconds = 30
    item = _item(state)
    before = await _history(acme, item)

    code = await _days(acme, item)
    clock.advance(29)
    hidden = await _history(acme, item)
    clock.advance(1)
    shown = await _history(acme, item)

    assert hidden == before
    assert shown["pageData"]["count"] == before["pageData"]["count"] + 1
    assert shown["page"]["edges"][0]["node"]["codeDecString"] == code["codeDec"]


async def test_a_late_commit_hides_the_code_from_the_items_code_history(acme, state, clock):
    state.faults.commit_delay_seconds = 30
    item = _item(state)
    seeded = len(item.code_generator.events)

    await _days(acme, item)
    inline = await acme.data(INLINE_HISTORY, {"id": item.id})

    assert len(inline["getSpecificItem"]["codeGenerator"]["codeHistory"]) == seeded


async def test_a_code_not_yet_committed_already_counts_for_the_rules(acme, state, clock):
    state.faults.commit_delay_seconds = 600
    item = _item(state, FLEET_DEFAULT)
    await _days(acme, item)
    clock.advance(30)

    refusal = await acme.refusal(DAYS, {"in": {"itemId": item.id, "codeDays": 7}})

    assert refusal == "Code generation interval not elapsed"


async def test_the_delay_applies_to_codes_issued_while_it_was_set(acme, state, clock):
    item = _item(state)
    state.faults.commit_delay_seconds = 60
    await _days(acme, item)
    count = (await _history(acme, item))["pageData"]["count"]

    state.faults.commit_delay_seconds = 0

    assert (await _history(acme, item))["pageData"]["count"] == count
    await _days(acme, item)
    assert (await _history(acme, item))["pageData"]["count"] == count + 1


# -- stuck_cursor / ignore_first ------------------------------------------------------------------


async def test_stuck_cursor_answers_the_first_page_forever(acme, state):
    state.faults.stuck_cursor = True

    first = await acme.data(ITEMS, {"client": acme.id, "first": 10})
    cursor = first["getAllClientItems"]["page"]["pageInfo"]["endCursor"]
    again = await acme.data(ITEMS, {"client": acme.id, "first": 10, "after": cursor})

    assert again == first
    assert again["getAllClientItems"]["page"]["pageInfo"]["hasNextPage"] is True


async def test_stuck_cursor_claims_more_even_for_an_empty_list(acme, state):
    state.faults.stuck_cursor = True
    item = next(i for i in state.items_of("acme") if not i.code_generator.events)

    history = await acme.data(
        "query H($item: ID!, $dist: ID!) { getAllCodeEventsForSpecificItemByDistributor("
        "itemId: $item, distributorId: $dist) { page { pageInfo { endCursor hasNextPage } } } }",
        {"item": item.id, "dist": acme.id},
    )

    page_info = history["getAllCodeEventsForSpecificItemByDistributor"]["page"]["pageInfo"]
    assert page_info["hasNextPage"] is True
    assert page_info["endCursor"]


async def test_ignore_first_answers_every_node(acme, state):
    state.faults.ignore_first = True

    data = await acme.data(ITEMS, {"client": acme.id, "first": 2})

    result = data["getAllClientItems"]
    assert len(result["page"]["edges"]) == result["pageData"]["count"] == 150
    assert result["page"]["pageInfo"]["hasNextPage"] is False


async def test_list_faults_can_be_set_over_http(http, acme, state):
    response = await http.post("/_sandbox/faults", json={"ignore_first": True})

    assert response.status_code == 200
    data = await acme.data(ITEMS, {"client": acme.id, "first": 1})
    assert len(data["getAllClientItems"]["page"]["edges"]) == 150
