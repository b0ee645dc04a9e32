"""The contract check against the sandbox: by introspection, by probing when introspection is off,
and against altered copies of the schema, whose differences it must name."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from support import CountingTransport

from erm import operations as ops
from erm.client import ErmClient
from erm.contract import ContractReport, Mismatch, Outcome, check_contract
from erm.errors import ErmAuthError
from erm.sandbox import ACME, create_app
from erm.sandbox.app import NO_INTROSPECTION
from erm.sandbox.schema import SCHEMA_PATH
from erm.sandbox.state import SandboxState
from erm.service import ErmService
from erm.transport import ClientConfig

READ_ONLY = [op.name for op in ops.ALL if not op.mutation]
CODE_MUTATIONS = {
    op.name for op in (ops.GENERATE_DAYS_CODE, ops.GENERATE_FREE_CODE, ops.GENERATE_RESET_CODE)
}


def altered(old: str, new: str) -> str:
    sdl = SCHEMA_PATH.read_text(encoding="utf-8")
    assert old in sdl, old
    return sdl.replace(old, new)


RENAMED_ARGUMENT = altered("getSpecificItem(itemId: ID!)", "getSpecificItem(id: ID!)")


def histories(sandbox: SandboxState) -> dict[str, int]:
    return {item.id: len(item.code_generator.events) for item in sandbox.items.values()}


async def check(service: ErmService) -> ContractReport:
    return await service.run_as(
        ACME.name, lambda token, who: check_contract(service.client, token, who)
    )


@asynccontextmanager
async def serving(sandbox: SandboxState, sdl: str) -> AsyncIterator[tuple[ErmClient, str, str]]:
    """A client of the sandbox served through ``sdl``, signed in as ACME."""
    transport = CountingTransport(httpx.ASGITransport(app=create_app(sandbox, schema_sdl=sdl)))
    config = ClientConfig(url="http://altered.test/graphql", retry_backoff=0.0)
    async with ErmClient(config, transport=transport) as client:
        signed = await client.sign_in_client(ACME.email, ACME.password)
        yield client, signed.access_token, signed.distributor_id


async def check_altered(sandbox: SandboxState, sdl: str) -> ContractReport:
    async with serving(sandbox, sdl) as (client, token, who):
        return await check_contract(client, token, who)


# -- the sandbox's own schema ---------------------------------------------------------------------


async def test_every_document_fits_the_schema_read_by_introspection(
    service: ErmService, erm_transport: CountingTransport
) -> None:
    report = await check(service)

    assert report.mismatches == ()
    assert report.ok
    assert report.introspection
    assert report.host == "sandbox.test"
    assert [(r.operation, r.outcome) for r in report.results] == [
        (op.name, Outcome.OK) for op in ops.ALL
    ]
    assert CODE_MUTATIONS.isdisjoint(erm_transport.calls)


async def test_without_introspection_each_read_only_operation_runs_once(
    service: ErmService, sandbox: SandboxState, erm_transport: CountingTransport
) -> None:
    sandbox.faults.introspection = False
    before = histories(sandbox)

    report = await check(service)

    assert report.ok, report
    assert not report.introspection
    assert report.refusal == NO_INTROSPECTION
    outcomes = {r.operation: r.outcome for r in report.results}
    assert [name for name, outcome in outcomes.items() if outcome is Outcome.OK] == READ_ONLY
    assert {erm_transport.calls[name] for name in READ_ONLY} == {1}
    assert CODE_MUTATIONS.isdisjoint(erm_transport.calls)
    assert histories(sandbox) == before


async def test_no_code_mutation_is_ever_sent(
    service: ErmService, sandbox: SandboxState, erm_transport: CountingTransport
) -> None:
    before = histories(sandbox)
    for introspection in (True, False):
        sandbox.faults.introspection = introspection
        report = await check(service)
        mutations = [r for r in report.results if r.operation in CODE_MUTATIONS]
        expected = Outcome.OK if introspection else Outcome.NOT_CHECKED
        assert {r.outcome for r in mutations} == {expected}

    assert histories(sandbox) == before
    assert CODE_MUTATIONS.isdisjoint(erm_transport.calls)


async def test_a_refused_token_is_raised_for_run_as_to_sign_in_again(
    erm_client: ErmClient, sandbox: SandboxState
) -> None:
    sandbox.faults.introspection = False

    with pytest.raises(ErmAuthError):
        await check_contract(erm_client, "not-a-token", "65a0c0ffee0000000000abcd")


async def test_an_erm_that_answers_nothing_is_unreachable(
    erm_client: ErmClient, sandbox: SandboxState, erm_transport: CountingTransport
) -> None:
    signed = await erm_client.sign_in_client(ACME.email, ACME.password)
    sandbox.faults.error_rate = 1.0

    report = await check_contract(erm_client, signed.access_token, signed.distributor_id)

    assert report.unreachable == "ERM answered HTTP 503"
    assert not report.ok
    assert report.results == ()
    attempts = erm_client.config.query_attempts
    assert erm_transport.calls["IntrospectionQuery"] == attempts
    assert erm_transport.calls[ops.ITEM_FLEETS.name] == attempts  # and nothing after it
    assert erm_transport.total == 1 + 2 * attempts


# -- altered schemas ------------------------------------------------------------------------------


async def test_a_renamed_argument_is_named_with_erm_s_arguments(sandbox: SandboxState) -> None:
    report = await check_altered(sandbox, RENAMED_ARGUMENT)

    assert not report.ok
    assert report.mismatches == (
        Mismatch(
            "GetSpecificItem",
            "Query.getSpecificItem(itemId)",
            "ERM has no argument itemId (its arguments: id: ID!)",
        ),
        Mismatch(
            "GetSpecificItem",
            "Query.getSpecificItem(id)",
            "ERM requires id: ID!, which the document does not send",
        ),
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "clientId: String!, first: Int",
            "clientId: ID!, first: Int",
            Mismatch(
                "GetItemFleetsForClient",
                "Query.getItemFleetsForClient(clientId)",
                "ERM expects ID!, the document declares $clientId: String!",
            ),
        ),
        (
            "first: Int, last: Int,\n    itemId: ID!",
            "first: Int!, last: Int,\n    itemId: ID!",
            Mismatch(
                ops.CODE_HISTORY.name,
                f"Query.{ops.CODE_HISTORY.root_field}(first)",
                "ERM expects Int!, the document declares $first: Int",
            ),
        ),
    ],
    ids=["fleets-clientId-type", "history-first-nullability"],
)
async def test_a_changed_argument_type_is_named_with_both_types(
    sandbox: SandboxState, old: str, new: str, expected: Mismatch
) -> None:
    report = await check_altered(sandbox, altered(old, new))

    assert report.mismatches == (expected,)
    assert str(expected).startswith(f"{expected.operation}: {expected.where}: ERM expects")


async def test_a_missing_root_field_is_named_as_a_missing_operation(
    sandbox: SandboxState,
) -> None:
    sdl = altered("getSpecificAssetAccount(id: ID!): AssetAccount!", "")

    report = await check_altered(sandbox, sdl)

    assert report.mismatches == (
        Mismatch(
            "GetSpecificAssetAccount",
            "Query.getSpecificAssetAccount",
            "ERM has no getSpecificAssetAccount: the whole operation is missing",
        ),
    )


async def test_a_missing_field_is_named_with_graphql_s_suggestion(sandbox: SandboxState) -> None:
    sdl = altered("codeDecString: String!", "codeDecimal: String!")

    report = await check_altered(sandbox, sdl)

    [mismatch] = report.mismatches
    assert mismatch.operation == ops.CODE_HISTORY.name
    assert mismatch.where == "CodeEvent.codeDecString"
    assert mismatch.message.startswith("ERM has no such field (Did you mean")


async def test_probing_names_a_renamed_argument_when_introspection_is_off(
    sandbox: SandboxState,
) -> None:
    sandbox.faults.introspection = False
    before = histories(sandbox)

    report = await check_altered(sandbox, RENAMED_ARGUMENT)

    assert not report.introspection
    assert [r.operation for r in report.failures] == ["GetSpecificItem"]
    assert report.mismatches == (
        Mismatch("GetSpecificItem", "Query.getSpecificItem(itemId)", "ERM has no argument itemId"),
    )
    outcomes = {r.operation: r.outcome for r in report.results}
    assert outcomes[ops.CODE_HISTORY.name] is Outcome.OK  # the item id came from the item list
    assert histories(sandbox) == before


async def test_probes_that_need_a_failed_one_say_so(sandbox: SandboxState) -> None:
    sandbox.faults.introspection = False
    sdl = altered("clientId: String!, first: Int", "clientId: ID!, first: Int")

    report = await check_altered(sandbox, sdl)

    fleet = next(r for r in report.results if r.operation == ops.FLEET.name)
    assert fleet.outcome is Outcome.NOT_CHECKED
    assert fleet.detail == f"needs {ops.ITEM_FLEETS.name} to work first"


class FailingFleets(httpx.AsyncBaseTransport):
    """ERM answering HTTP 503 to the fleet list only."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("operationName") == ops.ITEM_FLEETS.name:
            return httpx.Response(503, json={"errors": [{"message": "Service Unavailable"}]})
        return await self.inner.handle_async_request(request)


async def test_a_probe_erm_fails_is_reported_and_the_others_still_run(
    sandbox: SandboxState,
) -> None:
    sandbox.faults.introspection = False
    transport = FailingFleets(httpx.ASGITransport(app=create_app(sandbox)))
    config = ClientConfig(url="http://sandbox.test/graphql", retry_backoff=0.0)
    async with ErmClient(config, transport=transport) as client:
        signed = await client.sign_in_client(ACME.email, ACME.password)
        report = await check_contract(client, signed.access_token, signed.distributor_id)

    assert report.unreachable is None
    assert not report.ok
    outcomes = {r.operation: (r.outcome, r.detail) for r in report.results}
    assert outcomes[ops.ITEM_FLEETS.name] == (Outcome.FAILED, "ERM answered HTTP 503")
    assert outcomes[ops.FLEET.name] == (
        Outcome.NOT_CHECKED,
        f"needs {ops.ITEM_FLEETS.name} to work first",
    )
    assert outcomes[ops.ITEM.name][0] is Outcome.OK
