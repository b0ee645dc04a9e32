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

import hmac
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from telegram import CallbackQuery, Message, Update, User
from telegram.constants import ChatType
from telegram.error import InvalidToken, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from adapters.bodies import (
    BadContentLengthError,
    BodyTooLargeError,
    bad_length,
    read_bounded,
    too_large,
)
from adapters.logs import bind_request
from adapters.telegram.config import NAME, TelegramConfig
from adapters.telegram.inbound import bot_commands, command_text, malformed
from adapters.telegram.lock import Leader, polling_lock
from adapters.telegram.ordering import ChatOrderedProcessor
from adapters.telegram.outbound import Outbound
from adapters.telegram.redact import TOKEN_FILTER, protect
from adapters.telegram.render import button_id
from bot.dispatch import Dispatcher
from bot.messages import Click, Identity, Request
from bot.ports import Notifier
from bot.replies import unexpected

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - the header's name
ALLOWED_UPDATES = (Update.MESSAGE, Update.CALLBACK_QUERY)
MAX_WEBHOOK_BODY = 1_000_000
SEEN_UPDATES = 10_000  # update ids remembered in memory to drop redeliveries unanswered
MAX_NOTICE = 200  # answerCallbackQuery text limit

AppType = Application[Any, Any, Any, Any, Any, Any]
Context = ContextTypes.DEFAULT_TYPE


class TelegramStartError(Exception):
    """The adapter could not start (bad token, Bot API unreachable); the message is safe to show."""


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
        self.out = Outbound(lambda: self.application.bot)
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
            await self.out.call(
                "setMyCommands",
                lambda: application.bot.set_my_commands(bot_commands(self._dispatcher.commands)),
            )
            if not config.polling:
                await self.out.call(
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
        await application.start()
        self._application = application
        self._accepting = True
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
            self._application, self._leader = None, None
            if leader is not None:
                await leader.release()
            if application is not None:
                await application.shutdown()

    # -- adapters.platform.Served --------------------------------------------------------------

    @property
    def notifier(self) -> Notifier:
        return self.out

    @property
    def deep_link(self) -> str | None:
        """``/start CODE`` in a private chat with the bot, once started (its name is known)."""
        return f"https://t.me/{self.username}?start={{code}}" if self.username else None

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
            return too_large(NAME, exc)
        except BadContentLengthError:
            return bad_length(NAME)
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
        bind_request(NAME, telegram_update=update.update_id)
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
                await self.out.send_html(
                    message.chat.id, "Send /help to see the commands you may use."
                )
            return
        request = Request(
            identity=_identity(user),
            text=text,
            request_key=f"{NAME}:update:{update.update_id}",
            chat_id=str(message.chat.id),
            private_chat=private,
            sent_at=message.date,
        )
        try:
            reply = await self._dispatcher.handle(request)
        except Exception:
            # The core answers every request itself; should it ever fail, the user still hears.
            reply = unexpected(log, f"Telegram update {update.update_id} failed")
        await self.out.deliver(
            reply,
            chat=message.chat,
            user=user,
            reply_to=None if private else message.message_id,
        )

    async def _on_callback(self, update: Update, context: Context) -> None:
        bind_request(NAME, telegram_update=update.update_id)
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
            request_key=f"{NAME}:update:{update.update_id}",
            chat_id=str(chat.id if chat is not None else user.id),
            private_chat=private,
        )
        pressed = await self._dispatcher.press(click)
        if pressed.card is not None and message is not None:
            await self.out.replace(message, pressed.card, user)
        if pressed.reply is not None:
            if chat is not None:
                await self.out.deliver(pressed.reply, chat=chat, user=user, reply_to=None)
            else:
                await self.out.send(user.id, pressed.reply)
        return pressed.notice

    async def _answer(self, query: CallbackQuery, notice: str | None) -> None:
        text = notice[: MAX_NOTICE - 1] + "…" if notice and len(notice) > MAX_NOTICE else notice
        try:
            await self.out.call("answerCallbackQuery", lambda: query.answer(text=text))
        except TelegramError as exc:
            log.warning("answering a Telegram button press failed: %s", exc.message)

    async def _on_error(self, update: object, context: Context) -> None:
        update_id = update.update_id if isinstance(update, Update) else None
        log.error("Telegram update %s failed", update_id, exc_info=context.error)


def _identity(user: User) -> Identity:
    return Identity(NAME, str(user.id), user.full_name or user.username or None)


def _polling_error(exc: TelegramError) -> None:
    log.warning("polling Telegram failed: %s: %s", type(exc).__name__, exc.message)


async def _close(application: AppType, requests: Sequence[HTTPXRequest]) -> None:
    """Free what a failed start opened."""
    for closing in (application.shutdown(), *(r.shutdown() for r in requests)):
        try:
            await closing
        except Exception:
            log.debug("ignored an error while cleaning up", exc_info=True)
