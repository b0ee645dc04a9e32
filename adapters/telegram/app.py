"""The Telegram adapter: PTB ``Application`` wiring, the webhook route and polling.

Updates arrive by long polling (no webhook URL; one process at a time, see ``lock.py``) or by
webhook (``POST /telegram/webhook`` on the bot's one ASGI app, checked against the secret token in
constant time). Either way they go into PTB's update queue and through
:class:`~adapters.telegram.ordering.ChatOrderedProcessor`: concurrent across chats, in order within
one chat.

A message is mapped to the core's text (``/code@thisbot days X 30`` -> ``/code days X 30``) and a
``Request`` keyed ``telegram:update:<update_id>``, so a redelivered update runs nothing twice, even
after a restart (the core keeps the key in the database). Within one process a redelivery is not
even answered again.

Group rule: a reply that carries a code or that the core declares confidential (an account, the
user list, the audit trail, approval lists, ``/whoami``: ``Reply.private_only``) is never posted
to a group, as it is never shown in a Slack channel. It goes to the requester's private chat and
the group is told so; when the requester never started a private chat with the bot (Telegram
answers 403), the group gets a link to start one instead.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import secrets
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from telegram import (
    BotCommand,
    CallbackQuery,
    Chat,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
    User,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from adapters.bodies import (
    BadContentLengthError,
    BodyTooLargeError,
    bad_length,
    read_bounded,
    too_large,
)
from adapters.logs import bind_request
from adapters.telegram.config import TelegramConfig
from adapters.telegram.lock import Leader, polling_lock
from adapters.telegram.ordering import ChatOrderedProcessor
from adapters.telegram.redact import TOKEN_FILTER, protect
from adapters.telegram.render import button_id, escape, keyboard, render
from bot import metrics
from bot.dispatch import Dispatcher
from bot.messages import Click, Identity, Reply, Request
from bot.ports import NotifyError
from bot.registry import Command

log = logging.getLogger(__name__)

PLATFORM = "telegram"
WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - the header's name
ALLOWED_UPDATES = (Update.MESSAGE, Update.CALLBACK_QUERY)
MAX_WEBHOOK_BODY = 1_000_000
MAX_RETRY_WAIT = 30.0  # longer flood waits are not waited out inside one update
SEEN_UPDATES = 10_000  # update ids remembered in memory to drop redeliveries unanswered
MAX_NOTICE = 200  # answerCallbackQuery text limit
_COMMAND_WORD = re.compile(r"[a-z0-9_]{1,32}")
_COMMAND = re.compile(r"^/([^\s@]+)(?:@(\S*))?(?:\s+(.*))?$", re.DOTALL)
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)

T = TypeVar("T")
AppType = Application[Any, Any, Any, Any, Any, Any]
Context = ContextTypes.DEFAULT_TYPE


class TelegramStartError(Exception):
    """The adapter could not start (bad token, Bot API unreachable); the message is safe to show."""


def command_text(text: str, username: str, *, ours: Callable[[str], bool]) -> str | None:
    """The core's command text for a Telegram message, or None when it is not for this bot.

    ``/code@thisbot days X 30`` -> ``/code days X 30``; ``/code@otherbot ...`` -> None. Without
    ``@bot`` a command is taken when ``ours(word)`` says the word is one of the bot's commands
    (in a group several bots may share a word like ``/help``; the caller decides).
    """
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    word, target, rest = match.group(1), match.group(2), match.group(3)
    if target is not None:
        if target.lower() != username.lower():
            return None
    elif not ours(word):
        return None
    rest = (rest or "").strip()
    return f"/{word} {rest}" if rest else f"/{word}"


def malformed(update: Update) -> str | None:
    """Why an update cannot be handled, or None. Telegram never sends these; PTB's parsing does
    not check types, so a forged or broken update (text that is a list, a message without a
    chat) would otherwise fail deep in a handler with a traceback. (Hence ``object``: the
    annotations are what Telegram promises, not what arrived.)"""
    message, query = update.message, update.callback_query
    if message is not None:
        if not _has_int_id(message.chat, Chat):
            return "a message without a chat"
        if not isinstance(cast(object, message.chat.type), str):
            return "a message in a chat of no type"
        text: object = message.text
        if text is not None and not isinstance(text, str):
            return "a message whose text is not text"
        if message.from_user is not None and not _has_int_id(message.from_user, User):
            return "a message from no one"
    if query is not None:
        query_id: object = query.id
        if not isinstance(query_id, str) or not query_id:
            return "a button press without an id"
        if not _has_int_id(query.from_user, User):
            return "a button press from no one"
        data: object = query.data
        if data is not None and not isinstance(data, str):
            return "a button press whose data is not text"
        if query.message is not None and not _has_int_id(query.message.chat, Chat):
            return "a button press on a message without a chat"
    return None


def _has_int_id(value: object, kind: type[Chat] | type[User]) -> bool:
    return isinstance(value, kind) and isinstance(cast(object, value.id), int)


def retry_seconds(exc: RetryAfter) -> float:
    """``retry_after`` in seconds, in either of PTB 22's forms (int, or timedelta opted in)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: int | timedelta = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def bot_commands(commands: Sequence[Command]) -> list[BotCommand]:
    """One menu entry per top-level command word, with its help text."""
    words: dict[str, list[Command]] = {}
    for command in commands:
        words.setdefault(command.path[0], []).append(command)
    menu: list[BotCommand] = []
    for word, group in words.items():
        if not _COMMAND_WORD.fullmatch(word):
            continue
        if len(group) == 1 and len(group[0].path) == 1:
            description = group[0].help
        else:
            subs = ", ".join(c.path[1] for c in group if len(c.path) > 1)
            description = f"{subs} (see /help {word})"
        menu.append(BotCommand(word, description[:256] or word))
    return menu[:100]


# Connections to the Bot API for everything but getUpdates. httpcore checks every pooled
# connection (a poll() each) whenever a request starts or ends, so a pool sized for a burst (it
# was 256) cost more CPU than the requests themselves; replies beyond it queue for a connection.
BOT_API_CONNECTIONS = 32
BOT_API_QUEUE_S = 30.0  # how long a reply may wait for a connection (PTB's default: 1 s)


class TelegramAdapter:
    """The Telegram side of erm-bot, as a ``WebService`` of ``adapters.web.create_app``."""

    def __init__(self, dispatcher: Dispatcher, config: TelegramConfig, engine: AsyncEngine) -> None:
        self._dispatcher = dispatcher
        self._config = config
        self._engine = engine
        self._application: AppType | None = None
        self._leader: Leader | None = None
        self._accepting = False
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._words = {c.path[0].lower() for c in dispatcher.commands}
        self.processor = ChatOrderedProcessor(config.concurrency)
        self.username = ""
        protect(config.bot_token)

    # -- WebService ----------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [Route(WEBHOOK_PATH, self._webhook, methods=["POST"])]

    async def start(self) -> None:
        """Check the token (getMe), publish the command menu, then webhook or polling."""
        config = self._config
        # Our own request objects, so they can be closed when start fails half-way (PTB only
        # shuts down what initialized completely).
        requests = (
            HTTPXRequest(connection_pool_size=BOT_API_CONNECTIONS, pool_timeout=BOT_API_QUEUE_S),
            HTTPXRequest(connection_pool_size=1),  # getUpdates: one long poll at a time
        )
        builder = (
            Application.builder()
            .token(config.bot_token)
            .base_url(config.api_url)
            .request(requests[0])
            .get_updates_request(requests[1])
            .concurrent_updates(self.processor)
            .job_queue(None)
        )
        if not config.polling:
            builder = builder.updater(None)
        application: AppType = builder.build()
        application.add_handler(
            MessageHandler(filters.UpdateType.MESSAGE & filters.TEXT, self._on_message)
        )
        application.add_handler(CallbackQueryHandler(self._on_callback))
        application.add_error_handler(self._on_error)
        try:
            await application.initialize()
            self.username = application.bot.username
            await self._call(
                "setMyCommands",
                lambda: application.bot.set_my_commands(bot_commands(self._dispatcher.commands)),
            )
            if not config.polling:
                await self._call(
                    "setWebhook",
                    lambda: application.bot.set_webhook(
                        config.webhook_url or "",
                        secret_token=config.webhook_secret,
                        allowed_updates=list(ALLOWED_UPDATES),
                    ),
                )
        except InvalidToken:
            await _close(application, requests)
            raise TelegramStartError(
                "Telegram refused TELEGRAM_BOT_TOKEN: check it with @BotFather"
            ) from None
        except TelegramError as exc:
            await _close(application, requests)
            raise TelegramStartError(
                f"cannot start the Telegram bot: {TOKEN_FILTER.redact(exc.message)}"
            ) from None
        self._dispatcher.core.deep_links[PLATFORM] = f"https://t.me/{self.username}?start={{code}}"
        await application.start()
        self._application = application
        self._accepting = True
        # The core posts approval cards and private messages through this adapter.
        self._dispatcher.core.notifiers[PLATFORM] = self
        if config.polling:
            name = f"telegram-polling:{application.bot.id}"
            self._leader = Leader(
                polling_lock(self._engine, name),
                self._start_polling,
                self._stop_polling,
                interval=config.lock_interval,
            )
            self._leader.start()
        log.info(
            "Telegram bot @%s started (%s)",
            self.username,
            "long polling" if config.polling else "webhook",
        )

    async def stop(self) -> None:
        """Stop polling, finish the updates in flight, release the polling lock."""
        self._accepting = False
        application, leader = self._application, self._leader
        try:
            if leader is not None:
                await leader.stop()  # stops the updater, which confirms what it fetched
            if application is not None and application.running:
                await application.stop()  # processes what is queued, waits for all of it
        finally:
            if self._dispatcher.core.notifiers.get(PLATFORM) is self:
                del self._dispatcher.core.notifiers[PLATFORM]  # after the updates in flight
            self._application, self._leader = None, None
            if leader is not None:
                await leader.release()
            if application is not None:
                await application.shutdown()

    # -- state, for tests and health -----------------------------------------------------------

    @property
    def application(self) -> AppType:
        if self._application is None:
            raise RuntimeError("the Telegram adapter is not running")
        return self._application

    @property
    def polling(self) -> bool:
        """True while this process holds the polling lock and polls."""
        return self._leader is not None and self._leader.leading

    # -- polling -------------------------------------------------------------------------------

    async def _start_polling(self) -> None:
        updater = self.application.updater
        if updater is None or updater.running:
            return
        await updater.start_polling(
            timeout=timedelta(seconds=self._config.poll_timeout),
            allowed_updates=list(ALLOWED_UPDATES),
            error_callback=_polling_error,
        )

    async def _stop_polling(self) -> None:
        application = self._application
        if application is not None and application.updater and application.updater.running:
            await application.updater.stop()

    # -- webhook -------------------------------------------------------------------------------

    async def _webhook(self, request: HttpRequest) -> Response:
        secret = self._config.webhook_secret
        given = request.headers.get(SECRET_HEADER, "")
        if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
            return Response("forbidden", status_code=403)
        application = self._application
        if application is None or not self._accepting:
            return Response("not running", status_code=503)  # Telegram retries later
        try:
            raw = await read_bounded(request, MAX_WEBHOOK_BODY)
        except BodyTooLargeError as exc:
            return too_large(PLATFORM, exc)
        except BadContentLengthError:
            return bad_length(PLATFORM)
        try:
            data = json.loads(raw)
            update = Update.de_json(data, application.bot) if isinstance(data, dict) else None
        except Exception:  # not JSON, or not an Update: PTB raises whatever its parsing hits
            update = None
        problem = "not an update" if update is None else malformed(update)
        if problem is not None:
            log.warning("Telegram webhook post refused: %s", problem)
            return Response("bad update", status_code=400)
        assert update is not None
        await application.update_queue.put(update)
        return Response(status_code=200)

    # -- updates -------------------------------------------------------------------------------

    def _first_time(self, update: Update) -> bool:
        """False for an update id this process has seen already (a redelivery)."""
        if update.update_id in self._seen:
            log.info("Telegram update %s delivered again: ignored", update.update_id)
            return False
        self._seen[update.update_id] = None
        while len(self._seen) > SEEN_UPDATES:
            self._seen.popitem(last=False)
        return True

    async def _on_message(self, update: Update, context: Context) -> None:
        bind_request(PLATFORM, telegram_update=update.update_id)
        message, user = update.message, update.effective_user
        if message is None or user is None or user.is_bot or message.text is None:
            return
        if malformed(update) is not None:
            return  # only a broken or forged update looks like this; nothing to answer
        if not self._first_time(update):
            return
        private = message.chat.type == ChatType.PRIVATE
        text = command_text(
            message.text, self.username, ours=lambda w: private or w.lower() in self._words
        )
        if text is None:
            if private and not message.text.startswith("/"):
                await self._send_html(
                    message.chat.id, "Send /help to see the commands you may use."
                )
            return
        request = Request(
            identity=_identity(user),
            text=text,
            request_key=f"{PLATFORM}:update:{update.update_id}",
            chat_id=str(message.chat.id),
            private_chat=private,
            sent_at=message.date,
        )
        try:
            reply = await self._dispatcher.handle(request)
        except Exception:
            # The core answers every request itself; should it ever fail, the user still hears.
            incident = secrets.token_hex(3)
            log.exception(
                "Telegram update %s failed", update.update_id, extra={"incident": incident}
            )
            reply = Reply.error(
                f"Something went wrong on our side (incident {incident}). "
                "An admin can look it up in the logs."
            )
        await self._deliver(
            reply,
            chat=message.chat,
            user=user,
            reply_to=None if private else message.message_id,
        )

    async def _on_callback(self, update: Update, context: Context) -> None:
        bind_request(PLATFORM, telegram_update=update.update_id)
        query = update.callback_query
        if query is None or malformed(update) is not None:
            return
        if not self._first_time(update):
            return  # the first delivery answered it
        notice: str | None = None
        try:
            notice = await self._press(update, query)
        except Exception:
            log.exception("Telegram button press %s failed", update.update_id)
            notice = "Sorry, that did not work. Please try again."
        finally:
            await self._answer(query, notice)

    async def _press(self, update: Update, query: CallbackQuery) -> str | None:
        user = query.from_user
        pressed_id = button_id(query.data)
        if pressed_id is None:
            return "This button no longer works. Run the command again."
        message = query.message if isinstance(query.message, Message) else None
        chat = message.chat if message is not None else None
        private = chat is None or chat.type == ChatType.PRIVATE
        click = Click(
            identity=_identity(user),
            button_id=pressed_id,
            request_key=f"{PLATFORM}:update:{update.update_id}",
            chat_id=str(chat.id if chat is not None else user.id),
            private_chat=private,
        )
        pressed = await self._dispatcher.press(click)
        if pressed.card is not None and message is not None:
            await self._replace(message, pressed.card, user)
        if pressed.reply is not None:
            if chat is not None:
                await self._deliver(pressed.reply, chat=chat, user=user, reply_to=None)
            else:
                await self._send(user.id, pressed.reply)
        return pressed.notice

    async def _answer(self, query: CallbackQuery, notice: str | None) -> None:
        text = notice[: MAX_NOTICE - 1] + "…" if notice and len(notice) > MAX_NOTICE else notice
        try:
            await self._call("answerCallbackQuery", lambda: query.answer(text=text))
        except TelegramError as exc:
            log.warning("answering a Telegram button press failed: %s", exc.message)

    async def _on_error(self, update: object, context: Context) -> None:
        update_id = update.update_id if isinstance(update, Update) else None
        log.error("Telegram update %s failed", update_id, exc_info=context.error)

    # -- sending -------------------------------------------------------------------------------

    async def _deliver(self, reply: Reply, *, chat: Chat, user: User, reply_to: int | None) -> None:
        """Send ``reply`` to the chat, except codes in a group: those go to the private chat."""
        if not reply.private_only or chat.type == ChatType.PRIVATE:
            await self._send(chat.id, reply, reply_to)
            return
        try:
            await self._send(user.id, reply)
        except Forbidden:
            link = f"https://t.me/{self.username}?start"
            await self._send_html(
                chat.id,
                f"{_mention(user)}, I only send this in a private chat, and I cannot reach you "
                f'there yet. <a href="{escape(link)}">Open a chat with me</a>, press Start (or '
                "unblock me), then send the command there.",
                reply_to,
            )
            return
        await self._send_html(
            chat.id, f"{_mention(user)}, I sent you the answer in a private chat.", reply_to
        )

    async def _replace(self, message: Message, card: Reply, user: User) -> None:
        """Replace a message holding a pressed button; a code never lands in a group."""
        chat = message.chat
        if card.private_only and chat.type != ChatType.PRIVATE:
            await self._edit(chat.id, message.message_id, f"Answered for {_mention(user)}.", None)
            await self._deliver(card, chat=chat, user=user, reply_to=None)
            return
        parts = render(card)
        markup = keyboard(card.buttons)
        await self._edit(chat.id, message.message_id, parts[0], markup if len(parts) == 1 else None)
        for index, part in enumerate(parts[1:], start=2):
            await self._send_html(chat.id, part, markup=markup if index == len(parts) else None)

    async def _send(self, chat_id: int, reply: Reply, reply_to: int | None = None) -> int:
        """Send the reply (in parts if long); the id of the last part, which holds the buttons."""
        parts = render(reply)
        markup = keyboard(reply.buttons)
        last = 0
        for index, part in enumerate(parts, start=1):
            last = await self._send_html(
                chat_id,
                part,
                reply_to if index == 1 else None,
                markup=markup if index == len(parts) else None,
            )
        return last

    async def _send_html(
        self,
        chat_id: int,
        html_text: str,
        reply_to: int | None = None,
        *,
        markup: InlineKeyboardMarkup | None = None,
    ) -> int:
        bot = self.application.bot
        reply_parameters = (
            ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        )
        sent = await self._call(
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
            return str(await self._send(int(chat_id), reply))
        except (TelegramError, ValueError) as exc:
            raise NotifyError(_why(exc)) from None

    async def update_card(self, chat_id: str, message_ref: str, reply: Reply) -> None:
        parts = render(reply)
        markup = keyboard(reply.buttons) if len(parts) == 1 else None
        try:
            await self._edit(int(chat_id), int(message_ref), parts[0], markup)
        except (TelegramError, ValueError) as exc:
            raise NotifyError(_why(exc)) from None

    async def send_private(self, user_id: str, reply: Reply) -> None:
        """To the user's private chat with the bot (its id is the user's id)."""
        try:
            await self._send(int(user_id), reply)
        except (TelegramError, ValueError) as exc:
            raise NotifyError(_why(exc)) from None

    async def _edit(
        self, chat_id: int, message_id: int, html_text: str, markup: InlineKeyboardMarkup | None
    ) -> None:
        bot = self.application.bot
        try:
            await self._call(
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

    async def _call(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
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
                metrics.count_send_failure(PLATFORM, what, type(exc).__name__)
            raise


def _why(exc: Exception) -> str:
    if isinstance(exc, TelegramError):
        return f"Telegram {type(exc).__name__}: {TOKEN_FILTER.redact(exc.message)}"
    return f"not a Telegram chat id ({type(exc).__name__})"


def _identity(user: User) -> Identity:
    return Identity(PLATFORM, str(user.id), user.full_name or user.username or None)


def _mention(user: User) -> str:
    return f'<a href="tg://user?id={user.id}">{escape(user.first_name or "you")}</a>'


def _polling_error(exc: TelegramError) -> None:
    log.warning("polling Telegram failed: %s: %s", type(exc).__name__, exc.message)


async def _close(application: AppType, requests: Sequence[HTTPXRequest]) -> None:
    """Free what a failed start opened."""
    for closing in (application.shutdown(), *(r.shutdown() for r in requests)):
        try:
            await closing
        except Exception:
            log.debug("ignored an error while cleaning up", exc_info=True)
