"""The sandbox over real loopback HTTP: uvicorn in the test's loop, and the CLI process."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from erm.sandbox import ACME, DEMO_DISTRIBUTORS, FLEET_OPEN, create_app, serve
from erm.sandbox.faults import FaultConfig
from erm.sandbox.model import CodeSystem
from erm.sandbox.server import _announce

PROJECT_ROOT = Path(__file__).resolve().parents[3]

SIGN_IN = """
mutation SignIn($creds: SignInCredentialsInput!) {
  signInClient(signInCredentialsInput: $creds) { _id accessToken }
}"""
DAYS = """
mutation Days($in: GenerateDaysCodeInput!) {
  generateDaysCode(generateDaysCodeInput: $in) { codeType codeDec }
}"""


@pytest.fixture
async def url(state) -> AsyncIterator[str]:
    async with serve(create_app(state)) as base:
        yield base


async def _token(client: httpx.AsyncClient, url: str) -> str:
    response = await client.post(
        url,
        json={
            "query": SIGN_IN,
            "variables": {"creds": {"email": ACME.email, "password": ACME.password}},
        },
    )
    return response.json()["data"]["signInClient"]["accessToken"]


def _item(state):
    return state.items_of("acme", fleet=FLEET_OPEN, code_system=CodeSystem.ACP1)[0]


def _days_body(item):
    return {"query": DAYS, "variables": {"in": {"itemId": item.id, "codeDays": 7}}}


async def test_serve_yields_a_graphql_url_on_loopback(url):
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/graphql")


async def test_sign_in_and_generate_a_code_over_http(url, state):
    async with httpx.AsyncClient() as client:
        token = await _token(client, url)
        response = await client.post(
            url, json=_days_body(_item(state)), headers={"Authorization": f"Bearer {token}"}
        )

    assert response.status_code == 200
    assert len(response.json()["data"]["generateDaysCode"]["codeDec"]) == 21


async def test_validation_error_is_400_over_http(url):
    async with httpx.AsyncClient() as client:
        response = await client.post(url, json={"query": "{ nothing }"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_injected_503_over_http(url, state):
    state.faults.fail_next = 1

    async with httpx.AsyncClient() as client:
        response = await client.post(url, json={"query": "{ __typename }"})

    assert response.status_code == 503


async def test_dropped_connection_is_a_protocol_error_for_the_client(url, state):
    state.faults.drop_next = 1

    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, json={"query": "{ __typename }"})
        after = await client.post(url, json={"query": "{ __typename }"})

    assert after.status_code == 200


async def test_drop_after_mutation_over_http_leaves_the_code_applied(url, state):
    item = _item(state)
    before = len(item.code_generator.events)
    state.faults.drop_after_mutation_next = 1

    async with httpx.AsyncClient() as client:
        token = await _token(client, url)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(
                url, json=_days_body(item), headers={"Authorization": f"Bearer {token}"}
            )

    assert len(item.code_generator.events) == before + 1


async def test_hang_after_mutation_times_out_the_client_and_ends_when_it_leaves(state):
    item = _item(state)
    before = len(item.code_generator.events)
    state.faults.hang_after_mutation_next = 1
    state.faults.hang_seconds = 30

    started = time.perf_counter()
    async with serve(create_app(state)) as url, httpx.AsyncClient(timeout=0.3) as client:
        token = await _token(client, url)
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                url, json=_days_body(item), headers={"Authorization": f"Bearer {token}"}
            )

    assert len(item.code_generator.events) == before + 1
    assert time.perf_counter() - started < 5  # the hang stopped once the client disconnected


def test_announce_prints_url_and_demo_credentials():
    human = io.StringIO()
    machine = io.StringIO()

    _announce(human, "http://127.0.0.1:1/graphql", False, FaultConfig(fail_next=2))
    _announce(machine, "http://127.0.0.1:1/graphql", True, FaultConfig())

    assert "http://127.0.0.1:1/graphql" in human.getvalue()
    assert ACME.password in human.getvalue()
    assert '"fail_next": 2' in human.getvalue()
    first_line = json.loads(machine.getvalue().splitlines()[0])
    assert first_line == {
        "url": "http://127.0.0.1:1/graphql",
        "distributors": [
            {"name": d.name, "email": d.email, "password": d.password} for d in DEMO_DISTRIBUTORS
        ],
    }


def test_sandbox_command_prints_json_then_serves_until_interrupted():
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "erm.sandbox", "--port", "0", "--json", "--token-ttl", "30"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        announcement = json.loads(process.stdout.readline())
        response = httpx.post(
            announcement["url"],
            json={
                "query": SIGN_IN,
                "variables": {"creds": {"email": ACME.email, "password": ACME.password}},
            },
        )
        assert response.status_code == 200
        assert response.json()["data"]["signInClient"]["accessToken"]
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, stderr
    assert [d["email"] for d in announcement["distributors"]] == [
        ACME.email,
        "sunbright@sandbox.erm",
    ]
