"""Telegram as an erm-bot :class:`~adapters.platform.Platform`: the object the registry lists."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.platform import ConfigurationError, Platform, Report, Served
from adapters.settings import Settings
from adapters.telegram.config import NAME, TelegramConfig
from bot.dispatch import Dispatcher
from bot.permissions import UserIdRule


class TelegramPlatform:
    """Private chats and groups, by long polling or webhook (``/telegram/webhook``)."""

    name = NAME
    # User ids are positive integers (Bot API ``User.id``, at most 52 significant bits): a
    # private message to anything else fails later, far from the typo.
    user_ids = UserIdRule(
        re.compile(r"[1-9][0-9]{0,15}"),
        "Telegram user ids are positive whole numbers, e.g. telegram:123456789",
    )
    enabled_by = "TELEGRAM_BOT_TOKEN"

    def config(self, settings: Settings) -> TelegramConfig | None:
        if not settings.telegram_bot_token:
            return None
        try:
            return TelegramConfig.from_settings(settings)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    def describe(self, config: TelegramConfig) -> str:
        return "Telegram by " + ("long polling" if config.polling else "webhook")

    def build(self, config: TelegramConfig, dispatcher: Dispatcher, engine: AsyncEngine) -> Served:
        from adapters.telegram.app import TelegramAdapter  # PTB loads only here

        return TelegramAdapter(dispatcher, config, engine)

    async def doctor(self, config: TelegramConfig, report: Report) -> None:
        from adapters.telegram.doctor import check  # PTB loads only here

        await check(config, report)


PLATFORM: Platform[TelegramConfig] = TelegramPlatform()
