"""Every branch of the client's error mapping, driven through httpx's transport seam."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from erm.client import ErmClient
from erm.errors import (
    ErmAuthError,
    ErmNotFoundError,
    ErmRejectedError,
    ErmSchemaError,
    ErmUnavailableError,
    UncertainOutcomeError,
)
from erm.models import CodeType, Item
from erm.transport import ClientConfig

ITEM = Item(id="65a0c0ffee0000000000abcd", oem_item_id="TEST2503000017")
Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler, **config: float) -> tuple[ErmClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    cfg = ClientConfig(url="http://127.0.0.1:9/graphql", retry_backoff=0.0, **config)  # type: ignore[arg-type]
    return ErmClient(cfg, transport=httpx.MockTransport(record)), seen


def graphql_error(code: str | None, message: str, status: int = 200) -> Handler:
    extensions = {"code": code} if code else {}
    body = {"data": None, "errors": [{"message": message, "extensions": extensions}]}
    return lambda _request: httpx.Response(status, json=body)


def raising(exc: Exception) -> Handler:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


async def test_unauthenticated_code_is_auth_error() -> None:
    client, _ = make_client(graphql_error("UNAUTHENTICATED", "Unauthorized"))
    async with client:
        with pytest.raises(ErmAuthError):
            await client.item("tok", ITEM.id)


async def test_http_401_is_auth_error() -> None:
    client, _ = make_client(lambda _r: httpx.Response(401, text="no"))
    async with client:
        with pytest.raises(ErmAuthError):
            await client.item("tok", ITEM.id)


@pytest.mark.parametrize("code", ["FORBIDDEN", "BAD_USER_INPUT", "NOT_FOUND", "BAD_REQUEST"])
async def test_refusal_codes_are_rejections_keeping_erm_message(code: str | None) -> None:
    client, _ = make_client(graphql_error(code, "Item is not assigned to this distributor"))
    async with client:
        with pytest.raises(ErmRejectedError) as caught:
            await client.item("tok", ITEM.id)
    assert caught.value.erm_message == "Item is not assigned to this distributor"
    assert caught.value.erm_code == code


async def test_class_validator_messages_are_kept() -> None:
    body = {
        "errors": [
            {
                "message": "Bad Request Exception",
                "extensions": {
                    "code": "BAD_USER_INPUT",
                    "exception": {"response": {"message": ["codeDays must be positive"]}},
                },
            }
        ]
    }
    client, _ = make_client(lambda _r: httpx.Response(200, json=body))
    async with client:
        with pytest.raises(ErmRejectedError, match="codeDays must be positive"):
            await client.generate_days_code("tok", ITEM, 5)


async def test_validation_failure_400_is_a_schema_error_naming_the_operation() -> None:
    client, _ = make_client(graphql_error("GRAPHQL_VALIDATION_FAILED", "Unknown field", 400))
    async with client:
        with pytest.raises(ErmSchemaError) as caught:
            await client.item("tok", ITEM.id)
    assert (caught.value.operation, caught.value.erm_message) == (
        "GetSpecificItem",
        "Unknown field",
    )


async def test_bad_credentials_are_auth_error_with_erm_message() -> None:
    client, _ = make_client(graphql_error("UNAUTHENTICATED", "Invalid Credentials"))
    async with client:
        with pytest.raises(ErmAuthError, match="Invalid Credentials"):
            await client.sign_in_client("a@b.c", "wrong")


async def test_query_5xx_is_retried_then_unavailable() -> None:
    client, seen = make_client(lambda _r: httpx.Response(503, text="busy"), query_attempts=3)
    async with client:
        with pytest.raises(ErmUnavailableError, match="503"):
            await client.item("tok", ITEM.id)
    assert len(seen) == 3


async def test_query_recovers_after_transient_failure() -> None:
    answers = iter(
        [
            httpx.Response(502),
            httpx.Response(200, json={"data": {"getSpecificItem": {"_id": ITEM.id}}}),
        ]
    )
    client, seen = make_client(lambda _r: next(answers))
    async with client:
        item = await client.item("tok", ITEM.id)
    assert item.id == ITEM.id
    assert len(seen) == 2


async def test_connection_refused_is_unavailable_even_for_mutations() -> None:
    client, seen = make_client(raising(httpx.ConnectError("refused")))
    async with client:
        with pytest.raises(ErmUnavailableError):
            await client.generate_free_code("tok", ITEM)
    assert len(seen) == 1


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        httpx.ReadError("reset"),
        httpx.WriteError("broken"),
    ],
)
async def test_mutation_lost_after_sending_is_uncertain_and_not_retried(exc: Exception) -> None:
    client, seen = make_client(raising(exc))
    async with client:
        with pytest.raises(UncertainOutcomeError):
            await client.generate_days_code("tok", ITEM, 30)
    assert len(seen) == 1


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_mutation_gateway_errors_are_uncertain(status: int) -> None:
    client, seen = make_client(lambda _r: httpx.Response(status))
    async with client:
        with pytest.raises(UncertainOutcomeError):
            await client.generate_reset_code("tok", ITEM)
    assert len(seen) == 1


async def test_mutation_503_is_unavailable_and_not_retried() -> None:
    client, seen = make_client(lambda _r: httpx.Response(503))
    async with client:
        with pytest.raises(ErmUnavailableError):
            await client.generate_days_code("tok", ITEM, 30)
    assert len(seen) == 1


async def test_mutation_unreadable_200_is_uncertain() -> None:
    client, _ = make_client(lambda _r: httpx.Response(200, text="<html>"))
    async with client:
        with pytest.raises(UncertainOutcomeError):
            await client.generate_days_code("tok", ITEM, 30)


async def test_query_unreadable_body_is_unavailable() -> None:
    client, _ = make_client(lambda _r: httpx.Response(200, text="<html>"), query_attempts=1)
    async with client:
        with pytest.raises(ErmUnavailableError):
            await client.item("tok", ITEM.id)


async def test_query_answer_without_required_fields_is_unavailable() -> None:
    body = {"data": {"getSpecificItem": {"oemItemID": "X"}}}
    client, _ = make_client(lambda _r: httpx.Response(200, json=body), query_attempts=1)
    async with client:
        with pytest.raises(ErmUnavailableError, match="could not be read"):
            await client.item("tok", ITEM.id)


async def test_values_travel_as_variables_never_in_the_document() -> None:
    hostile = 'x") { __schema { types { name } } } #'
    client, seen = make_client(graphql_error("NOT_FOUND", "Item not found"))
    async with client:
        with pytest.raises(ErmRejectedError):
            await client.item("tok", hostile)
    body = json.loads(seen[0].content)
    assert hostile not in body["query"]
    assert body["variables"] == {"itemId": hostile}
    assert body["operationName"] == "GetSpecificItem"
    assert seen[0].headers["Authorization"] == "Bearer tok"


async def test_error_messages_carry_no_token_or_password() -> None:
    client, _ = make_client(raising(httpx.ReadTimeout("slow")))
    async with client:
        with pytest.raises(ErmUnavailableError) as caught:
            await client.sign_in_client("a@b.c", "hunter2-secret")
    assert "hunter2-secret" not in str(caught.value)


# -- production shapes (erm-api.md §8) ----------------------------------------------------------


def bad_request(reason: object) -> Handler:
    """NestJS behind @nestjs/apollo: the reason sits in extensions.originalError.message."""
    error = {
        "message": "Bad Request Exception",
        "extensions": {
            "code": "BAD_REQUEST",
            "originalError": {"message": reason, "error": "Bad Request", "statusCode": 400},
        },
    }
    return lambda _request: httpx.Response(200, json={"data": None, "errors": [error]})


async def test_business_refusal_reason_comes_from_original_error() -> None:
    client, _ = make_client(bad_request("Day code count limit reached for this item"))
    async with client:
        with pytest.raises(ErmRejectedError) as caught:
            await client.generate_days_code("tok", ITEM, 5)
    assert (caught.value.erm_message, caught.value.erm_code) == (
        "Day code count limit reached for this item",
        "BAD_REQUEST",
    )


async def test_validation_reason_list_is_joined() -> None:
    reasons = ["codeDays must not be greater than 1095", "itemId must be a mongodb id"]
    client, _ = make_client(bad_request(reasons))
    async with client:
        with pytest.raises(ErmRejectedError) as caught:
            await client.generate_days_code("tok", ITEM, 5)
    assert caught.value.erm_message == "; ".join(reasons)


async def test_older_response_message_shape_is_still_read() -> None:
    body = {
        "errors": [
            {
                "message": "Bad Request Exception",
                "extensions": {"code": "BAD_REQUEST", "response": {"message": "Too soon"}},
            }
        ]
    }
    client, _ = make_client(lambda _r: httpx.Response(200, json=body))
    async with client:
        with pytest.raises(ErmRejectedError, match=r"^Too soon$"):
            await client.generate_days_code("tok", ITEM, 5)


def null_root(field: str, kind: str = "Query", path: list[str] | None = None) -> Handler:
    error = {
        "message": f"Cannot return null for non-nullable field {kind}.{field}.",
        "path": path if path is not None else [field],
        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
    }
    return lambda _request: httpx.Response(200, json={"data": None, "errors": [error]})


async def test_null_root_field_on_a_lookup_is_not_found() -> None:
    client, _ = make_client(null_root("getSpecificItem"))
    async with client:
        with pytest.raises(ErmNotFoundError):
            await client.item("tok", ITEM.id)


async def test_null_root_field_on_a_code_mutation_is_not_found_not_uncertain() -> None:
    client, seen = make_client(null_root("generateDaysCode", "Mutation"))
    async with client:
        with pytest.raises(ErmNotFoundError):
            await client.generate_days_code("tok", ITEM, 5)
    assert len(seen) == 1


async def test_null_nested_field_is_not_taken_for_not_found() -> None:
    client, seen = make_client(null_root("oemID", "Item", ["getSpecificItem", "oemID"]))
    async with client:
        with pytest.raises(ErmUnavailableError):
            await client.item("tok", ITEM.id)
    assert len(seen) == 3  # a query: retried like any server failure


async def test_forbidden_as_internal_error_with_status_403_is_a_refusal() -> None:
    body = {
        "errors": [
            {
                "message": "Forbidden resource",
                "extensions": {"code": "INTERNAL_SERVER_ERROR", "exception": {"status": 403}},
            }
        ]
    }
    client, _ = make_client(lambda _r: httpx.Response(200, json=body))
    async with client:
        with pytest.raises(ErmRejectedError, match="Forbidden resource"):
            await client.item("tok", ITEM.id)


async def test_server_error_on_a_code_mutation_leaves_the_outcome_unknown() -> None:
    client, seen = make_client(graphql_error("INTERNAL_SERVER_ERROR", "socket hang up"))
    async with client:
        with pytest.raises(UncertainOutcomeError):
            await client.generate_days_code("tok", ITEM, 5)
    assert len(seen) == 1  # never retried


async def test_error_without_a_code_on_a_query_is_erm_failing() -> None:
    client, _ = make_client(graphql_error(None, "boom"))
    async with client:
        with pytest.raises(ErmUnavailableError, match="boom"):
            await client.item("tok", ITEM.id)


def answer(code: dict[str, object], errors: list[object] | None = None) -> Handler:
    body: dict[str, object] = {"data": {"generateDaysCode": code}}
    if errors:
        body["errors"] = errors
    return lambda _request: httpx.Response(200, json=body)


GOOD = {"codeType": "DAYSCODE", "codeHex": "ABCDEF0123456789", "codeDec": "024413975593119504641"}


@pytest.mark.parametrize(
    "odd",
    [
        {**GOOD, "codeType": "DAYSCODE_V2"},
        {**GOOD, "codeType": "FREECODE"},
        {**GOOD, "codeDec": "*#"},
        {**GOOD, "codeDec": "12"},
        {**GOOD, "codeDec": "see history"},
        {**GOOD, "codeDec": None},
    ],
    ids=["bad-enum", "wrong-type", "no-digits", "too-short", "words", "null"],
)
async def test_an_answer_that_is_not_a_well_formed_code_leaves_the_outcome_unknown(
    odd: dict[str, object],
) -> None:
    client, _ = make_client(answer(odd))
    async with client:
        with pytest.raises(UncertainOutcomeError):
            await client.generate_days_code("tok", ITEM, 5)


async def test_data_with_errors_on_a_code_mutation_leaves_the_outcome_unknown() -> None:
    client, _ = make_client(answer(GOOD, [{"message": "partial", "extensions": {}}]))
    async with client:
        with pytest.raises(UncertainOutcomeError):
            await client.generate_days_code("tok", ITEM, 5)


async def test_decorated_code_and_missing_hex_are_normalised() -> None:
    code = {"codeType": "DAYSCODE", "codeHex": "--", "codeDec": "*024 413 975 593 119 504 641#"}
    client, _ = make_client(answer(code))
    async with client:
        issued = await client.generate_days_code("tok", ITEM, 5)
    assert (issued.code_dec, issued.code_hex, issued.code_type) == (
        "024413975593119504641",
        "",
        CodeType.DAYS,
    )
