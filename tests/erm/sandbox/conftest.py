"""Fixtures for the sandbox tests: a seeded state on a fake clock, served in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from support import FakeClock

from erm.sandbox import (
    ACME,
    ACME_SERVICER,
    ACME_STAFF,
    SUNBRIGHT,
    DemoCredentials,
    create_app,
    seed_state,
)
from erm.sandbox.config import SandboxConfig
from erm.sandbox.state import SandboxState

SIGN_IN = """
mutation SignIn($creds: SignInCredentialsInput!) {
  signInClient(signInCredentialsInput: $creds) { _id accessToken name email roleName }
}"""
SIGN_IN_USER = """
mutation SignIn($creds: SignInCredentialsDto!) {
  signInUser(signInCredentials: $creds) { _id accessToken refreshToken name email }
}"""


class Caller:
    """An HTTP client for the sandbox, optionally signed in.

    ``id`` is the ``_id`` sign-in answered; ``distributor_id`` the token's ``distributorId``, the
    id to pass as ``clientId`` / ``distributorId`` (the same for a distributor, acme's for acme's
    servicer and staff).
    """

    def __init__(self, http: httpx.AsyncClient, state: SandboxState) -> None:
        self.http = http
        self.state = state
        self.token: str | None = None
        self.id: str = ""
        self.distributor_id: str = ""

    async def sign_in(self, credentials: DemoCredentials) -> Caller:
        """Sign in with ``signInClient`` (a distributor or a servicer)."""
        return await self._sign_in(SIGN_IN, "signInClient", credentials)

    async def sign_in_user(self, credentials: DemoCredentials) -> Caller:
        """Sign in with ``signInUser`` (a staff user)."""
        return await self._sign_in(SIGN_IN_USER, "signInUser", credentials)

    async def _sign_in(self, query: str, field: str, credentials: DemoCredentials) -> Caller:
        body = await self.data(
            query, {"creds": {"email": credentials.email, "password": credentials.password}}
        )
        self.token = body[field]["accessToken"]
        self.id = body[field]["_id"]
        claims = jwt.decode(self.token, options={"verify_signature": False})
        self.distributor_id = claims["distributorId"]
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

    async def refusal(self, query: str, variables: dict[str, Any] | None = None) -> str | list[str]:
        """The reason of a request refused with ``Bad Request Exception``, in production's shape
        (erm-api.md §8): a string for a business rule, a list for a validation."""
        error = await self.error(query, variables)
        assert error["message"] == "Bad Request Exception", error
        extensions = error["extensions"]
        assert extensions["code"] == "BAD_REQUEST", error
        original = extensions["originalError"]
        assert (original["error"], original["statusCode"]) == ("Bad Request", 400), error
        reason: str | list[str] = original["message"]
        return reason

    async def not_found(self, query: str, variables: dict[str, Any] | None = None) -> None:
        """Check that the request's id matched nothing: production answers null for the
        non-null root field, which graphql-core reports as an internal error (§8)."""
        response = await self.post(query, variables)
        payload = response.json()
        assert response.status_code == 200, payload
        assert payload["data"] is None, payload
        (error,) = payload["errors"]
        field = error["path"][0]
        operation = "Mutation" if query.lstrip().startswith("mutation") else "Query"
        assert error["message"] == f"Cannot return null for non-nullable field {operation}.{field}."
        assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}


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


@pytest.fixture
async def servicer(http: httpx.AsyncClient, state: SandboxState) -> Caller:
    """acme's servicer, signed in with ``signInClient``."""
    return await Caller(http, state).sign_in(ACME_SERVICER)


@pytest.fixture
async def staff(http: httpx.AsyncClient, state: SandboxState) -> Caller:
    """acme's staff user, signed in with ``signInUser``."""
    return await Caller(http, state).sign_in_user(ACME_STAFF)
