"""What the core asks of the world around it: a way to post to each platform, and a runner.

The core never imports an adapter. Each platform hands the core a :class:`Notifier` (cards in
team chats, private messages); the dispatcher is the :data:`Runner` that approved requests and
button presses run through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Protocol

from bot.errors import BotError
from bot.messages import Reply, Request


class NotifyError(BotError):
    """A platform refused to post or edit a message (the message says why, without secrets)."""


class Sent(Enum):
    """What became of a private message the platform took."""

    NOW = "now"  # in the user's private chat
    # Kept for the user's next message: the platform lets the bot start no conversation now
    # (a messaging window closed, no template for it). Stored, so not lost; not delivered yet.
    HELD = "held"


class Notifier(Protocol):
    """How the core posts to a platform outside a reply; each adapter registers one at start."""

    async def post_card(self, chat_id: str, reply: Reply) -> str:
        """Post ``reply`` (public, with its buttons) in a channel or group; the message's ref."""

    async def update_card(self, chat_id: str, message_ref: str, reply: Reply) -> None:
        """Replace a posted card (a reply without buttons removes them)."""

    async def send_private(self, user_id: str, reply: Reply) -> Sent:
        """Send ``reply`` to the user's private chat with the bot (its direct messages)."""


# Runs a request as if it had just arrived (once per request key) and returns its reply.
Runner = Callable[[Request], Awaitable[Reply]]
