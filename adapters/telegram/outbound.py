"""Messages to Telegram: replies (in parts when long, codes never in a group), edits of a card,
and the core's :class:`~bot.ports.Notifier`; every Bot API call waits out a short flood limit."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from telegram import (
    Bot,
    Chat,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    User,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from adapters.telegram.config import NAME
from adapters.telegram.redact import TOKEN_FILTER
from adapters.telegram.render import escape, keyboard, render
from bot import metrics
from bot.messages import Reply
from bot.ports import NotifyError, Sent

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_RETRY_WAIT = 30.0  # longer flood waits are not waited out inside one update
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


def retry_seconds(exc: RetryAfter) -> float:
    """``retry_after`` in seconds, in either of PTB 22's forms (int, or timedelta opted in)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: int | timedelta = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class Outbound:
    """Sends through the running application's bot (``bot()``: there is one only once started)."""

    def __init__(self, bot: Callable[[], Bot]) -> None:
        self._bot = bot

    async def deliver(self, reply: Reply, *, chat: Chat, user: User, reply_to: int | None) -> None:
        """Send ``reply`` to the chat, except codes in a group: those go to the private chat."""
        if not reply.private_only or chat.type == ChatType.PRIVATE:
            await self.send(chat.id, reply, reply_to)
            return
        try:
            await self.send(user.id, reply)
        except Forbidden:
            link = f"https://t.me/{self._bot().username}?start"
            await self.send_html(
                chat.id,
                f"{_mention(user)}, I only send this in a private chat, and I cannot reach you "
                f'there yet. <a href="{escape(link)}">Open a chat with me</a>, press Start (or '
                "unblock me), then send the command there.",
                reply_to,
            )
            return
        await self.send_html(
            chat.id, f"{_mention(user)}, I sent you the answer in a private chat.", reply_to
        )

    async def replace(self, message: Message, card: Reply, user: User) -> None:
        """Replace a message holding a pressed button; a code never lands in a group."""
        chat = message.chat
        if card.private_only and chat.type != ChatType.PRIVATE:
            await self.edit(chat.id, message.message_id, f"Answered for {_mention(user)}.", None)
            await self.deliver(card, chat=chat, user=user, reply_to=None)
            return
        parts = render(card)
        markup = keyboard(card.buttons)
        await self.edit(chat.id, message.message_id, parts[0], markup if len(parts) == 1 else None)
        for index, part in enumerate(parts[1:], start=2):
            await self.send_html(chat.id, part, markup=markup if index == len(parts) else None)

    async def send(self, chat_id: int, reply: Reply, reply_to: int | None = None) -> int:
        """Send the reply (in parts if long); the id of the last part, which holds the buttons."""
        parts = render(reply)
        markup = keyboard(reply.buttons)
        last = 0
        for index, part in enumerate(parts, start=1):
            last = await self.send_html(
                chat_id,
                part,
                reply_to if index == 1 else None,
                markup=markup if index == len(parts) else None,
            )
        return last

    async def send_html(
        self,
        chat_id: int,
        html_text: str,
        reply_to: int | None = None,
        *,
        markup: InlineKeyboardMarkup | None = None,
    ) -> int:
        bot = self._bot()
        reply_parameters = (
            ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        )
        sent = await self.call(
            "sendMessage",
            lambda: bot.send_message(
                chat_id,
                html_text,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
                reply_parameters=reply_parameters,
                link_preview_options=_NO_PREVIEW,
            ),
        )
        return int(sent.message_id)

    # -- Notifier (bot.approvals): cards in groups, private messages ----------------------------

    async def post_card(self, chat_id: str, reply: Reply) -> str:
        """sendMessage into a group; the message id (of the part with the buttons) is its ref."""
        try:
            return str(await self.send(int(chat_id), reply))
        except (TelegramError, ValueError) as exc:
            raise NotifyError(_why(exc)) from None

    async def update_card(self, chat_id: str, message_ref: str, reply: Reply) -> None:
        parts = render(reply)
        markup = keyboard(reply.buttons) if len(parts) == 1 else None
        try:
            await self.edit(int(chat_id), int(message_ref), parts[0], markup)
        except (TelegramError, ValueError) as exc:
            raise NotifyError(_why(exc)) from None

    async def send_private(self, user_id: str, reply: Reply) -> Sent:
        """To the user's private chat with the bot (its id is the user's id)."""
        try:
            await self.send(int(user_id), reply)
        except (TelegramError, ValueError) as exc:
            raise NotifyError(_why(exc)) from None
        return Sent.NOW

    async def edit(
        self, chat_id: int, message_id: int, html_text: str, markup: InlineKeyboardMarkup | None
    ) -> None:
        bot = self._bot()
        try:
            await self.call(
                "editMessageText",
                lambda: bot.edit_message_text(
                    html_text,
                    chat_id=chat_id,
                    message_id=message_id,
                    parse_mode=ParseMode.HTML,
                    reply_markup=markup,
                    link_preview_options=_NO_PREVIEW,
                ),
            )
        except BadRequest as exc:
            if "message is not modified" not in exc.message.lower():
                raise
            # Same content again (a repeated decision): that is what we wanted.

    async def call(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
        """One Bot API call; on 429 wait ``retry_after`` (if reasonable) and retry once.

        A call that still fails is counted in the send-failure metric and raised.
        """
        try:
            try:
                return await make()
            except RetryAfter as exc:
                wait = retry_seconds(exc)
                if wait > MAX_RETRY_WAIT:
                    raise
                log.warning("Telegram flood control: waiting %.0f s, then %s again", wait, what)
                await asyncio.sleep(wait)
                return await make()
        except TelegramError as exc:
            if "message is not modified" not in exc.message.lower():  # an edit that is a no-op
                metrics.count_send_failure(NAME, what, type(exc).__name__)
            raise


def _mention(user: User) -> str:
    return f'<a href="tg://user?id={user.id}">{escape(user.first_name or "you")}</a>'


def _why(exc: Exception) -> str:
    if isinstance(exc, TelegramError):
        return f"Telegram {type(exc).__name__}: {TOKEN_FILTER.redact(exc.message)}"
    return f"not a Telegram chat id ({type(exc).__name__})"
