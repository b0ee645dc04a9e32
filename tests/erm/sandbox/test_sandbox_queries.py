"""Lists and lookups: scoping, search, ordering and Relay pagination."""

from __future__ import annotations

import pytest

from erm.sandbox import FLEET_ANGAZA, FLEET_DEFAULT, FLEET_LAGOS, FLEET_OPEN, FLEET_STRICT
from erm.sandbox.model import CodeSystem

PAGE_INFO = "pageInfo { startCursor endCursor hasPreviousPage hasNextPage }"

FLEETS = f"""
query Fleets($client: String!, $search: String, $first: Int, $after: String) {{
  getItemFleetsForClient(clientId: $client, search: $search, first: $first, after: $after) {{
    page {{ edges {{ cursor node {{ _id fleetName }} }} {PAGE_INFO} }}
    pageData {{ count limit offset }}
  }}
}}"""

FLEET = """
query Fleet($id: String!) {
  getSpecificItemFleet(id: $id) {
    _id fleetName description assignDate actorName type actionScope
    distributor { _id orgContactPerson { _id name } }
    itemList { _id oemItemID oemID description }
    freeCodeCount resetCodeCount dayCodeCountLimit totalCodeCountLimit codeGenInterval
    maxCreditStackDays maxCreditStackCodeEvents
    disableFreeCode disableResetCodeCount disableCodeGenInterval disableMaxCreditStackDays
  }
}"""

ITEMS_IN_FLEET = f"""
query InFleet($fleet: ID!, $client: ID!, $first: Int) {{
  getAllClientItemsInItemFleet(
    first: $first, getAllClientItemsInItemFleet: {{itemFleetId: $fleet, clientId: $client}}
  ) {{
    page {{ edges {{ node {{ _id oemItemID itemFleet {{ _id }} }} }} {PAGE_INFO} }}
    pageData {{ count }}
  }}
}}"""

ITEMS = f"""
query Items(
  $client: ID!, $first: Int, $after: String, $last: Int, $before: String,
  $assetaccount: Boolean!, $search: String, $oem: String, $order: QueryOrder!,
  $openToken: Boolean
) {{
  getAllClientItems(
    clientId: $client, first: $first, after: $after, last: $last, before: $before,
    assetaccount: $assetaccount, search: $search, searchByOemItemId: $oem,
    queryorder: $order, pagination: CURSOR, isOpenTokenSimulator: $openToken
  ) {{
    page {{
      edges {{ cursor node {{ _id oemItemID sellerItemID createdAt
        itemFirmware {{ codeSystem }} assetAccount {{ _id }} }} }}
      {PAGE_INFO}
    }}
    pageData {{ count limit offset }}
  }}
}}"""

ITEM = """
query Item($id: ID!) {
  getSpecificItem(itemId: $id) {
    _id oemID oemItemID sellerID sellerItemID description idString lifeCycle creationDate
    createdAt updatedAt deleteStatus
    itemFleet { _id fleetName }
    itemFirmware { _id version codeSystem }
    itemBatch { _id batchNumber batchDate description starting_code secret_key code_gen_type }
    codeGenerator {
      _id hashRoot hashTop hashTopInitial hashIndex codeCount codeReversalCount
      freeCodeCount resetCodeCount
      codeHistory { _id codeType codeDays createdAt }
    }
    assetAccount { _id accountStage credit { owner { _id name contact { phone } } } }
  }
}"""

ACCOUNTS = f"""
query Accounts($client: ID!, $search: String, $first: Int, $after: String) {{
  getAllAssetAccountsForClient(clientId: $client, search: $search, first: $first, after: $after) {{
    page {{
      edges {{ node {{ _id accountStage asset {{ _id oemItemID }}
        credit {{ balance currency accountStatus owner {{ name }} }} }} }}
      {PAGE_INFO}
    }}
    pageData {{ count }}
  }}
}}"""

ACCOUNT = """
query Account($id: ID!) {
  getSpecificAssetAccount(id: $id) {
    _id accountStage c2uRatio createdAt
    asset { _id sellerItemID oemItemID codeGenerator { _id codeHistory { _id } }
            itemFleet { _id fleetName } }
    credit {
      accountStatus balance currency
      activities { action amount datetime notes }
      owner {
        _id name contact { phone }
        address { city country addressLocation { addressLatitude } }
      }
    }
    paySchedule { amount datetime instruction }
    payHistory { amount datetime instruction }
    paymentPlan { planName planDescription planDetails { pName pValue } }
    manager { _id }
    user { _id name }
    meta { name value }
  }
}"""


def _items_vars(client: str, **overrides):
    variables = {"client": client, "assetaccount": False, "order": "ASC"}
    variables.update(overrides)
    return variables


# -- fleets ---------------------------------------------------------------------------------------


async def test_fleets_are_the_callers_own(acme):
    data = await acme.data(FLEETS, {"client": acme.id})

    result = data["getItemFleetsForClient"]
    names = [edge["node"]["fleetName"] for edge in result["page"]["edges"]]
    assert sorted(names) == sorted([FLEET_OPEN, FLEET_DEFAULT, FLEET_STRICT, FLEET_ANGAZA])
    assert result["pageData"]["count"] == 4
    assert result["page"]["pageInfo"]["hasNextPage"] is False


async def test_fleet_search_matches_a_case_insensitive_substring_of_the_name(acme):
    data = await acme.data(FLEETS, {"client": acme.id, "search": "sTrIcT"})

    edges = data["getItemFleetsForClient"]["page"]["edges"]
    assert [edge["node"]["fleetName"] for edge in edges] == [FLEET_STRICT]


async def test_fleets_of_another_client_are_forbidden(acme, sunbright):
    error = await acme.error(FLEETS, {"client": sunbright.id})

    assert error["message"] == "Forbidden resource"
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_client_id_that_is_not_an_object_id_is_forbidden(acme):
    error = await acme.error(FLEETS, {"client": "acme"})

    assert error["message"] == "Forbidden resource"
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_client_id_in_upper_case_is_the_callers_own(acme):
    data = await acme.data(FLEETS, {"client": acme.id.upper()})

    assert data["getItemFleetsForClient"]["pageData"]["count"] == 4


async def test_specific_fleet_has_items_and_policy(acme, state):
    fleet = state.fleet_by_name(FLEET_STRICT)

    data = await acme.data(FLEET, {"id": fleet.id})

    got = data["getSpecificItemFleet"]
    assert got["fleetName"] == FLEET_STRICT
    assert got["freeCodeCount"] == 1
    assert got["resetCodeCount"] == 1
    assert got["codeGenInterval"] == 60_000
    assert got["maxCreditStackDays"] == 60
    assert got["disableCodeGenInterval"] is False
    assert got["distributor"]["_id"] == acme.id
    assert len(got["itemList"]) == 20
    assert all(item["oemID"] == "OVES" for item in got["itemList"])


async def test_open_fleet_has_its_limits_disabled(acme, state):
    data = await acme.data(FLEET, {"id": state.fleet_by_name(FLEET_OPEN).id})

    got = data["getSpecificItemFleet"]
    assert got["disableCodeGenInterval"] is True
    assert got["disableMaxCreditStackDays"] is True


async def test_fleet_of_another_distributor_is_forbidden(acme, state):
    error = await acme.error(FLEET, {"id": state.fleet_by_name(FLEET_LAGOS).id})

    assert error["message"] == "Forbidden resource"
    assert error["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("fleet_id", ["0123456789abcdef01234567", FLEET_OPEN])
async def test_unknown_fleet_is_null(acme, fleet_id):
    await acme.not_found(FLEET, {"id": fleet_id})


async def test_items_in_an_unknown_fleet_are_null(acme):
    await acme.not_found(ITEMS_IN_FLEET, {"fleet": "0123456789abcdef01234567", "client": acme.id})


async def test_items_in_fleet_lists_the_fleets_items(acme, state):
    fleet = state.fleet_by_name(FLEET_OPEN)

    data = await acme.data(ITEMS_IN_FLEET, {"fleet": fleet.id, "client": acme.id, "first": 50})

    result = data["getAllClientItemsInItemFleet"]
    assert result["pageData"]["count"] == 20
    assert {edge["node"]["itemFleet"]["_id"] for edge in result["page"]["edges"]} == {fleet.id}


async def test_items_in_fleet_for_another_client_is_forbidden(acme, sunbright, state):
    fleet = state.fleet_by_name(FLEET_OPEN)

    error = await acme.error(ITEMS_IN_FLEET, {"fleet": fleet.id, "client": sunbright.id})

    assert error["message"] == "Forbidden resource"


# -- items ----------------------------------------------------------------------------------------


async def test_client_items_count_all_of_the_callers_items(acme, sunbright):
    acme_data = await acme.data(ITEMS, _items_vars(acme.id, first=1))
    sunbright_data = await sunbright.data(ITEMS, _items_vars(sunbright.id, first=1))

    assert acme_data["getAllClientItems"]["pageData"]["count"] == 150
    assert sunbright_data["getAllClientItems"]["pageData"]["count"] == 90


async def test_paging_forward_visits_every_item_once(acme):
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        data = await acme.data(ITEMS, _items_vars(acme.id, first=40, after=after))
        page = data["getAllClientItems"]["page"]
        seen += [edge["node"]["_id"] for edge in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    assert pages == 4
    assert len(seen) == 150
    assert len(set(seen)) == 150


async def test_second_page_reports_offset_and_previous_page(acme):
    first = await acme.data(ITEMS, _items_vars(acme.id, first=10))
    cursor = first["getAllClientItems"]["page"]["pageInfo"]["endCursor"]

    second = await acme.data(ITEMS, _items_vars(acme.id, first=10, after=cursor))

    result = second["getAllClientItems"]
    assert result["pageData"] == {"count": 150, "limit": 10, "offset": 10}
    assert result["page"]["pageInfo"]["hasPreviousPage"] is True
    assert result["page"]["pageInfo"]["hasNextPage"] is True


async def test_paging_backward_with_last_and_before(acme):
    everything = []
    after = None
    for _ in range(2):
        data = await acme.data(ITEMS, _items_vars(acme.id, first=100, after=after))
        page = data["getAllClientItems"]["page"]
        everything += page["edges"]
        after = page["pageInfo"]["endCursor"]
    before = everything[20]["cursor"]

    data = await acme.data(ITEMS, _items_vars(acme.id, last=5, before=before))

    edges = data["getAllClientItems"]["page"]["edges"]
    assert [e["node"]["_id"] for e in edges] == [e["node"]["_id"] for e in everything[15:20]]
    assert data["getAllClientItems"]["page"]["pageInfo"]["hasPreviousPage"] is True


async def test_page_size_is_capped_at_100(acme):
    data = await acme.data(ITEMS, _items_vars(acme.id, first=1000))

    assert len(data["getAllClientItems"]["page"]["edges"]) == 100
    assert data["getAllClientItems"]["pageData"]["limit"] == 100


async def test_negative_page_size_is_a_validation_refusal(acme):
    refusal = await acme.refusal(ITEMS, _items_vars(acme.id, first=-1, last=-2))

    assert refusal == ["first must not be less than 0", "last must not be less than 0"]


@pytest.mark.parametrize("cursor", ["bm90LWEtY3Vyc29y", "not base64!"])
async def test_garbage_cursor_is_a_validation_refusal(acme, cursor):
    after = await acme.refusal(ITEMS, _items_vars(acme.id, after=cursor))
    before = await acme.refusal(ITEMS, _items_vars(acme.id, before=cursor))

    assert after == ["after must be a valid cursor"]
    assert before == ["before must be a valid cursor"]


async def test_queryorder_sorts_by_creation_time(acme):
    ascending = await acme.data(ITEMS, _items_vars(acme.id, first=100, order="ASC"))
    descending = await acme.data(ITEMS, _items_vars(acme.id, first=100, order="DESC"))

    up = [e["node"]["createdAt"] for e in ascending["getAllClientItems"]["page"]["edges"]]
    down = [e["node"]["createdAt"] for e in descending["getAllClientItems"]["page"]["edges"]]
    assert up == sorted(up)
    assert down == sorted(down, reverse=True)


async def test_search_is_a_case_insensitive_substring_over_ids_and_description(acme):
    by_description = await acme.data(ITEMS, _items_vars(acme.id, search="LANTERN", first=100))
    by_oem_prefix = await acme.data(ITEMS, _items_vars(acme.id, search="test2503", first=100))

    assert by_description["getAllClientItems"]["pageData"]["count"] == 20
    assert by_oem_prefix["getAllClientItems"]["pageData"]["count"] == 20


async def test_search_matches_the_seller_item_id(acme, state):
    item = state.items_of("acme", fleet=FLEET_ANGAZA)[0]

    data = await acme.data(ITEMS, _items_vars(acme.id, search=item.seller_item_id.lower()))

    nodes = [e["node"] for e in data["getAllClientItems"]["page"]["edges"]]
    assert [n["_id"] for n in nodes] == [item.id]
    assert nodes[0]["sellerItemID"].startswith("AC-")


async def test_search_by_oem_item_id_is_an_exact_case_insensitive_match(acme):
    exact = await acme.data(ITEMS, _items_vars(acme.id, oem="test2503000001"))
    prefix = await acme.data(ITEMS, _items_vars(acme.id, oem="TEST2503"))

    assert [e["node"]["oemItemID"] for e in exact["getAllClientItems"]["page"]["edges"]] == [
        "TEST2503000001"
    ]
    assert prefix["getAllClientItems"]["pageData"]["count"] == 0


async def test_assetaccount_true_lists_only_items_with_an_account(acme, state):
    data = await acme.data(ITEMS, _items_vars(acme.id, assetaccount=True, first=100))

    result = data["getAllClientItems"]
    assert result["pageData"]["count"] == len(state.items_of("acme", with_account=True))
    assert result["pageData"]["count"] < 150
    assert all(e["node"]["assetAccount"] for e in result["page"]["edges"])


async def test_open_token_simulator_lists_only_opentoken_items(acme, state):
    data = await acme.data(ITEMS, _items_vars(acme.id, openToken=True, first=100))

    result = data["getAllClientItems"]
    expected = len(state.items_of("acme", code_system=CodeSystem.OPENTOKEN))
    assert result["pageData"]["count"] == expected
    assert {e["node"]["itemFirmware"]["codeSystem"] for e in result["page"]["edges"]} == {
        "OPENTOKEN"
    }


async def test_items_of_another_client_are_forbidden(acme, sunbright):
    error = await acme.error(ITEMS, _items_vars(sunbright.id))

    assert error["message"] == "Forbidden resource"
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_specific_item_has_fleet_firmware_batch_generator_and_account(acme, state):
    item = state.items_of("acme", fleet=FLEET_OPEN, with_account=True)[0]

    data = await acme.data(ITEM, {"id": item.id})

    got = data["getSpecificItem"]
    assert got["oemItemID"] == item.oem_item_id
    assert got["oemID"] == "OVES"
    assert got["sellerID"] == "OVES"
    assert got["sellerItemID"] == item.oem_item_id
    assert got["itemFleet"]["fleetName"] == FLEET_OPEN
    assert got["itemFirmware"]["codeSystem"] == "ACP1"
    assert got["itemBatch"]["code_gen_type"] == "ACP1"
    assert got["itemBatch"]["secret_key"] is None
    assert len(got["codeGenerator"]["hashRoot"]) == 64
    assert got["codeGenerator"]["codeCount"] == len(got["codeGenerator"]["codeHistory"])
    assert got["assetAccount"]["credit"]["owner"]["contact"]["phone"].startswith("+254")


async def test_opentoken_item_batch_carries_the_openpaygo_key(acme, state):
    item = state.items_of("acme", fleet=FLEET_OPEN, code_system=CodeSystem.OPENTOKEN)[0]

    data = await acme.data(ITEM, {"id": item.id})

    batch = data["getSpecificItem"]["itemBatch"]
    assert batch["code_gen_type"] == "OPENTOKEN"
    assert len(batch["secret_key"]) == 32
    assert batch["starting_code"].isdigit()


async def test_item_of_another_distributor_is_forbidden(acme, state):
    other = state.items_of("sunbright")[0]

    error = await acme.error(ITEM, {"id": other.id})

    assert error["message"] == "Forbidden resource"
    assert error["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    "item_id", ["ffffffffffffffffffffffff", "TEST2503000001", "fffffffffffffffffffffffg"]
)
async def test_unknown_or_malformed_item_id_is_null(acme, item_id):
    await acme.not_found(ITEM, {"id": item_id})


async def test_item_id_in_upper_case_finds_the_item(acme, state):
    item = state.items_of("acme")[0]

    data = await acme.data(ITEM, {"id": item.id.upper()})

    assert data["getSpecificItem"]["_id"] == item.id


# -- asset accounts -------------------------------------------------------------------------------


async def test_asset_accounts_are_the_callers_own(acme, state):
    data = await acme.data(ACCOUNTS, {"client": acme.id, "first": 100})

    result = data["getAllAssetAccountsForClient"]
    assert result["pageData"]["count"] == len(state.items_of("acme", with_account=True))
    ids = {edge["node"]["asset"]["_id"] for edge in result["page"]["edges"]}
    assert ids <= {item.id for item in state.items_of("acme")}


async def test_seeded_accounts_cover_every_stage_status_and_several_currencies(acme, sunbright):
    nodes = []
    for caller in (acme, sunbright):
        after = None
        while True:
            data = await caller.data(ACCOUNTS, {"client": caller.id, "first": 100, "after": after})
            page = data["getAllAssetAccountsForClient"]["page"]
            nodes += [edge["node"] for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]

    assert {n["accountStage"] for n in nodes} == {
        "ASSET_ACCOUNT_CREATED",
        "ASSET_USER_PAIRED",
        "ACCOUNT_ACTIVATED",
        "ASSET_UNLOCKED",
        "PAYPLAN_LOCKED",
        "PAYPLAN_COMPLETED",
        "ACCOUNT_CLOSED",
    }
    assert {n["credit"]["accountStatus"] for n in nodes} == {"ACTIVE", "INACTIVE", "SUSPENDED"}
    assert {"KES", "UGX", "NGN"} <= {n["credit"]["currency"] for n in nodes}


async def test_account_search_matches_owner_name_and_item_id(acme, state):
    account = state.items_of("acme", with_account=True)[0].asset_account
    assert account is not None

    by_owner = await acme.data(
        ACCOUNTS, {"client": acme.id, "search": account.credit.owner.name.upper()}
    )
    by_item = await acme.data(
        ACCOUNTS, {"client": acme.id, "search": account.asset.oem_item_id.lower()}
    )

    assert account.id in {
        e["node"]["_id"] for e in by_owner["getAllAssetAccountsForClient"]["page"]["edges"]
    }
    assert [e["node"]["_id"] for e in by_item["getAllAssetAccountsForClient"]["page"]["edges"]] == [
        account.id
    ]


async def test_accounts_of_another_client_are_forbidden(acme, sunbright):
    error = await acme.error(ACCOUNTS, {"client": sunbright.id})

    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_specific_asset_account_has_plan_payments_and_owner(acme, state):
    account = state.items_of("acme", with_account=True)[0].asset_account
    assert account is not None

    data = await acme.data(ACCOUNT, {"id": account.id})

    got = data["getSpecificAssetAccount"]
    assert got["asset"]["_id"] == account.asset.id
    assert got["manager"]["_id"] == acme.id
    assert got["user"]["name"] == got["credit"]["owner"]["name"]
    assert {d["pName"] for d in got["paymentPlan"]["planDetails"]} >= {"deposit", "dailyRate"}
    assert len(got["paySchedule"]) == 3
    assert got["credit"]["activities"][0]["action"] == "CREATE"


async def test_asset_account_of_another_distributor_is_forbidden(acme, state):
    other = state.items_of("sunbright", with_account=True)[0].asset_account
    assert other is not None

    error = await acme.error(ACCOUNT, {"id": other.id})

    assert error["message"] == "Forbidden resource"
    assert error["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("account_id", ["aaaaaaaaaaaaaaaaaaaaaaaa", "account-1"])
async def test_unknown_asset_account_is_null(acme, account_id):
    await acme.not_found(ACCOUNT, {"id": account_id})
