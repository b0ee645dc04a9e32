"""Introspection switched off as Apollo does it, and the sandbox serving an altered schema."""

from __future__ import annotations

import httpx
import pytest

from erm.sandbox import create_app
from erm.sandbox.app import NO_INTROSPECTION
from erm.sandbox.schema import SCHEMA_PATH, load_schema

SCHEMA = "{ __schema { queryType { name } } }"
TYPE = '{ __type(name: "Item") { name } }'
ITEM_ARGS = (
    """{ __schema { queryType { fields { name args { name type { kind ofType { name } } } } } } }"""
)
ITEM = "query Item($id: ID!) { getSpecificItem(itemId: $id) { _id } }"


def altered(old: str, new: str) -> str:
    sdl = SCHEMA_PATH.read_text(encoding="utf-8")
    assert old in sdl
    return sdl.replace(old, new)


async def test_introspection_is_answered_by_default(acme):
    response = await acme.post(SCHEMA)

    assert response.status_code == 200
    assert response.json()["data"]["__schema"]["queryType"]["name"] == "Query"


@pytest.mark.parametrize("query", [SCHEMA, TYPE])
async def test_introspection_off_is_refused_like_apollo(acme, state, query):
    state.faults.introspection = False

    response = await acme.post(query)

    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    error = body["errors"][0]
    assert error["message"] == NO_INTROSPECTION
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_introspection_off_still_answers_typename_and_queries(acme, state):
    state.faults.introspection = False
    item = state.item_by_oem_id("TEST2503000001")

    assert (await acme.post("{ __typename }")).status_code == 200
    assert (await acme.data(ITEM, {"id": item.id}))["getSpecificItem"]["_id"] == item.id


async def test_the_setting_changes_at_run_time_despite_the_document_cache(acme, http):
    statuses = [(await acme.post(SCHEMA)).status_code]
    for allowed in (False, True):
        await http.post("/_sandbox/faults", json={"introspection": allowed})
        statuses.append((await acme.post(SCHEMA)).status_code)

    assert statuses == [200, 400, 200]


# -- an altered schema ----------------------------------------------------------------------------


async def serve_altered(state, sdl: str, query: str, variables=None) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(state, schema_sdl=sdl))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        return await http.post("/graphql", json={"query": query, "variables": variables or {}})


async def test_an_altered_schema_shows_a_renamed_argument_by_introspection(state):
    sdl = altered("getSpecificItem(itemId: ID!)", "getSpecificItem(id: ID!)")

    response = await serve_altered(state, sdl, ITEM_ARGS)

    fields = response.json()["data"]["__schema"]["queryType"]["fields"]
    args = next(f["args"] for f in fields if f["name"] == "getSpecificItem")
    assert [(a["name"], a["type"]["kind"], a["type"]["ofType"]["name"]) for a in args] == [
        ("id", "NON_NULL", "ID")
    ]


async def test_an_altered_schema_refuses_the_old_argument(state):
    sdl = altered("getSpecificItem(itemId: ID!)", "getSpecificItem(id: ID!)")

    response = await serve_altered(state, sdl, ITEM, {"id": "x"})

    assert response.status_code == 400
    messages = [e["message"] for e in response.json()["errors"]]
    assert "Unknown argument 'itemId' on field 'Query.getSpecificItem'." in messages


async def test_an_altered_schema_may_drop_a_root_field(state):
    sdl = altered("getSpecificAssetAccount(id: ID!): AssetAccount!", "")

    response = await serve_altered(state, sdl, '{ getSpecificAssetAccount(id: "x") { _id } }')

    assert response.status_code == 400
    assert "getSpecificAssetAccount" in response.json()["errors"][0]["message"]


def test_a_root_field_without_a_resolver_is_refused_at_build_time():
    sdl = altered("type Query {", "type Query {\n  getEverything: String")

    with pytest.raises(RuntimeError, match="getEverything"):
        load_schema(sdl)


def test_schemas_are_built_once_per_sdl_text():
    sdl = altered("getSpecificItem(itemId: ID!)", "getSpecificItem(id: ID!)")

    assert load_schema() is load_schema()
    assert load_schema(sdl) is load_schema(sdl)
    assert load_schema(sdl) is not load_schema()
