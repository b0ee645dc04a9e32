"""Small helpers shared by tests (importable because pytest puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from erm.client import ErmClient
from erm.db import create_engine
from erm.sandbox.seed import SEED_EPOCH
from erm.service import ErmService, ServiceConfig
from erm.vault import TokenVault

TOKEN_TTL = 3600
"""Access-token lifetime of the sandbox in the ERM tests."""


class FakeClock:
    """A clock tests move by hand; starts a year after the sandbox's seeded history ends."""

    def __init__(self, now: float = SEED_EPOCH + 365 * 86_400) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class TestDatabase:
    """Where a test's database is: its URL plus what the driver needs to stay in its own schema."""

    __test__ = False  # not a test class, despite the name

    backend: str  # "sqlite" or "postgresql"
    url: str
    connect_args: dict[str, Any] = field(default_factory=dict)
    schema: str | None = None  # PostgreSQL only
    path: Path | None = None  # SQLite only: the database file

    def create_engine(self) -> AsyncEngine:
        """A new engine on this database (not migrated; see the ``engine`` fixture)."""
        return create_engine(self.url, connect_args=self.connect_args)


class CountingTransport(httpx.AsyncBaseTransport):
    """Passes requests on and counts them by GraphQL operation name."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            name = json.loads(request.content).get("operationName") or "?"
        except ValueError:
            name = "?"
        self.calls[name] += 1
        return await self.inner.handle_async_request(request)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def make_service(client: ErmClient, vault: TokenVault, clock: FakeClock) -> ErmService:
    # Reconciliation looks for 0.05 s while the caller waits, then settles within 0.5 s.
    config = ServiceConfig(
        refresh_margin=120.0, reconcile_delay=0.01, reconcile_quick=0.05, reconcile_window=0.5
    )
    return ErmService(client, vault, config, clock=clock)


POSTGRES_URL_VARIABLE = "ERM_BOT_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_VARIABLE = "ERM_BOT_REQUIRE_POSTGRES"


def postgres_server_url() -> str:
    """The test PostgreSQL server's URL; the test is skipped without one (failed in CI, where
    ``ERM_BOT_REQUIRE_POSTGRES=1`` forbids skipping)."""
    url = os.environ.get(POSTGRES_URL_VARIABLE, "").strip()
    if url:
        return url
    reason = f"PostgreSQL tests need {POSTGRES_URL_VARIABLE}"
    if os.environ.get(REQUIRE_POSTGRES_VARIABLE) == "1":
        pytest.fail(f"{reason} ({REQUIRE_POSTGRES_VARIABLE}=1 forbids skipping them)")
    pytest.skip(reason)


@contextlib.asynccontextmanager
async def fresh_postgres_database(prefix: str) -> AsyncIterator[str]:
    """A new PostgreSQL database (for processes that know only a URL), dropped afterwards."""
    server = postgres_server_url()
    name = f"{prefix}_{secrets.token_hex(5)}"
    admin = create_engine(server)
    try:
        async with admin.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(server).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()
