"""Fixtures for the Telegram adapter tests: the fake Bot API and adapters pointed at it.

Every test here runs with ``PTB_TIMEDELTA=true``: PTB 22 warns (``PTBDeprecationWarning``) when a
``RetryAfter`` is built or read in the old integer form, and pytest turns warnings into errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakes.telegram import FakeTelegram
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram_rig import AdapterFactory

from adapters.platform import Attached
from adapters.telegram.app import TelegramAdapter
from adapters.telegram.config import TelegramConfig
from bot.dispatch import Dispatcher


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def make_adapter(fake: FakeTelegram) -> AsyncIterator[AdapterFactory]:
    """Builds (and by default starts) adapters on the fake; stops them all afterwards."""
    adapters: list[Attached] = []

    async def build(
        dispatcher: Dispatcher,
        engine: AsyncEngine,
        *,
        start: bool = True,
        api_url: str | None = None,
        **overrides: Any,
    ) -> TelegramAdapter:
        settings: dict[str, Any] = {"poll_timeout": 2.0, "lock_interval": 0.5}
        settings.update(overrides)
        config = TelegramConfig(bot_token=fake.token, api_url=api_url or fake.api_url, **settings)
        adapter = TelegramAdapter(dispatcher, config, engine)
        attached = Attached(dispatcher.core, "telegram", adapter)
        adapters.append(attached)
        if start:
            await attached.start()
        return adapter

    yield build
    for attached in reversed(adapters):
        await attached.stop()
