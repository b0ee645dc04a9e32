"""The whole stack for adapter tests: the sandbox ERM over loopback HTTP, a migrated database, a
``Runtime`` as ``erm-bot serve`` builds it, and the core's dispatcher over it.

``stack`` runs on SQLite; ``any_stack`` on every backend of the ``database`` fixture (SQLite and
PostgreSQL), for the tests about several processes sharing one database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import TestDatabase

from adapters.runtime import Runtime
from adapters.settings import Settings
from bot.dispatch import Dispatcher
from bot.roles import Role
from bot.storage.base import migrate
from erm.client import ErmClient
from erm.db import create_engine
from erm.sandbox import ACME, create_app, seed_state
from erm.sandbox.server import serve
from erm.sandbox.state import SandboxState
from erm.secret_box import SecretBox
from erm.service import ErmService
from erm.vault import TokenVault


@dataclass
class Stack:
    settings: Settings
    runtime: Runtime
    dispatcher: Dispatcher
    engine: AsyncEngine
    sandbox: SandboxState
    sandbox_url: str

    async def grant(self, key: str, role: Role, distributor: str = ACME.name) -> None:
        """Grant ``platform:user_id`` a role, as an admin would."""
        platform, _, user_id = key.partition(":")
        await self.dispatcher.core.grants.grant(platform, user_id, role, distributor, "tests")

    def code_events(self, oem_id: str) -> int:
        """How many codes the sandbox ERM issued for an item."""
        return len(self.sandbox.item_by_oem_id(oem_id).code_generator.events)


StackFactory = Callable[[AsyncEngine, str], Awaitable[Stack]]


@pytest.fixture
async def make_stack(secret_keys: list[str]) -> AsyncIterator[StackFactory]:
    """Builds stacks over given engines; stops their sandboxes and clients afterwards."""
    cleanups: list[Callable[[], Awaitable[object]]] = []

    async def build(engine: AsyncEngine, database_url: str) -> Stack:
        await migrate(engine)
        sandbox = seed_state(0)
        serving = serve(create_app(sandbox))
        url = await serving.__aenter__()
        cleanups.append(lambda: serving.__aexit__(None, None, None))
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            erm_api_url=url,
            erm_total_timeout=10.0,
            erm_bot_database_url=database_url,
            erm_bot_secret_keys=",".join(secret_keys),
        )
        vault = TokenVault(engine, SecretBox(secret_keys))
        client = ErmClient(settings.erm_client_config())
        await client.__aenter__()
        cleanups.append(lambda: client.__aexit__(None, None, None))
        service = ErmService(client, vault, settings.erm_service_config())
        await service.add_distributor(ACME.name, ACME.email, ACME.password)
        runtime = Runtime(settings, engine, vault, client, service)
        return Stack(settings, runtime, runtime.dispatcher(), engine, sandbox, url)

    yield build
    for cleanup in reversed(cleanups):
        await cleanup()


@pytest.fixture
async def stack(make_stack: StackFactory, tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack on a SQLite file private to the test."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'stack.db'}"
    engine = create_engine(url)
    try:
        yield await make_stack(engine, url)
    finally:
        await engine.dispose()


@pytest.fixture
async def any_stack(make_stack: StackFactory, database: TestDatabase) -> AsyncIterator[Stack]:
    """The stack on each database backend; ``database`` gives more engines on the same data."""
    engine = database.create_engine()
    try:
        yield await make_stack(engine, database.url)
    finally:
        await engine.dispose()
