"""Fixtures for the Slack adapter: ``slack`` is the whole path, over loopback HTTP.

The fake Slack Web API (``tests/fakes/slack.py``) stands in for slack.com; the adapter runs on the
bot's ASGI app (``adapters.web.create_app``) served by uvicorn; the core runs on ``stack`` (the
sandbox ERM over loopback). Slack user U1 is an agent at acme, U2 a viewer, U9 has no role.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack
from slack_rig import SlackRig

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
async def slack(stack: Any, fake_slack: FakeSlack) -> AsyncIterator[SlackRig]:
    await stack.grant("slack:U1", Role.AGENT)
    await stack.grant("slack:U2", Role.VIEWER)
    config = SlackConfig(
        bot_token=fake_slack.bot_token,
        signing_secret=SIGNING_SECRET,
        api_url=fake_slack.api_url,
    )
    adapter = SlackAdapter(stack.dispatcher, config)
    async with (
        serve_app(create_app([Attached(stack.dispatcher.core, "slack", adapter)])) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10.0) as http,
    ):
        yield SlackRig(fake_slack, adapter, base_url, http)
