"""Telegram: private chats and groups, long polling or webhook, over python-telegram-bot."""

from adapters.telegram.app import TelegramAdapter, TelegramStartError
from adapters.telegram.config import TelegramConfig

__all__ = ["TelegramAdapter", "TelegramConfig", "TelegramStartError"]
