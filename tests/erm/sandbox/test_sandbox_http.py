"""The HTTP contract: Apollo-style status codes and error shapes."""

from __future__ import annotations

import re

ITEM = "query Item($id: ID!) { getSpecificItem(itemId: $id) { _id createdAt } }"


async def test_syntax_error_is_400_parse_failed(acme):
    response = await acme.post("query { getSpecificItem(itemId: ")

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert error["locations"][0]["line"] == 1
    assert error["message"].startswith("Syntax Error")


async def test_unknown_field_is_400_validation_failed(acme):
    response = await acme.post("query { getEverything { _id } }")

    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "getEverything" in error["message"]
    assert error["locations"] == [{"line": 1, "column": 9}]


async def test_wrongly_typed_variable_declaration_is_400_validation_failed(acme):
    response = await acme.post(
        "query Item($id: Int!) { getSpecificItem(itemId: $id) { _id } }", {"id": 1}
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_uncoercible_variable_is_400_bad_user_input(acme, state):
    query = """
    query History($item: ID!, $dist: ID!, $n: Int) {
      getAllCodeEventsForSpecificItemByDistributor(itemId: $item, distributorId: $dist, first: $n) {
        pageData { count }
      }
    }"""

    response = await acme.post(
        query, {"item": state.items_of("acme")[0].id, "dist": acme.id, "n": "ten"}
    )

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$n" in error["message"]


async def test_missing_required_variable_is_400_bad_user_input(acme):
    response = await acme.post(ITEM, {})

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_malformed_json_body_is_400(http):
    response = await http.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_body_without_query_is_400(http):
    response = await http.post("/graphql", json={"variables": {}})

    assert response.status_code == 400


async def test_non_object_variables_are_400(http):
    response = await http.post("/graphql", json={"query": "{ __typename }", "variables": [1]})

    assert response.status_code == 400


async def test_get_on_graphql_is_405(http):
    response = await http.get("/graphql")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_unknown_id_is_200_with_a_null_non_nullable_field(acme):
    response = await acme.post(ITEM, {"id": "ffffffffffffffffffffffff"})

    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"] == [
        {
            "message": "Cannot return null for non-nullable field Query.getSpecificItem.",
            "locations": [{"line": 1, "column": 24}],
            "path": ["getSpecificItem"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
    ]


async def test_refusal_is_200_with_the_reason_in_the_original_error(acme, state):
    days = (
        "mutation Days($in: GenerateDaysCodeInput!) "
        "{ generateDaysCode(generateDaysCodeInput: $in) { codeDec } }"
    )

    response = await acme.post(
        days, {"in": {"itemId": state.items_of("acme")[0].id, "codeDays": 0}}
    )

    assert response.status_code == 200
    assert response.json()["errors"] == [
        {
            "message": "Bad Request Exception",
            "locations": [{"line": 1, "column": 46}],
            "path": ["generateDaysCode"],
            "extensions": {
                "code": "BAD_REQUEST",
                "originalError": {
                    "message": ["codeDays must not be less than 1"],
                    "error": "Bad Request",
                    "statusCode": 400,
                },
            },
        }
    ]


async def test_introspection_typename_needs_no_token(anonymous):
    response = await anonymous.post("{ __typename }")

    assert response.json() == {"data": {"__typename": "Query"}}


async def test_datetimes_are_iso_8601_with_milliseconds(acme, state):
    data = await acme.data(ITEM, {"id": state.items_of("acme")[0].id})

    created = data["getSpecificItem"]["createdAt"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created), created


async def test_operation_name_selects_the_operation(acme, state):
    item = state.items_of("acme")[0]
    document = ITEM + "\nquery Other { __typename }"

    response = await acme.http.post(
        "/graphql",
        json={"query": document, "variables": {"id": item.id}, "operationName": "Other"},
        headers={"Authorization": f"Bearer {acme.token}"},
    )

    assert response.json() == {"data": {"__typename": "Query"}}


async def test_health_endpoint_answers_ok(http):
    response = await http.get("/_sandbox/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
