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

Every command and click is acked at once and its work handed to a tracked task; the answer goes
out through :class:`adapters.slack.outbound.Outbound`. Over HTTP, our own commands and clicks are
served straight from the checked body (:mod:`adapters.slack.direct`); bolt serves the rest and
Socket Mode (with ``process_before_response=True``, so its ack is not held back by its 10 ms ack
polling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.ack.async_ack import AsyncAck
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
from adapters.logs import bind_request_once
from adapters.slack.config import NAME, SlackConfig
from adapters.slack.direct import Direct, read_ours
from adapters.slack.inbound import (
    form_body_quirk,
    is_direct_message,
    payload_problem,
    verify_signature,
)
from adapters.slack.outbound import ChannelPacer, Outbound, ResponseUrls, SlackSendError, Target
from adapters.slack.render import ACTION_PREFIX, escape, render, respell
from adapters.slack.workspace import Workspaces, guard, refusal
from bot.dispatch import Dispatcher
from bot.messages import Click, Identity, Pressed, Reply, Request, Visibility
from bot.ports import Notifier, NotifyError, Sent
from bot.replies import unexpected

log = logging.getLogger(__name__)

UMBRELLA = "erm"  # /erm <anything>: every command, and help
SLASH_KINDS = ("code", "lookup")  # command kinds with a slash command of their own (the manifest)
EVENTS_PATH = "/slack/events"
# Slash commands are a few hundred bytes; a button click carries its whole source message (at
# most 50 blocks of 3000 characters, form-encoded: about 450 kB at worst), a modal view 250 kB.
MAX_BODY = 1024 * 1024
CONNECT_TIMEOUT = 30.0  # Socket Mode: give up starting after this
DRAIN_TIMEOUT = 20.0  # stop(): how long commands in flight may still run (ERM's total timeout)
# auth.test errors that mean the token itself is wrong: starting is pointless.
_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)

_BUTTON_ACTION = re.compile(rf"^{re.escape(ACTION_PREFIX)}")
SLACK_DOWN = "erm-bot cannot reach Slack right now, so nothing was done. Try again in a minute."


class SlackStartError(RuntimeError):
    """Slack refused the adapter at start (a wrong token, Socket Mode unreachable)."""


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
        self._slash_commands = self.words | {UMBRELLA}
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
        await self.outbound.close()

    async def drain(self, seconds: float = DRAIN_TIMEOUT) -> None:
        """Wait (bounded) until no command or click is in flight."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)

    # -- adapters.platform.Served ------------------------------------------------------------

    @property
    def notifier(self) -> Notifier:
        """This adapter: it posts approval cards and private messages for the core."""
        return self

    @property
    def deep_link(self) -> None:
        """Slack has no invite link: an invite code is typed (``/start CODE``)."""
        return None

    # -- inbound -----------------------------------------------------------------------------

    async def _events(self, request: HttpRequest) -> Response:
        # Bounded before the signature can be checked: the signature covers the whole body.
        try:
            body = await read_bounded(request, MAX_BODY)
        except BodyTooLargeError as exc:
            return too_large(NAME, exc)
        except BadContentLengthError:
            return bad_length(NAME)
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
        ours = read_ours(
            raw, request.headers.get("content-type"), self._slash_commands, ACTION_PREFIX
        )
        if ours is not None:
            return await self._serve(ours)
        try:
            bolt_request = AsyncBoltRequest(
                body=raw,
                query=dict(request.query_params),
                headers=dict(request.headers),
            )
            form_body_quirk(bolt_request)
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

    async def _serve(self, request: Direct) -> Response:
        """What the bolt listeners below do, without bolt (see :mod:`adapters.slack.direct`)."""
        team, enterprise = request.team_id, request.enterprise_id
        try:
            served = await self.workspaces()
        except Exception as exc:  # auth.test failed: bolt's authorization would refuse too
            log.warning("Slack request refused: auth.test failed (%s)", type(exc).__name__)
            return JSONResponse({"response_type": "ephemeral", "text": SLACK_DOWN})
        if not served.serves(team, enterprise):
            return Response(refusal(team, enterprise), media_type="application/json")
        self._take(request.kind, request.body)
        return Response(status_code=200)

    def _take(self, kind: str, body: Mapping[str, Any]) -> None:
        """An acked command or click: its response_url noted, its work started."""
        received = datetime.now(UTC)
        url = body.get("response_url")
        if url:
            self.outbound.urls.open(str(url))
        if kind == "command":
            self._spawn(self._run_command(body, received))
        else:
            self._spawn(self._run_click(body))

    def _register(self) -> None:
        # Socket Mode's way in (HTTP serves these without bolt: _serve). bolt picks listener
        # arguments by parameter name; closures keep "self" out of it.
        async def on_command(ack: AsyncAck, body: dict[str, Any]) -> None:
            await ack()
            self._take("command", body)

        async def on_click(ack: AsyncAck, body: dict[str, Any]) -> None:
            await ack()
            self._take("click", body)

        for word in sorted(self._slash_commands):
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
                identity=Identity(NAME, user_id, _str_or_none(body.get("user_name"))),
                text=self.command_text(str(body.get("command") or ""), str(body.get("text") or "")),
                request_key=f"slack:cmd:{trigger}",
                chat_id=channel,
                private_chat=is_direct_message(channel, str(body.get("channel_name") or "")),
                received_at=received,
            )
            reply = await self.dispatcher.handle(request)
        except Exception:
            reply = unexpected(log, "slack command failed")
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
                    NAME, user_id, _str_or_none(user.get("username") or user.get("name"))
                ),
                button_id=str(action.get("value") or ""),
                request_key=f"slack:click:{trigger}",
                chat_id=channel,
                private_chat=private_chat,
            )
            pressed = await self.dispatcher.press(click)
        except Exception:
            pressed = Pressed(reply=unexpected(log, "slack button failed"))
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

    async def send_private(self, user_id: str, reply: Reply) -> Sent:
        """A DM from the bot: chat.postMessage to the user's id opens the app's DM with them."""
        try:
            await self.outbound.post_message(user_id, self.render(reply))
        except SlackSendError as exc:
            raise NotifyError(f"Slack {exc.method}: {exc.error}") from None
        return Sent.NOW


def _withheld(card: Reply) -> Reply:
    return Reply(
        title=card.title,
        notes=("The details were sent privately to whoever pressed the button.",),
        visibility=Visibility.PUBLIC,
        tone=card.tone,
    )


def _str_or_none(value: object) -> str | None:
    return str(value) if value else None


async def request_context(next: Callable[[], Awaitable[None]]) -> None:
    """bolt middleware: a request id for Socket Mode requests (HTTP ones have one already)."""
    bind_request_once(NAME)
    await next()
