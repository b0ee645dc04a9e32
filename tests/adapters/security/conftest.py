"""Fixtures of the security suite: the whole inbound path of each platform over loopback HTTP.

``slack_side``: the Slack adapter (HTTP mode, signing secret) on the bot's ASGI app over ``stack``;
``telegram_side``: the Telegram adapter in webhook mode (secret token) on the same kind of app;
``whatsapp_side``: the WhatsApp adapter (app secret, verify token) against the fake Graph API;
``any_slack_side`` / ``any_telegram_side`` / ``any_whatsapp_side``: the same over ``any_stack``
(SQLite and PostgreSQL); ``spy``: every request and click that reached the dispatcher. Slack U1,
Telegram user 7101 (``security_rig.TELEGRAM_AGENT``) and WhatsApp ``security_rig.WHATSAPP_AGENT``
are agents at acme.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack
from fakes.telegram import FakeTelegram
from fakes.whatsapp import FakeWhatsApp
from security_rig import (
    TELEGRAM_AGENT,
    WEBHOOK_SECRET,
    WHATSAPP_AGENT,
    SlackSide,
    Spy,
    TelegramSide,
    WhatsAppSide,
)

from adapters.platform import Attached
from adapters.slack.app import SlackAdapter
from adapters.slack.config import SlackConfig
from adapters.telegram.app import TelegramAdapter
from adapters.telegram.config import TelegramConfig
from adapters.web import create_app
from adapters.whatsapp.app import WhatsAppAdapter
from adapters.whatsapp.config import WhatsAppConfig
from bot.roles import Role
from erm.sandbox.server import serve_app

WEBHOOK_URL = "https://bot.example.test/telegram/webhook"


@pytest.fixture
def spy(stack: Any) -> Spy:
    watcher = Spy()
    watcher.attach(stack.dispatcher)
    return watcher


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@contextlib.asynccontextmanager
async def slack_on(stack: Any, fake: FakeSlack) -> AsyncIterator[SlackSide]:
    await stack.grant("slack:U1", Role.AGENT)
    config = SlackConfig(
        bot_token=fake.bot_token, signing_secret=SIGNING_SECRET, api_url=fake.api_url
    )
    adapter = SlackAdapter(stack.dispatcher, config)
    async with (
        serve_app(create_app([Attached(stack.dispatcher.core, "slack", adapter)])) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=15.0) as http,
    ):
        yield SlackSide(fake, adapter, http)
        await adapter.drain(5.0)


@contextlib.asynccontextmanager
async def telegram_on(stack: Any) -> AsyncIterator[TelegramSide]:
    await stack.grant(f"telegram:{TELEGRAM_AGENT.id}", Role.AGENT)
    async with FakeTelegram() as fake:
        config = TelegramConfig(
            bot_token=fake.token,
            api_url=fake.api_url,
            webhook_url=WEBHOOK_URL,
            webhook_secret=WEBHOOK_SECRET,
        )
        adapter = TelegramAdapter(stack.dispatcher, config, stack.engine)
        attached = Attached(stack.dispatcher.core, "telegram", adapter)
        async with (
            serve_app(create_app([attached])) as base_url,
            httpx.AsyncClient(timeout=15.0) as http,
        ):
            yield TelegramSide(fake, f"{base_url}/telegram/webhook", http)


@contextlib.asynccontextmanager
async def whatsapp_on(stack: Any) -> AsyncIterator[WhatsAppSide]:
    await stack.grant(f"whatsapp:{WHATSAPP_AGENT}", Role.AGENT)
    async with FakeWhatsApp() as fake:
        config = WhatsAppConfig(
            token=fake.token,
            phone_number_id=fake.phone_number_id,
            app_secret=fake.app_secret,
            verify_token=fake.verify_token,
            api_url=fake.url,
        )
        adapter = WhatsAppAdapter(stack.dispatcher, config, stack.engine)
        attached = Attached(stack.dispatcher.core, "whatsapp", adapter)
        async with (
            serve_app(create_app([attached])) as base_url,
            httpx.AsyncClient(timeout=15.0, trust_env=False) as http,
        ):
            yield WhatsAppSide(fake, adapter, f"{base_url}/whatsapp/webhook", http)
            await adapter.runner.join()


@pytest.fixture
async def slack_side(stack: Any, fake_slack: FakeSlack, spy: Spy) -> AsyncIterator[SlackSide]:
    async with slack_on(stack, fake_slack) as side:
        yield side


@pytest.fixture
async def any_slack_side(any_stack: Any, fake_slack: FakeSlack) -> AsyncIterator[SlackSide]:
    async with slack_on(any_stack, fake_slack) as side:
        yield side


@pytest.fixture
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def telegram_side(stack: Any, spy: Spy, _ptb_timedelta: None) -> AsyncIterator[TelegramSide]:
    async with telegram_on(stack) as side:
        yield side


@pytest.fixture
async def any_telegram_side(any_stack: Any, _ptb_timedelta: None) -> AsyncIterator[TelegramSide]:
    async with telegram_on(any_stack) as side:
        yield side


@pytest.fixture
async def whatsapp_side(stack: Any, spy: Spy) -> AsyncIterator[WhatsAppSide]:
    async with whatsapp_on(stack) as side:
        yield side


@pytest.fixture
async def any_whatsapp_side(any_stack: Any) -> AsyncIterator[WhatsAppSide]:
    async with whatsapp_on(any_stack) as side:
        yield side
