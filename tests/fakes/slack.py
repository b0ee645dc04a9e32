"""A loopback fake of the Slack Web API, response URLs and Socket Mode, for adapter tests.

A real aiohttp server on 127.0.0.1 in the test's event loop. It answers ``auth.test``,
``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``, ``apps.connections.open`` (with a
WebSocket at ``/socket`` that speaks Socket Mode envelopes) and posts to response URLs
(``POST /response/<id>``, at most 5 uses each, like Slack). It checks the bot token, and Slack's
message limits (50 blocks, 3000 characters a section, 10 fields, 150 a header, 75 a button text,
2000 a button value, a top-level ``text``), answering ``invalid_blocks`` / ``no_text`` like Slack.
It records every call (method, headers, JSON or form body, monotonic time), can be told to answer
429 with ``Retry-After`` or ``ok: false`` with an error code, and has helpers to build and sign
slash-command and ``block_actions`` requests as Slack sends them.

    async with FakeSlack() as slack:
        config = SlackConfig(bot_token=slack.bot_token, signing_secret=SECRET, app_token=None,
                             api_url=slack.api_url)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import WSMsgType, web
from slack_sdk.signature import SignatureVerifier

BOT_TOKEN = "xoxb-fake-bot-token-0123456789"
APP_TOKEN = "xapp-fake-app-token-0123456789"
SIGNING_SECRET = "fake-signing-secret-0123456789abcdef"
TEAM_ID = "T0FAKE"
BOT_USER_ID = "U0BOT"


@dataclass(frozen=True)
class Call:
    """One request the fake received. ``method`` is the Web API method or ``response``."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # time.monotonic() when it arrived
    status: int  # what the fake answered
    answer: dict[str, Any] | str

    @property
    def channel(self) -> str | None:
        value = self.body.get("channel")
        return str(value) if value is not None else None

    @property
    def text(self) -> str:
        return str(self.body.get("text") or "")

    @property
    def blocks(self) -> list[dict[str, Any]]:
        blocks = self.body.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        return list(blocks)

    def dump(self) -> str:
        """Everything this call carried, as one string (for "never contains X" checks)."""
        return json.dumps(self.body, ensure_ascii=False)


def shown(call: Call) -> str:
    """Everything a user sees in one Slack message: fallback text and every block's text."""
    parts = [call.text]
    for block in call.blocks:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts.extend(f["text"] for f in block.get("fields") or ())
        for element in block.get("elements") or ():
            text = element.get("text")
            parts.append(text["text"] if isinstance(text, dict) else str(text or ""))
    return "\n".join(parts)


@dataclass
class _Failure:
    status: int
    error: str
    retry_after: float | None
    times: int


@dataclass
class Envelope:
    envelope_id: str
    acked: asyncio.Future[dict[str, Any]] = field(repr=False)


def _texts(node: Any) -> Iterator[str]:
    """Every text of every text object in ``node``."""
    if isinstance(node, dict):
        if node.get("type") in ("plain_text", "mrkdwn") and "text" in node:
            yield str(node["text"])
        for value in node.values():
            yield from _texts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _texts(value)


def message_problem(body: dict[str, Any]) -> str | None:
    """Slack's message checks, as far as the bot's messages go."""
    blocks = body.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return "invalid_blocks_format"
    text = body.get("text")
    if not blocks:
        return None if text else "no_text"
    if not text:
        return "no_text"  # the bot always sends a fallback; Slack warns without one
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    action_ids: set[str] = set()
    if any(not t.strip() for t in _texts(blocks)):
        return "invalid_blocks"  # Slack: text "must be more than 0 characters"
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            if len(block["text"]["text"]) > 150 or block["text"]["type"] != "plain_text":
                return "invalid_blocks"
        elif kind == "section":
            if "text" in block and len(block["text"]["text"]) > 3000:
                return "invalid_blocks"
            fields = block.get("fields") or []
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                return "invalid_blocks"
            if "text" not in block and not fields:
                return "invalid_blocks"
        elif kind == "context":
            if not 1 <= len(block.get("elements") or []) <= 10:
                return "invalid_blocks"
        elif kind == "actions":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 25:
                return "invalid_blocks"
            for element in elements:
                if len(element["text"]["text"]) > 75 or len(element.get("value", "")) > 2000:
                    return "invalid_blocks"
                if element["action_id"] in action_ids or len(element["action_id"]) > 255:
                    return "invalid_blocks"
                action_ids.add(element["action_id"])
        elif kind not in ("divider", "image", "rich_text"):
            return "invalid_blocks"
    return None


class FakeSlack:
    def __init__(
        self, *, bot_token: str = BOT_TOKEN, app_token: str = APP_TOKEN, team_id: str = TEAM_ID
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> message
        self.response_uses: dict[str, int] = {}
        self.sockets: list[web.WebSocketResponse] = []
        self.envelopes: dict[str, Envelope] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/response/{key}", self._response)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for socket in self.sockets:
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, key: str | None = None) -> str:
        return f"{self.url}/response/{key or next(self._ids)}"

    # -- programming failures ----------------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        error: str = "ratelimited",
        retry_after: float | None = 1,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (or ``response``) with an HTTP error."""
        self._failures.setdefault(method, []).append(_Failure(status, error, retry_after, times))

    def error(self, method: str, error: str, *, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 200 ``ok: false``."""
        self._failures.setdefault(method, []).append(_Failure(200, error, None, times))

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method) or []
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    # -- reading what happened ---------------------------------------------------------------

    def calls_to(self, *methods: str) -> list[Call]:
        return [c for c in self.calls if c.method in methods]

    def posts(self) -> list[Call]:
        """Every message the bot sent, whatever the way (Web API or response_url)."""
        return self.calls_to("chat.postMessage", "chat.postEphemeral", "chat.update", "response")

    async def wait_for(self, *methods: str, count: int = 1, within: float = 10.0) -> list[Call]:
        """The calls to ``methods`` once there are at least ``count`` of them (bounded wait)."""

        def enough() -> bool:
            return len(self.calls_to(*methods)) >= count

        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(enough)
        return self.calls_to(*methods)

    async def wait_posts(self, count: int = 1, within: float = 10.0) -> list[Call]:
        return await self.wait_for(
            "chat.postMessage",
            "chat.postEphemeral",
            "chat.update",
            "response",
            count=count,
            within=within,
        )

    async def wait_calls(
        self, match: Callable[[Call], bool], *, count: int = 1, within: float = 10.0
    ) -> list[Call]:
        """The calls ``match`` accepts, once there are at least ``count`` (bounded wait)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: sum(map(match, self.calls)) >= count)
        return [c for c in self.calls if match(c)]

    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()

    # -- handlers ----------------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw:
            return {}
        if (request.content_type or "").endswith("json"):
            data = json.loads(raw)
            return data if isinstance(data, dict) else {"_": data}
        return dict(parse_qsl(raw.decode(), keep_blank_values=True))

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await self._body(request)
        headers = dict(request.headers)
        status, answer, extra = self._answer(method, body, headers)
        await self._record(
            Call(method, request.path, headers, body, time.monotonic(), status, answer)
        )
        return web.json_response(answer, status=status, headers=extra)

    def _answer(
        self, method: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        token = headers.get("Authorization", "").removeprefix("Bearer ").strip()
        token = token or str(body.get("token") or "")
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        failure = self._take_failure(method)
        if failure is not None:
            extra = (
                {} if failure.retry_after is None else {"Retry-After": f"{failure.retry_after:g}"}
            )
            return failure.status, {"ok": False, "error": failure.error}, extra
        if method == "auth.test":
            return (
                200,
                {
                    "ok": True,
                    "url": "https://fake.slack.test/",
                    "team": "Fake",
                    "user": "erm-bot",
                    "team_id": self.team_id,
                    "user_id": BOT_USER_ID,
                    "bot_id": "B0BOT",
                },
                {},
            )
        if method == "apps.connections.open":
            ws = self.url.replace("http://", "ws://")
            return 200, {"ok": True, "url": f"{ws}/socket"}, {}
        if method in ("chat.postMessage", "chat.postEphemeral", "chat.update"):
            channel = str(body.get("channel") or "")
            if not channel:
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            problem = message_problem(body)
            if problem:
                return 200, {"ok": False, "error": problem}, {}
            if method == "chat.postEphemeral":
                if not body.get("user"):
                    return 200, {"ok": False, "error": "user_not_in_channel"}, {}
                return 200, {"ok": True, "message_ts": self._next_ts()}, {}
            if method == "chat.update":
                key = (channel, str(body.get("ts") or ""))
                if key not in self.messages:
                    return 200, {"ok": False, "error": "message_not_found"}, {}
                self.messages[key] = body
                return 200, {"ok": True, "channel": channel, "ts": key[1]}, {}
            ts = self._next_ts()
            self.messages[(channel, ts)] = body
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": body}, {}
        return 200, {"ok": True}, {}

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    async def _response(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        body = await self._body(request)
        headers = dict(request.headers)
        failure = self._take_failure("response")
        uses = self.response_uses.get(key, 0) + 1
        self.response_uses[key] = uses
        status, text, extra = 200, "ok", {}
        if failure is not None:
            status, text = failure.status, failure.error
            if failure.retry_after is not None:
                extra = {"Retry-After": f"{failure.retry_after:g}"}
        elif uses > 5:
            status, text = 404, "used_url"
        else:
            problem = message_problem(body)
            if problem:
                status, text = 400, problem
        await self._record(
            Call("response", request.path, headers, body, time.monotonic(), status, text)
        )
        return web.Response(status=status, text=text, headers=extra)

    # -- Socket Mode -------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        async with self._changed:
            self._changed.notify_all()
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "fake"},
                "connection_info": {"app_id": "A0FAKE"},
            }
        )
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            envelope = self.envelopes.get(str(data.get("envelope_id")))
            if envelope is not None and not envelope.acked.done():
                envelope.acked.set_result(data)
        async with self._changed:
            self._changed.notify_all()
        return ws

    async def wait_sockets_closed(self, within: float = 10.0) -> None:
        """Until the bot has closed every WebSocket it opened."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: all(s.closed for s in self.sockets))

    async def wait_socket(self, within: float = 10.0) -> web.WebSocketResponse:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: bool(self.sockets))
        return self.sockets[-1]

    async def push(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0) -> Envelope:
        """Send an envelope (``slash_commands`` or ``interactive``) over the newest socket."""
        socket = await self.wait_socket()
        envelope_id = f"env-{next(self._ids)}"
        envelope = Envelope(envelope_id, asyncio.get_running_loop().create_future())
        self.envelopes[envelope_id] = envelope
        await socket.send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind == "slash_commands",
                "retry_attempt": retry_attempt,
                "retry_reason": "",
            }
        )
        return envelope


# -- building signed inbound requests ----------------------------------------------------------

_triggers = itertools.count(1)


def new_trigger_id() -> str:
    return f"{next(_triggers)}.{int(time.time())}.fa4e"


def command_form(
    command: str,
    text: str = "",
    *,
    user_id: str = "U1",
    user_name: str = "ann",
    channel_id: str = "C1",
    channel_name: str = "ops",
    response_url: str = "https://hooks.slack.test/commands/1",
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
) -> dict[str, str]:
    """The form fields of a slash command, as Slack posts them."""
    return {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "team_domain": "fake",
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": "A0FAKE",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(),
    }


def block_actions_payload(
    action_id: str,
    value: str,
    *,
    user_id: str = "U1",
    user_name: str = "ann",
    channel_id: str = "C1",
    message_ts: str = "1700000000.000100",
    ephemeral: bool = False,
    response_url: str = "https://hooks.slack.test/actions/1",
    trigger_id: str | None = None,
    team_id: str = TEAM_ID,
    message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``block_actions`` payload for one button click."""
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": "A0FAKE",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": ephemeral,
        },
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": team_id, "domain": "fake"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "ops"},
        "message": message or {"type": "message", "ts": message_ts, "text": "", "blocks": []},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": "b1",
                "text": {"type": "plain_text", "text": "button", "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def encode_form(fields: dict[str, str]) -> str:
    return urlencode(fields)


def encode_payload(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def signed_headers(
    body: str | bytes,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: str | int | None = None,
) -> dict[str, str]:
    """The two signature headers Slack adds, and its content type."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    raw = body.decode() if isinstance(body, bytes) else body
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=raw)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def blocks_of(calls: list[Call]) -> Iterator[dict[str, Any]]:
    for call in calls:
        yield from call.blocks
