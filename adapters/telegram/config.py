"""What the Telegram adapter needs to know, read once from ``Settings``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from adapters.settings import Settings

NAME = "telegram"
DEFAULT_API_URL = "https://api.telegram.org/bot"
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    """The bot token and how updates arrive: webhook when ``webhook_url`` is set, else polling.

    Secrets stay out of ``repr`` (and so out of logs and tracebacks).
    """

    bot_token: str = field(repr=False)
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    api_url: str = DEFAULT_API_URL
    poll_timeout: float = 10.0  # seconds a getUpdates long poll waits
    lock_interval: float = 1.0  # seconds between tries for the polling lock (PostgreSQL)
    concurrency: int = 256  # chats worked on at once

    def __post_init__(self) -> None:
        if not self.bot_token.strip():
            raise ValueError("TELEGRAM_BOT_TOKEN is empty")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError(
                "TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_WEBHOOK_URL: Telegram sends it "
                "with every update so the bot can refuse requests that do not come from Telegram"
            )
        if self.webhook_secret is not None and not _SECRET.fullmatch(self.webhook_secret):
            raise ValueError(
                "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
            )
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")

    @property
    def polling(self) -> bool:
        return not self.webhook_url

    @classmethod
    def from_settings(cls, settings: Settings) -> TelegramConfig:
        """The config from ``TELEGRAM_*`` settings; ValueError when no bot token is set."""
        if settings.telegram_bot_token is None:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        secret = settings.telegram_webhook_secret
        return cls(
            bot_token=settings.telegram_bot_token.get_secret_value(),
            webhook_url=settings.telegram_webhook_url or None,
            webhook_secret=secret.get_secret_value() if secret is not None else None,
            api_url=settings.telegram_api_url,
        )
