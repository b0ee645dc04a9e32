"""Fixtures of the fault-injection suite: a bot with breakable ERM, served to a fake Slack.

``faulty`` is the stack of ``fault_rig.fault_stack`` on a SQLite file, its ERM behind a proxy the
test can stop; ``slack`` is the Slack adapter over it on the bot's ASGI app (loopback HTTP), with
Slack user U1 an agent at acme and U3 a supervisor.

``process_database`` is a database for ``erm-bot run`` processes, which are configured by URL
alone: a SQLite file, or a PostgreSQL database of its own (created and dropped here), since a
process cannot be given the per-test schema the ``database`` fixture uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack
from fault_rig import FaultStack, SlackClient, fault_stack
from support import fresh_postgres_database

from adapters.platform import Attached
from adapters.slack.app import SlackAdapter
from adapters.slack.config import SlackConfig
from adapters.web import create_app
from bot.roles import Role
from erm.sandbox.server import serve_app


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def faulty(tmp_path: Path, secret_keys: list[str]) -> AsyncIterator[FaultStack]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'faults.db'}"
    async with fault_stack(url, secret_keys, proxy_erm=True) as stack:
        yield stack


@pytest.fixture
async def slack(faulty: FaultStack, fake_slack: FakeSlack) -> AsyncIterator[SlackClient]:
    await faulty.grant("slack:U1", Role.AGENT)
    await faulty.grant("slack:U3", Role.SUPERVISOR)
    config = SlackConfig(
        bot_token=fake_slack.bot_token, signing_secret=SIGNING_SECRET, api_url=fake_slack.api_url
    )
    adapter = SlackAdapter(faulty.dispatcher, config)
    async with (
        serve_app(create_app([Attached(faulty.dispatcher.core, "slack", adapter)])) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10.0) as http,
    ):
        yield SlackClient(fake_slack, http)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def process_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL for ``erm-bot run`` processes: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
        return
    async with fresh_postgres_database("erm_bot_faults") as url:
        yield url
