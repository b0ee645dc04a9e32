"""The bot token never reaches a log line, an error message or a chat message."""

from __future__ import annotations

import logging

import pytest
from fakes.telegram import FakeTelegram
from telegram_rig import AGENT, AdapterFactory, StackLike

from adapters.telegram.app import TelegramStartError
from bot.roles import Role


async def test_the_token_is_not_logged_even_at_debug(
    stack: StackLike,
    fake: FakeTelegram,
    make_adapter: AdapterFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    fake.fail("sendMessage", status=429, retry_after=1)
    adapter = await make_adapter(stack.dispatcher, stack.engine)

    await fake.send(AGENT, "/whoami")
    await adapter.stop()

    assert "/bot<telegram-token>/sendMessage" in caplog.text  # httpx logs URLs, redacted
    assert fake.token not in caplog.text
    for message in fake.sent():
        assert fake.token not in message.text


async def test_a_refused_token_stops_start_with_a_clean_message(
    stack: StackLike,
    fake: FakeTelegram,
    make_adapter: AdapterFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = await make_adapter(stack.dispatcher, stack.engine, start=False)
    fake.token = "999:another-token"  # Telegram no longer knows the configured one

    with pytest.raises(TelegramStartError, match="BotFather") as raised:
        await adapter.start()

    assert "424242" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert "AAH-fake-telegram-token" not in caplog.text


async def test_an_unreachable_bot_api_stops_start_with_a_clean_message(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    adapter = await make_adapter(
        stack.dispatcher, stack.engine, start=False, api_url="http://127.0.0.1:9/bot"
    )

    with pytest.raises(TelegramStartError, match="cannot start the Telegram bot") as raised:
        await adapter.start()

    assert fake.token not in str(raised.value)
