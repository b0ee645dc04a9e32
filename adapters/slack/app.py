"""The Slack adapter: bolt's ``AsyncApp`` serving the core's commands and buttons.

Inbound, over HTTP (``POST /slack/events`` on the bot's one ASGI app) or Socket Mode (when an
app-level token is set):

- every request's signature is checked here, before bolt sees it, over the raw body bytes: a
  missing, malformed, stale (> 300 s either way) or wrong signature, or a non-numeric timestamp,
  gets 401 and runs nothing (bolt itself would answer 500 for a non-numeric timestamp);
- one slash command per top-level command word of the core (``/code``, ``/history`` ...) and
  ``/erm <anything>`` as the umbrella, all derived from ``dispatcher.commands``;
- buttons rendered by :mod:`adapters.slack.render` (``action_id`` ``erm:<action>``, ``value`` the
  core's opaque id) go to ``dispatcher.press``.

Every listener acks at once and hands the work to a tracked task (bolt runs with
``process_before_response=True``, so the ack is not held back by its 10 ms ack polling); the answer
goes out through :class:`adapters.slack.outbound.Outbound`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapters.bodies import (
    BadContentLengthError,
    BodyTooLargeError,
    bad_length,
    read_bounded,
    too_large,
)
from adapters.slack.outbound import ChannelPacer, Outbound, ResponseUrls, SlackSendError, Target
from adapters.slack.render import ACTION_PREFIX, escape, render, respell
from adapters.slack.workspace import Workspaces, guard
from bot.dispatch import Dispatcher
from bot.messages import Click, Identity, Pressed, Reply, Request, Visibility
from bot.ports import NotifyError

if TYPE_CHECKING:
    from adapters.settings import Settings

log = logging.getLogger(__name__)

PLATFORM = "slack"
UMBRELLA = "erm"  # /erm <anything>: every command, and help
SLASH_KINDS = ("code", "lookup")  # command kinds with a slash command of their own (the manifest)
EVENTS_PATH = "/slack/events"
# Slash commands are a few hundred bytes; a button click carries its whole source message (at
# most 50 blocks of 3000 characters, form-encoded: about 450 kB at worst), a modal view 250 kB.
MAX_BODY = 1024 * 1024
DEFAULT_API_URL = "https://slack.com/api/"
SIGNATURE_MAX_AGE = 300  # seconds, either way (Slack's replay window)
CONNECT_TIMEOUT = 30.0  # Socket Mode: give up starting after this
DRAIN_TIMEOUT = 20.0  # stop(): how long commands in flight may still run (ERM's total timeout)
# auth.test errors that mean the token itself is wrong: starting is pointless.
_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)

_BUTTON_ACTION = re.compile(rf"^{re.escape(ACTION_PREFIX)}")


class SlackConfigError(ValueError):
    """The Slack settings cannot work (the message names the variable to set)."""


class SlackStartError(RuntimeError):
    """Slack refused the adapter at start (a wrong token, Socket Mode unreachable)."""


@dataclass(frozen=True, slots=True)
class SlackConfig:
    bot_token: str = field(repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)  # set: Socket Mode
    api_url: str = DEFAULT_API_URL
    # Workspaces served (SLACK_TEAM_IDS); empty: the bot token's own, from auth.test.
    workspaces: Workspaces = field(default_factory=Workspaces)

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackConfig:
        def secret(name: str) -> str | None:
            value = getattr(settings, name)
            text: str = value.get_secret_value().strip() if value is not None else ""
            return text or None

        bot_token = secret("slack_bot_token")
        if bot_token is None:
            raise SlackConfigError("SLACK_BOT_TOKEN is not set")
        try:
            workspaces = Workspaces.parse(settings.slack_team_ids)
        except ValueError as exc:
            raise SlackConfigError(str(exc)) from None
        return cls(
            bot_token=bot_token,
            signing_secret=secret("slack_signing_secret"),
            app_token=secret("slack_app_token"),
            api_url=settings.slack_api_url,
            workspaces=workspaces,
        )

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    def check(self) -> None:
        """Raise ``SlackConfigError`` naming the variable when these settings cannot work."""
        if not self.bot_token:
            raise SlackConfigError("SLACK_BOT_TOKEN is not set")
        if not self.bot_token.startswith("xox"):
            raise SlackConfigError("SLACK_BOT_TOKEN must be a bot token (xoxb-...)")
        if self.app_token is not None and not self.app_token.startswith("xapp-"):
            raise SlackConfigError("SLACK_APP_TOKEN must be an app-level token (xapp-...)")
        if not self.socket_mode and not self.signing_secret:
            raise SlackConfigError(
                "SLACK_SIGNING_SECRET is required in HTTP mode (requests to /slack/events); "
                "set it, or set SLACK_APP_TOKEN to use Socket Mode"
            )
        if not self.api_url.startswith(("http://", "https://")):
            raise SlackConfigError("SLACK_API_URL must start with http:// or https://")


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: float | None = None,
) -> bool:
    """Slack's v0 signature over the raw body, within 300 s; never raises on malformed input."""
    if not timestamp or not signature or not signature.startswith("v0="):
        return False
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > SIGNATURE_MAX_AGE:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode(errors="replace"))


def is_direct_message(channel_id: str, channel_name: str = "") -> bool:
    """A DM: channel ids of IMs start with D; slash commands also say ``directmessage``."""
    return channel_id.startswith("D") or channel_name == "directmessage"


def _form_body_quirk(request: AsyncBoltRequest) -> None:
    """Bolt reads any form body containing the text "payload" as an interactivity payload; a
    slash command like ``/erm payload`` then parses to ``{}`` and goes unhandled. Re-read it."""
    if request.body or not request.raw_body:
        return
    if request.content_type != "application/x-www-form-urlencoded":
        return
    form = dict(parse_qsl(request.raw_body, keep_blank_values=True))
    if "payload" in form:
        return
    request.body = form
    request.context = build_async_context(AsyncBoltContext({}), form)


_PASSED_TO_BOLT = frozenset({"url_verification", "event_callback", "ssl_check"})
_OBJECT_FIELDS = ("user", "container", "channel", "team", "message", "enterprise")


def payload_problem(body: object) -> str | None:
    """Why a (signed) body cannot be a slash command or a button click of ours, or None.

    Bolt trusts the shape of a signed body: a payload that is not an object, or a button click
    whose ``actions`` or ``user`` are not objects, makes it fail with a 500. Interactivity other
    than button clicks is never configured for this app.
    """
    if not isinstance(body, dict):
        return "the body is not an object"
    kind = body.get("type")
    if kind is None or kind in _PASSED_TO_BOLT:
        return None  # a slash command (form fields), or what bolt answers itself
    if kind != "block_actions":
        return f"unexpected payload type {str(kind)[:40]!r}"
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions:
        return "a button click without actions"
    if not all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions):
        return "a button click with malformed actions"
    for name in _OBJECT_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], dict):
            return f"a button click whose {name} is not an object"
    return None


class SlackAdapter:
    """Serves the dispatcher on Slack; a ``WebService`` for :func:`adapters.web.create_app`."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        config: SlackConfig,
        *,
        channel_interval: float | None = None,
        response_urls: ResponseUrls | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        config.check()
        self.dispatcher = dispatcher
        self.config = config
        self._clock = clock
        api_url = config.api_url if config.api_url.endswith("/") else config.api_url + "/"
        self.client = AsyncWebClient(token=config.bot_token, base_url=api_url)
        self.outbound = Outbound(
            self.client,
            urls=response_urls,
            pacer=ChannelPacer(channel_interval) if channel_interval is not None else None,
        )
        self.words: frozenset[str] = frozenset(c.path[0] for c in dispatcher.commands)
        # The manifest gives lookups and codes a slash command each; the rest live under /erm.
        self.slash_words: frozenset[str] = frozenset(
            c.path[0] for c in dispatcher.commands if c.kind in SLASH_KINDS
        )
        self._auth: AsyncSlackResponse | None = None
        self._auth_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._socket: AsyncSocketModeHandler | None = None
        # bolt's own client carries no token: each request gets the bot token from _authorize.
        self.app = AsyncApp(
            name="erm-bot",
            client=AsyncWebClient(base_url=api_url),
            authorize=self._authorize_function(),
            signing_secret=config.signing_secret or "",
            request_verification_enabled=config.signing_secret is not None,
            process_before_response=True,
        )
        # First of the app's own middleware: a foreign workspace's request runs nothing.
        self.app.use(guard(self.workspaces))
        self._register()

    # -- WebService --------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        if self.config.signing_secret is None:
            return []  # Socket Mode only: nothing may arrive over HTTP unsigned
        return [Route(EVENTS_PATH, self._events, methods=["POST"])]

    async def start(self) -> None:
        """Check the bot token (auth.test), then connect Socket Mode when configured."""
        try:
            await self._auth_test()
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = str(data.get("error") or f"http_{exc.response.status_code}")
            if error in _TOKEN_ERRORS:
                raise SlackStartError(
                    f"Slack refused SLACK_BOT_TOKEN (auth.test: {error})"
                ) from None
            log.warning("Slack auth.test failed at start (%s); will retry", error)
        except Exception as exc:  # Slack unreachable: requests will try auth.test again
            log.warning("Slack auth.test failed at start (%s); will retry", type(exc).__name__)
        if self.config.app_token is not None:
            self._socket = AsyncSocketModeHandler(self.app, app_token=self.config.app_token)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await self._socket.connect_async()  # type: ignore[no-untyped-call]
            except TimeoutError:
                await self._socket.close_async()  # type: ignore[no-untyped-call]
                self._socket = None
                raise SlackStartError(
                    "Socket Mode did not connect within "
                    f"{CONNECT_TIMEOUT:g} s (check SLACK_APP_TOKEN and connections:write)"
                ) from None
            log.info("Slack Socket Mode connected")
        # The core posts approval cards and private messages through this adapter.
        self.dispatcher.core.notifiers[PLATFORM] = self

    async def stop(self) -> None:
        """Stop taking requests, let answers in flight finish, close connections."""
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close_async()  # type: ignore[no-untyped-call]
            self._socket = None
        await self.drain(DRAIN_TIMEOUT)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.dispatcher.core.notifiers.get(PLATFORM) is self:
            del self.dispatcher.core.notifiers[PLATFORM]  # after the work in flight used it
        await self.outbound.close()

    async def drain(self, seconds: float = DRAIN_TIMEOUT) -> None:
        """Wait (bounded) until no command or click is in flight."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)

    # -- inbound -----------------------------------------------------------------------------

    async def _events(self, request: HttpRequest) -> Response:
        # Bounded before the signature can be checked: the signature covers the whole body.
        try:
            body = await read_bounded(request, MAX_BODY)
        except BodyTooLargeError as exc:
            return too_large(PLATFORM, exc)
        except BadContentLengthError:
            return bad_length(PLATFORM)
        ok = verify_signature(
            self.config.signing_secret or "",
            body,
            request.headers.get("x-slack-request-timestamp"),
            request.headers.get("x-slack-signature"),
            now=self._clock(),
        )
        if not ok:
            log.info("Slack request refused: missing, stale or wrong signature")
            return JSONResponse({"error": "invalid request"}, status_code=401)
        try:
            raw = body.decode("utf-8")
        except UnicodeDecodeError:
            return JSONResponse({"error": "invalid request"}, status_code=400)
        try:
            bolt_request = AsyncBoltRequest(
                body=raw,
                query=dict(request.query_params),
                headers=dict(request.headers),
            )
            _form_body_quirk(bolt_request)
            problem = payload_problem(bolt_request.body)
        except Exception as exc:  # bolt's parsing of a payload that is not JSON, or not an object
            problem = f"unreadable body ({type(exc).__name__})"
        if problem is not None:
            # Signed, so from Slack or a holder of the secret; bolt would answer 500 with a
            # traceback in the log. Nothing runs.
            log.warning("Slack request refused: %s", problem)
            return JSONResponse({"error": "invalid request"}, status_code=400)
        bolt_response = await self.app.async_dispatch(bolt_request)
        return Response(
            status_code=bolt_response.status,
            content=bolt_response.body,
            headers=bolt_response.first_headers_without_set_cookie(),
        )

    def _register(self) -> None:
        # bolt picks listener arguments by parameter name; closures keep "self" out of it.
        async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
            received = datetime.now(UTC)
            url = body.get("response_url")
            if url:
                self.outbound.urls.open(str(url))
            await ack()
            self._spawn(self._run_command(body, received))

        async def on_click(ack: AsyncAck, body: dict[str, Any]) -> None:
            url = body.get("response_url")
            if url:
                self.outbound.urls.open(str(url))
            await ack()
            self._spawn(self._run_click(body))

        for word in sorted(self.words | {UMBRELLA}):
            self.app.command(f"/{word}")(on_command)
        self.app.action(_BUTTON_ACTION)(on_click)

    def _authorize_function(self) -> Callable[..., Coroutine[Any, Any, AuthorizeResult]]:
        async def authorize() -> AuthorizeResult:
            auth = await self._auth_test()
            return AuthorizeResult.from_auth_test_response(
                auth_test_response=auth, bot_token=self.config.bot_token
            )

        return authorize

    async def workspaces(self) -> Workspaces:
        """The workspaces this bot serves: configured, or the bot token's own (auth.test)."""
        if self.config.workspaces:
            return self.config.workspaces
        data = (await self._auth_test()).data
        return Workspaces.from_auth(data if isinstance(data, dict) else {})

    async def _auth_test(self) -> AsyncSlackResponse:
        """auth.test once per process (bolt needs the bot's identity for every request)."""
        if self._auth is None:
            async with self._auth_lock:
                if self._auth is None:
                    self._auth = await self.client.auth_test()
                    log.info(
                        "Slack bot %s in team %s",
                        self._auth.get("user_id"),
                        self._auth.get("team_id"),
                    )
        return self._auth

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def command_text(self, command: str, text: str) -> str:
        """What the user would type in the console for this slash command."""
        word = command.strip().lstrip("/").lower()
        rest = text.strip()
        if word in self.words:
            return f"/{word} {rest}".rstrip()
        rest = rest.lstrip("/").strip()  # /erm /code ... works too
        return f"/{rest}" if rest else "/help"

    async def _run_command(self, body: Mapping[str, Any], received: datetime) -> None:
        channel = str(body.get("channel_id") or "")
        user_id = str(body.get("user_id") or "")
        target = Target(
            channel=channel, user=user_id, response_url=_str_or_none(body.get("response_url"))
        )
        try:
            trigger = str(body.get("trigger_id") or "") or secrets.token_hex(8)
            request = Request(
                identity=Identity(PLATFORM, user_id, _str_or_none(body.get("user_name"))),
                text=self.command_text(str(body.get("command") or ""), str(body.get("text") or "")),
                request_key=f"slack:cmd:{trigger}",
                chat_id=channel,
                private_chat=is_direct_message(channel, str(body.get("channel_name") or "")),
                received_at=received,
            )
            reply = await self.dispatcher.handle(request)
        except Exception:
            incident = secrets.token_hex(3)
            log.exception("slack command failed", extra={"incident": incident})
            reply = _incident_reply(incident)
        await self.send(target, reply)

    async def _run_click(self, body: Mapping[str, Any]) -> None:
        actions = body.get("actions") or [{}]
        action: Mapping[str, Any] = actions[0]
        user: Mapping[str, Any] = body.get("user") or {}
        container: Mapping[str, Any] = body.get("container") or {}
        channel_info: Mapping[str, Any] = body.get("channel") or {}
        channel = str(channel_info.get("id") or container.get("channel_id") or "")
        user_id = str(user.get("id") or "")
        target = Target(
            channel=channel,
            user=user_id,
            response_url=_str_or_none(body.get("response_url")),
            message_ts=_str_or_none(container.get("message_ts")),
            ephemeral=bool(container.get("is_ephemeral")),
        )
        private_chat = is_direct_message(channel, str(channel_info.get("name") or ""))
        try:
            trigger = str(body.get("trigger_id") or "") or f"{action.get('action_ts')}:{user_id}"
            click = Click(
                identity=Identity(
                    PLATFORM, user_id, _str_or_none(user.get("username") or user.get("name"))
                ),
                button_id=str(action.get("value") or ""),
                request_key=f"slack:click:{trigger}",
                chat_id=channel,
                private_chat=private_chat,
            )
            pressed = await self.dispatcher.press(click)
        except Exception:
            incident = secrets.token_hex(3)
            log.exception("slack button failed", extra={"incident": incident})
            pressed = Pressed(reply=_incident_reply(incident))
        await self.apply(target, pressed)

    # -- outbound ----------------------------------------------------------------------------

    def render(self, reply: Reply) -> dict[str, Any]:
        return render(respell(reply, self.words - self.slash_words, UMBRELLA))

    async def send(self, target: Target, reply: Reply) -> str | None:
        """A new message: ephemeral unless the reply is public and may be shown to a channel."""
        public = reply.visibility is Visibility.PUBLIC and not reply.private_only
        return await self.outbound.deliver(target, self.render(reply), public=public)

    async def apply(self, target: Target, pressed: Pressed) -> None:
        """What a button press changes: the card, a new reply, a private notice, in that order."""
        card = pressed.card
        if card is not None:
            # Any non-ephemeral message may be seen by others (a D... channel can be a DM
            # between two people), so a confidential card never replaces one.
            shared = not target.ephemeral
            if card.private_only and shared:
                await self.outbound.deliver(
                    target, self.render(_withheld(card)), public=True, replace=True
                )
                await self.send(target, card)
            else:
                await self.outbound.deliver(target, self.render(card), public=shared, replace=True)
        if pressed.reply is not None:
            await self.send(target, pressed.reply)
        if pressed.notice:
            notice = escape(pressed.notice)
            await self.outbound.deliver(target, {"text": notice}, public=False)

    # -- Notifier (bot.approvals): cards in channels, private messages ------------------------

    async def post_card(self, chat_id: str, reply: Reply) -> str:
        """chat.postMessage into a channel; the message's ts is its ref."""
        try:
            answer = await self.outbound.post_message(chat_id, self.render(reply))
        except SlackSendError as exc:
            raise NotifyError(f"Slack {exc.method}: {exc.error}") from None
        ts = answer.get("ts")
        if not ts:
            raise NotifyError("Slack chat.postMessage gave no message ts")
        return str(ts)

    async def update_card(self, chat_id: str, message_ref: str, reply: Reply) -> None:
        try:
            await self.outbound.update(chat_id, message_ref, self.render(reply))
        except SlackSendError as exc:
            raise NotifyError(f"Slack {exc.method}: {exc.error}") from None

    async def send_private(self, user_id: str, reply: Reply) -> None:
        """A DM from the bot: chat.postMessage to the user's id opens the app's DM with them."""
        try:
            await self.outbound.post_message(user_id, self.render(reply))
        except SlackSendError as exc:
            raise NotifyError(f"Slack {exc.method}: {exc.error}") from None


def _withheld(card: Reply) -> Reply:
    return Reply(
        title=card.title,
        notes=("The details were sent privately to whoever pressed the button.",),
        visibility=Visibility.PUBLIC,
        tone=card.tone,
    )


def _incident_reply(incident: str) -> Reply:
    return Reply.error(
        f"Something went wrong on our side (incident {incident}). "
        "An admin can look it up in the logs."
    )


def _str_or_none(value: object) -> str | None:
    return str(value) if value else None
