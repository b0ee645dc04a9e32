"""Fault injection in-process (httpx.ASGITransport) and the control endpoints."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from erm.sandbox import FLEET_OPEN, ConnectionDroppedError, FaultConfig, create_app, seed_state
from erm.sandbox.__main__ import build_parser
from erm.sandbox.faults import faults_from_arguments
from erm.sandbox.model import CodeSystem

DAYS = """
mutation Days($in: GenerateDaysCodeInput!) {
  generateDaysCode(generateDaysCodeInput: $in) { codeType codeDec }
}"""
TYPENAME = "{ __typename }"


def _item(state):
    return state.items_of("acme", fleet=FLEET_OPEN, code_system=CodeSystem.ACP1)[0]


def _days_vars(item, days=7):
    return {"in": {"itemId": item.id, "codeDays": days}}


async def test_latency_delays_every_graphql_request(acme, state):
    state.faults.latency_ms = 80

    started = time.perf_counter()
    response = await acme.post(TYPENAME)

    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.08


async def test_fail_next_answers_503_for_that_many_requests(acme, state):
    state.faults.fail_next = 2

    statuses = [(await acme.post(TYPENAME)).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert state.faults.fail_next == 0


async def test_503_has_a_json_body_and_executes_nothing(acme, state):
    item = _item(state)
    before = len(item.code_generator.events)
    state.faults.fail_next = 1

    response = await acme.post(DAYS, _days_vars(item))

    assert response.status_code == 503
    assert response.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert len(item.code_generator.events) == before


async def test_error_rate_one_fails_everything(acme, state):
    state.faults.error_rate = 1.0

    statuses = {(await acme.post(TYPENAME)).status_code for _ in range(5)}

    assert statuses == {503}


async def test_error_rate_is_reproducible_for_a_seed(acme, state):
    state.faults.error_rate = 0.5
    state.faults.seed = 7
    first = [(await acme.post(TYPENAME)).status_code for _ in range(20)]
    state.fault_injector.restart()

    second = [(await acme.post(TYPENAME)).status_code for _ in range(20)]

    assert first == second
    assert {200, 503} == set(first)


async def test_drop_next_breaks_the_call_before_execution(acme, state):
    item = _item(state)
    before = len(item.code_generator.events)
    state.faults.drop_next = 1

    with pytest.raises(httpx.RemoteProtocolError):
        await acme.post(DAYS, _days_vars(item))

    assert len(item.code_generator.events) == before
    assert (await acme.post(TYPENAME)).status_code == 200


async def test_drop_rate_one_drops_everything(acme, state):
    state.faults.drop_rate = 1.0

    with pytest.raises(ConnectionDroppedError):
        await acme.post(TYPENAME)


async def test_drop_after_mutation_applies_the_code_then_breaks_the_call(acme, state):
    item = _item(state)
    before = len(item.code_generator.events)
    state.faults.drop_after_mutation_next = 1

    with pytest.raises(httpx.RemoteProtocolError):
        await acme.post(DAYS, _days_vars(item))

    assert len(item.code_generator.events) == before + 1
    assert state.faults.drop_after_mutation_next == 0


async def test_after_mutation_faults_ignore_queries_and_refused_mutations(acme, state):
    item = _item(state)
    state.faults.drop_after_mutation_next = 1

    assert (await acme.post(TYPENAME)).status_code == 200
    refused = await acme.post(DAYS, _days_vars(item, days=0))
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"

    assert state.faults.drop_after_mutation_next == 1


async def test_hang_after_mutation_applies_the_code_and_answers_late(acme, state):
    item = _item(state)
    state.faults.hang_after_mutation_next = 1
    state.faults.hang_seconds = 0.2

    started = time.perf_counter()
    response = await acme.post(DAYS, _days_vars(item))

    assert time.perf_counter() - started >= 0.2
    code = response.json()["data"]["generateDaysCode"]["codeDec"]
    assert item.code_generator.events[-1].code_dec_string == code


async def test_hang_after_mutation_times_out_a_client_with_the_code_applied(acme, state):
    item = _item(state)
    before = len(item.code_generator.events)
    state.faults.hang_after_mutation_next = 1
    state.faults.hang_seconds = 5

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await acme.post(DAYS, _days_vars(item))

    assert len(item.code_generator.events) == before + 1


# -- control endpoints ----------------------------------------------------------------------------


async def test_get_faults_returns_the_current_configuration(http, state):
    state.faults.fail_next = 3

    response = await http.get("/_sandbox/faults")

    assert response.status_code == 200
    assert response.json() == {**FaultConfig().to_dict(), "fail_next": 3}


async def test_post_faults_changes_only_the_given_settings(http, state):
    response = await http.post("/_sandbox/faults", json={"latency_ms": 5, "error_rate": 0.25})

    assert response.status_code == 200
    assert response.json()["error_rate"] == 0.25
    assert state.faults.latency_ms == 5
    assert state.faults.hang_seconds == 30


@pytest.mark.parametrize(
    "body",
    [{"bogus": 1}, {"error_rate": 2}, {"fail_next": -1}, {"fail_next": 1.5}, {"latency_ms": "x"}],
)
async def test_post_faults_refuses_bad_settings_and_changes_nothing(http, state, body):
    response = await http.post("/_sandbox/faults", json={"drop_next": 1, **body})

    assert response.status_code == 400
    assert state.faults == FaultConfig()


async def test_reset_heals_every_fault(http, state):
    state.faults.update({"fail_next": 4, "drop_rate": 0.5, "latency_ms": 100})

    response = await http.post("/_sandbox/reset")

    assert response.status_code == 200
    assert state.faults == FaultConfig()


async def test_reset_with_data_reseeds_the_state(acme, http, state):
    item = _item(state)
    seeded = len(item.code_generator.events)
    await acme.data(DAYS, _days_vars(item))

    response = await http.post("/_sandbox/reset", json={"data": True})

    assert response.json()["data_reset"] is True
    assert len(state.items[item.id].code_generator.events) == seeded


async def test_control_endpoints_are_not_subject_to_faults(http, state):
    state.faults.fail_next = 5

    response = await http.get("/_sandbox/health")

    assert response.status_code == 200
    assert state.faults.fail_next == 5


async def test_faults_passed_at_creation_are_active():
    state = seed_state(faults=FaultConfig(fail_next=1))
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        response = await client.post("/graphql", json={"query": TYPENAME})

    assert response.status_code == 503


def test_cli_flags_build_a_fault_config():
    args = build_parser().parse_args(
        ["--fault-error-rate", "0.1", "--fault-fail-next", "3", "--fault-hang-seconds", "2"]
    )

    faults = faults_from_arguments(args)

    assert (faults.error_rate, faults.fail_next, faults.hang_seconds) == (0.1, 3, 2.0)
    assert faults.drop_next == 0
