"""WhatsApp as an erm-bot :class:`~adapters.platform.Platform`: the object the registry lists."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.platform import ConfigurationError, Platform, Report, Served
from adapters.settings import Settings
from adapters.whatsapp.config import NAME, WhatsAppConfig
from bot.dispatch import Dispatcher
from bot.permissions import UserIdRule


class WhatsAppPlatform:
    """One-to-one chats with the business number, by webhook (``/whatsapp/webhook``)."""

    name = NAME
    # A wa_id is the phone number in international form, digits only, no "+".
    user_ids = UserIdRule(
        re.compile(r"[1-9][0-9]{5,14}"),
        "WhatsApp ids are phone numbers in international form, digits only, "
        "e.g. whatsapp:254700123456",
    )
    enabled_by = "WHATSAPP_TOKEN"

    def config(self, settings: Settings) -> WhatsAppConfig | None:
        try:
            return WhatsAppConfig.from_settings(settings)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    def describe(self, config: WhatsAppConfig) -> str:
        return f"WhatsApp Cloud API by webhook (phone number id {config.phone_number_id})"

    def build(self, config: WhatsAppConfig, dispatcher: Dispatcher, engine: AsyncEngine) -> Served:
        from adapters.whatsapp.app import WhatsAppAdapter  # pywa loads only here

        return WhatsAppAdapter(dispatcher, config, engine)

    async def doctor(self, config: WhatsAppConfig, report: Report) -> None:
        from adapters.whatsapp.doctor import check  # pywa loads only here

        await check(config, report)


PLATFORM: Platform[WhatsAppConfig] = WhatsAppPlatform()
