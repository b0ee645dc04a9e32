"""Slack as an erm-bot :class:`~adapters.platform.Platform`: the object the registry lists."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.platform import ConfigurationError, Platform, Report, Served
from adapters.settings import Settings
from adapters.slack.config import NAME, SlackConfig
from bot.dispatch import Dispatcher
from bot.permissions import UserIdRule


class SlackPlatform:
    """Slash commands and buttons over HTTP (``/slack/events``) or Socket Mode."""

    name = NAME
    # User ids start with U, or W on Enterprise Grid, then capitals and digits (platforms.md).
    user_ids = UserIdRule(
        re.compile(r"[UW][A-Z0-9]{2,31}"),
        "Slack user ids are U or W, then capital letters and digits, e.g. slack:U0123ABCD",
    )
    enabled_by = "SLACK_BOT_TOKEN"

    def config(self, settings: Settings) -> SlackConfig | None:
        if not settings.slack_bot_token:
            return None
        try:
            config = SlackConfig.from_settings(settings)
            config.check()
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        return config

    def describe(self, config: SlackConfig) -> str:
        return "Slack over " + ("Socket Mode" if config.socket_mode else "HTTP")

    def build(self, config: SlackConfig, dispatcher: Dispatcher, engine: AsyncEngine) -> Served:
        from adapters.slack.app import SlackAdapter, request_context  # bolt loads only here

        adapter = SlackAdapter(dispatcher, config)
        adapter.app.use(request_context)
        return adapter

    async def doctor(self, config: SlackConfig, report: Report) -> None:
        from adapters.slack.doctor import check  # slack_sdk loads only here

        await check(config, report)


PLATFORM: Platform[SlackConfig] = SlackPlatform()
