"""Fixtures for the sandbox tests: a seeded state on a fake clock, served in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support import FakeClock

from erm.sandbox import ACME, SUNBRIGHT, DemoCredentials, create_app, seed_state
from erm.sandbox.state import SandboxConfig, SandboxState

SIGN_IN = """
mutation SignIn($creds: SignInCredentialsInput!) {
  signInClient(signInCredentialsInput: $creds) { _id accessToken name email roleName }
}"""


class Caller:
    """An HTTP client for the sandbox, optionally signed in as one distributor."""

    def __init__(self, http: httpx.AsyncClient, state: SandboxState) -> None:
        self.http = http
        self.state = state
        self.token: str | None = None
        self.id: str = ""

    async def sign_in(self, credentials: DemoCredentials) -> Caller:
        body = await self.data(
            SIGN_IN, {"creds": {"email": credentials.email, "password": credentials.password}}
        )
        self.token = body["signInClient"]["accessToken"]
        self.id = body["signInClient"]["_id"]
        return self

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> httpx.Response:
        bearer = token if token is not None else self.token
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return await self.http.post("/graphql", json=body, headers=headers)

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """The ``data`` of a request that must succeed."""
        response = await self.post(query, variables)
        payload = response.json()
        assert response.status_code == 200, payload
        assert "errors" not in payload, payload
        return payload["data"]

    async def error(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The first error of a request that must fail inside execution (HTTP 200)."""
        response = await self.post(query, variables)
        payload = response.json()
        assert response.status_code == 200, payload
        assert payload.get("errors"), payload
        error: dict[str, Any] = payload["errors"][0]
        return error


@pytest.fixture
def state(clock: FakeClock) -> SandboxState:
    # tokens outlive the clock jumps of the rule tests; auth tests shorten the lifetime
    return seed_state(0, SandboxConfig(clock=clock, token_ttl_seconds=100 * 86_400))


@pytest.fixture
async def http(state: SandboxState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        yield client


@pytest.fixture
def anonymous(http: httpx.AsyncClient, state: SandboxState) -> Caller:
    return Caller(http, state)


@pytest.fixture
async def acme(http: httpx.AsyncClient, state: SandboxState) -> Caller:
    return await Caller(http, state).sign_in(ACME)


@pytest.fixture
async def sunbright(http: httpx.AsyncClient, state: SandboxState) -> Caller:
    return await Caller(http, state).sign_in(SUNBRIGHT)
