"""Fixtures for the ERM layer: a seeded sandbox on a fake clock, a client and a service over it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import TOKEN_TTL, CountingTransport, FakeClock, make_service

from erm.client import ErmClient
from erm.db import create_engine, upgrade
from erm.sandbox import ACME, create_app, seed_state
from erm.sandbox.config import SandboxConfig
from erm.sandbox.state import SandboxState
from erm.secret_box import SecretBox
from erm.service import ErmService
from erm.transport import ClientConfig
from erm.vault import TokenVault


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> SandboxState:
    return seed_state(0, SandboxConfig(clock=clock, token_ttl_seconds=TOKEN_TTL))


@pytest.fixture
def erm_transport(sandbox: SandboxState) -> CountingTransport:
    return CountingTransport(httpx.ASGITransport(app=create_app(sandbox)))


@pytest.fixture
async def erm_client(erm_transport: CountingTransport) -> AsyncIterator[ErmClient]:
    config = ClientConfig(url="http://sandbox.test/graphql", total_timeout=2.0, retry_backoff=0.0)
    async with ErmClient(config, transport=erm_transport) as client:
        yield client


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'erm.db'}")
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def acme_vault(sqlite_engine: AsyncEngine, secret_keys: list[str]) -> TokenVault:
    """A vault holding the sandbox distributor ACME's credentials (never signed in yet)."""
    vault = TokenVault(sqlite_engine, SecretBox(secret_keys))
    await vault.add_distributor(ACME.name, ACME.email, ACME.password)
    return vault


@pytest.fixture
def service(erm_client: ErmClient, acme_vault: TokenVault, clock: FakeClock) -> ErmService:
    return make_service(erm_client, acme_vault, clock)
