"""Telegram: private chats and groups, long polling or webhook, over python-telegram-bot.

Importing the package stays cheap (PTB loads when the adapter is built): see
:mod:`adapters.platform`. The adapter itself is :class:`adapters.telegram.app.TelegramAdapter`.
"""

from adapters.telegram.platform import PLATFORM

__all__ = ["PLATFORM"]
