"""Fixtures for the bot core: a seeded sandbox ERM in-process, a migrated store, a wired Core.

``bot`` runs on SQLite only (fast); ``any_bot`` runs on every backend of the ``engine`` fixture
(SQLite and PostgreSQL) and is meant for the concurrency tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from bot_harness import ROLES, Bot, BotFactory, RejectionRecorder
from sqlalchemy.ext.asyncio import AsyncEngine
from support import TOKEN_TTL, CountingTransport, FakeClock, make_service

from bot.audit import AuditLog
from bot.commands import COMMANDS
from bot.core import Core, Limits
from bot.dispatch import Dispatcher
from bot.permissions import Permissions
from bot.storage.base import migrate
from bot.storage.buttons import ButtonStore
from bot.storage.codes import CodeStore
from bot.storage.grants import GrantStore
from bot.storage.invites import InviteStore
from bot.storage.limits import RateLimiter
from bot.storage.requests import RequestStore
from erm.client import ErmClient
from erm.db import create_engine
from erm.sandbox import ACME, SUNBRIGHT, create_app, seed_state
from erm.sandbox.config import SandboxConfig
from erm.secret_box import SecretBox
from erm.transport import ClientConfig
from erm.vault import TokenVault


@pytest.fixture
async def make_bot(secret_keys: list[str]) -> AsyncIterator[BotFactory]:
    """Builds bots over a given engine; closes their ERM clients afterwards."""
    clients: list[ErmClient] = []

    async def build(
        engine: AsyncEngine, *, sunbright: bool = False, limits: Limits | None = None
    ) -> Bot:
        await migrate(engine)
        clock = FakeClock()
        sandbox = seed_state(0, SandboxConfig(clock=clock, token_ttl_seconds=TOKEN_TTL))
        counting = CountingTransport(httpx.ASGITransport(app=create_app(sandbox)))
        recorder = RejectionRecorder(counting)
        config = ClientConfig(
            url="http://sandbox.test/graphql", total_timeout=5.0, retry_backoff=0.0
        )
        client = ErmClient(config, transport=recorder)
        await client.__aenter__()
        clients.append(client)
        vault = TokenVault(engine, SecretBox(secret_keys))
        service = make_service(client, vault, clock)
        await service.add_distributor(ACME.name, ACME.email, ACME.password)
        if sunbright:
            await service.add_distributor(SUNBRIGHT.name, SUNBRIGHT.email, SUNBRIGHT.password)
        grants = GrantStore(engine)
        core = Core(
            erm=service,
            grants=grants,
            codes=CodeStore(engine, box=vault.box),
            requests=RequestStore(engine, box=vault.box),
            rate=RateLimiter(engine),
            audit=AuditLog(engine, box=vault.box),
            permissions=Permissions(grants, vault.names, ()),
            commands=COMMANDS,
            buttons=ButtonStore(engine),
            invites=InviteStore(engine),
            limits=limits or Limits(),
        )
        for role in ROLES:
            await grants.grant("console", role.label, role, ACME.name, "tests")
        return Bot(core, Dispatcher(core), sandbox, counting, recorder, engine)

    yield build
    for client in clients:
        await client.__aexit__(None, None, None)


@pytest.fixture
async def bot_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A SQLite engine private to the test (migrated by ``make_bot``)."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    yield engine
    await engine.dispose()


@pytest.fixture
async def bot(make_bot: BotFactory, bot_engine: AsyncEngine) -> Bot:
    """The bot on SQLite, ACME configured, console users viewer/agent/supervisor/admin at acme."""
    return await make_bot(bot_engine)


@pytest.fixture
async def any_bot(make_bot: BotFactory, engine: AsyncEngine) -> Bot:
    """The bot on each database backend (SQLite and PostgreSQL)."""
    return await make_bot(engine)


@pytest.fixture
async def multi_bot(make_bot: BotFactory, bot_engine: AsyncEngine) -> Bot:
    """The bot with ACME and SUNBRIGHT configured."""
    return await make_bot(bot_engine, sunbright=True)
