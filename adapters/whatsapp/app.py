"""The WhatsApp adapter: the webhook on the bot's one ASGI app, and pywa's Graph API client.

``GET /whatsapp/webhook`` answers Meta's subscription handshake. ``POST /whatsapp/webhook`` reads
the body bounded (413 past :data:`MAX_WEBHOOK_BODY`), checks ``X-Hub-Signature-256`` over the
exact bytes (401 without one, 403 when wrong) before parsing anything, answers 200 and only then
works: each message is queued per person (:class:`~adapters.whatsapp.ordering.KeyedRunner`), so
one person's messages are answered in order and nobody waits for anyone else.

pywa: its webhook helpers are not used. ``webhook_update_handler`` runs the handlers before it
returns, so its answer to Meta would wait for ERM; its challenge check ignores ``hub.mode`` and
compares with ``==``; its duplicate check lives in memory. We keep pywa's Graph API client
(``pywa_async.WhatsApp(..., server=None)``, sends and errors), and so the httpx client we hand it:
pywa's ``GraphAPI.__init__`` overwrites the session's ``base_url`` with graph.facebook.com, so
:func:`graph_client` points that same session at ``WHATSAPP_API_URL`` right after, keeping pywa's
``/v<version>`` path (no subclass, no patched internals).

Redeliveries (Meta retries for days what it did not see answered): a message runs through the
core with the request key ``whatsapp:<message id>``, so its command runs once even across restarts
and replicas, and only the delivery that ran it sends the reply (``Dispatcher.answer``): a copy
that finds the key claimed sends nothing, so no answer (no code) comes twice. A message that
runs no request under that key (a button press, a text that is no command) claims
``whatsapp:seen:<message id>`` before its work instead. A message older than the core
keeps request keys is dropped: its key may be gone.
"""

from __future__ import annotations

import functools
import json
import logging
from datetime import timedelta

import httpx
from pywa_async.api import GraphAPIAsync
from pywa_async.client import WhatsApp
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request as HttpRequest
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.bodies import (
    BadContentLengthError,
    BodyTooLargeError,
    bad_length,
    read_bounded,
    too_large,
)
from adapters.logs import bind_request
from adapters.whatsapp.config import NAME, WEBHOOK_PATH, WhatsAppConfig
from adapters.whatsapp.inbound import (
    SIGNATURE_HEADER,
    Incoming,
    Status,
    command_text,
    handshake,
    parse,
    signature_ok,
)
from adapters.whatsapp.metrics import count_status
from adapters.whatsapp.ordering import KeyedRunner
from adapters.whatsapp.outbound import OUTSIDE_WINDOW, Outbound, describe
from adapters.whatsapp.render import button_id, escape
from bot.dispatch import Dispatcher
from bot.messages import Click, Identity, Reply, Request
from bot.ports import Notifier
from bot.replies import unexpected
from bot.storage.requests import ClaimStatus

log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 1_000_000
GRAPH_CONNECTIONS = 32
GRAPH_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
SEEN_FINGERPRINT = "whatsapp-seen"
# Texts of ours, in WhatsApp markup.
HINT = "Send *help* to see the commands you may use."
NOT_TEXT = "I read text only. Type a command, e.g. *help*."
DEAD_BUTTON = "This button no longer works. Run the command again."


class WhatsAppStartError(Exception):
    """The adapter could not start (token refused, Graph API unreachable); safe to show."""


def graph_client(config: WhatsAppConfig) -> tuple[WhatsApp, httpx.AsyncClient]:
    """pywa's client on our httpx session, pointed at ``config.api_url`` (see the docstring)."""
    # pywa logs every request and answer at DEBUG, message bodies included: codes would reach
    # the logs of a bot run at DEBUG. Its loggers stay at INFO.
    for name in ("pywa", "pywa_async"):
        logging.getLogger(name).setLevel(logging.INFO)
    session = httpx.AsyncClient(
        timeout=GRAPH_TIMEOUT,
        limits=httpx.Limits(max_connections=GRAPH_CONNECTIONS),
        trust_env=False,
    )
    client = WhatsApp(
        phone_id=config.phone_number_id,
        token=config.token,
        session=session,
        server=None,
        validate_updates=False,  # the route checks signatures itself, before parsing
        filter_updates=False,
    )
    # pywa just set https://graph.facebook.com/v<its version>/: keep its path, change the origin.
    session.base_url = config.api_url.rstrip("/") + session.base_url.path
    return client, session


def number_digits(display: object) -> str | None:
    """``+1 555-010-0001`` -> ``15550100001``; None when it is not a phone number."""
    if not isinstance(display, str):
        return None
    digits = "".join(c for c in display if c.isdigit())
    return digits if 6 <= len(digits) <= 15 else None


class WhatsAppAdapter:
    """The WhatsApp side of erm-bot, as a ``WebService`` of ``adapters.web.create_app``."""

    def __init__(self, dispatcher: Dispatcher, config: WhatsAppConfig, engine: AsyncEngine) -> None:
        self._dispatcher = dispatcher
        self._config = config
        self._engine = engine
        self._client: WhatsApp | None = None
        self._session: httpx.AsyncClient | None = None
        self._accepting = False
        self._words = {c.path[0].lower() for c in dispatcher.commands}
        self.runner = KeyedRunner(config.concurrency)
        self.business_number = config.business_number
        self.out = Outbound(
            self._api, config.phone_number_id, config.templates, held=dispatcher.core.held
        )

    # -- WebService ----------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route(WEBHOOK_PATH, self._verify, methods=["GET"]),
            Route(WEBHOOK_PATH, self._webhook, methods=["POST"]),
        ]

    async def start(self) -> None:
        """Check the token and phone number id with the Graph API, then take notifications."""
        client, session = graph_client(self._config)
        try:
            info = await client.api.get_business_phone_number(
                self._config.phone_number_id, fields=("display_phone_number", "verified_name")
            )
        except Exception as exc:
            await session.aclose()
            raise WhatsAppStartError(f"cannot start WhatsApp: {describe(exc)}") from None
        self._client, self._session = client, session
        if self.business_number is None:
            self.business_number = number_digits(info.get("display_phone_number"))
        self._accepting = True
        log.info("WhatsApp number %s started (webhook)", info.get("display_phone_number", "?"))

    async def stop(self) -> None:
        """Take no more notifications, finish the work queued, close the connections."""
        self._accepting = False
        try:
            await self.runner.join()
        finally:
            session, self._client, self._session = self._session, None, None
            if session is not None:
                await session.aclose()

    # -- adapters.platform.Served --------------------------------------------------------------

    @property
    def notifier(self) -> Notifier:
        return self.out

    @property
    def deep_link(self) -> str | None:
        """``wa.me`` with ``start CODE`` typed in; without a number, the text to send."""
        if self.business_number:
            return f"https://wa.me/{self.business_number}?text=start%20{{code}}"
        return "send start {code} to the bot's WhatsApp number"

    def _api(self) -> GraphAPIAsync:
        if self._client is None:
            raise RuntimeError("the WhatsApp adapter is not running")
        return self._client.api

    # -- webhook -------------------------------------------------------------------------------

    async def _verify(self, request: HttpRequest) -> Response:
        challenge = handshake(self._config.verify_token, request.query_params)
        if challenge is None:
            log.warning("WhatsApp webhook handshake refused")
            return PlainTextResponse("forbidden", status_code=403)
        return PlainTextResponse(challenge)

    async def _webhook(self, request: HttpRequest) -> Response:
        try:
            raw = await read_bounded(request, MAX_WEBHOOK_BODY)
        except BodyTooLargeError as exc:
            return too_large(NAME, exc)
        except BadContentLengthError:
            return bad_length(NAME)
        header = request.headers.get(SIGNATURE_HEADER)
        if not header:
            log.warning("WhatsApp webhook post without a signature refused")
            return Response("signature required", status_code=401)
        if not signature_ok(self._config.app_secret, raw, header):
            log.warning("WhatsApp webhook post with a wrong signature refused")
            return Response("forbidden", status_code=403)
        if not self._accepting:
            return Response("not running", status_code=503)  # Meta retries later
        try:
            notification = parse(json.loads(raw), self._config.phone_number_id)
        except (ValueError, RecursionError):  # not JSON, or nested beyond parsing
            notification = None
        if notification is None:
            log.warning("WhatsApp webhook post refused: not a WhatsApp notification")
            return Response("bad notification", status_code=400)
        if notification.foreign:
            log.info("WhatsApp notification for another phone number id ignored")
        for status in notification.statuses:
            self._status(status)
        for message in notification.messages:
            self.runner.submit(message.wa_id, functools.partial(self._handle, message))
        return Response(status_code=200)

    def _status(self, status: Status) -> None:
        count_status(status.status, status.error_codes)
        if status.status == "failed" and OUTSIDE_WINDOW in status.error_codes:
            # In the user's queue: after the messages they sent before it, like a reply.
            self.runner.submit(
                status.wa_id, functools.partial(self.out.undelivered, status.message_id)
            )

    # -- messages ------------------------------------------------------------------------------

    async def _handle(self, message: Incoming) -> None:
        bind_request(NAME, whatsapp_message=message.message_id[:80])
        if self._too_old(message):
            return
        replies: list[Reply | str] | None
        try:
            replies = await self._answer(message)
        except Exception:
            # The core answers every request itself; should it ever fail, the user still hears.
            replies = [unexpected(log, "WhatsApp message failed")]
        if replies is None:
            log.info("WhatsApp message delivered again: answered already")
            return
        try:
            for reply in replies:
                if isinstance(reply, str):
                    await self.out.text(message.wa_id, reply)
                else:
                    await self.out.send(message.wa_id, reply)
        except Exception as exc:
            log.warning("the reply to a WhatsApp message was not sent: %s", describe(exc))
            return
        # The user just wrote, so the window is open: what waited for it follows the reply.
        await self.out.hand_over(message.wa_id)

    def _too_old(self, message: Incoming) -> bool:
        """A redelivery older than the request keys are kept could run twice: dropped."""
        if message.sent_at is None:
            return False
        kept = self._dispatcher.core.requests.retention - timedelta(hours=1)
        if self._dispatcher.core.clock() - message.sent_at <= kept:
            return False
        log.warning("WhatsApp message from %s delivered after %s: dropped", message.sent_at, kept)
        return True

    async def _answer(self, message: Incoming) -> list[Reply | str] | None:
        """The replies to send, in order; None for a redelivery (answered already)."""
        identity = Identity(NAME, message.wa_id, message.name)
        key = f"{NAME}:{message.message_id}"
        text = None
        if message.button_id is None and message.text is not None:
            text = command_text(message.text, lambda word: word in self._words)
        if text is not None:
            request = Request(
                identity=identity,
                text=text,
                request_key=key,
                chat_id=message.wa_id,
                private_chat=True,
                sent_at=message.sent_at,
            )
            answer = await self._dispatcher.answer(request)
            return [answer.reply] if answer.first else None
        # What runs no request under the message's key is marked seen first. The marker is
        # never finished: it is purged with the other request keys.
        seen = await self._dispatcher.core.requests.claim(
            f"{NAME}:seen:{message.message_id}", SEEN_FINGERPRINT
        )
        if seen.status is not ClaimStatus.NEW:
            return None
        if message.button_id is not None:
            return await self._press(identity, key, message.button_id)
        return [NOT_TEXT if message.text is None else HINT]

    async def _press(self, identity: Identity, key: str, payload: str) -> list[Reply | str]:
        stored = button_id(payload)
        if stored is None:
            return [DEAD_BUTTON]
        click = Click(
            identity=identity,
            button_id=stored,
            request_key=key,
            chat_id=identity.user_id,
            private_chat=True,
        )
        pressed = await self._dispatcher.press(click)
        # A message cannot be edited on WhatsApp: a card that would replace the pressed one comes
        # as a message of its own, unless a reply says it all (a confirmed command's code).
        shown = pressed.reply if pressed.reply is not None else pressed.card
        replies: list[Reply | str] = [shown] if shown is not None else []
        if pressed.notice:
            replies.append(escape(pressed.notice))
        return replies
