"""A loopback fake of the Telegram Bot API: a real HTTP server on 127.0.0.1, in the test's loop.

It answers the methods the bot uses the way Telegram does (platforms.md section 2), including the
failures the adapter must survive:

- ``getMe``; ``getUpdates`` with long polling (``timeout``), queued updates and offset
  confirmation, 409 ``Conflict`` when a second poll overlaps the first or a webhook is set;
- ``sendMessage`` / ``editMessageText`` with the HTML check of the real API: unknown tags, stray
  ``<``/``>``/``&`` and unbalanced tags give 400 "can't parse entities"; more than 4096 characters
  after entity parsing gives 400 "message is too long"; editing to identical content gives 400
  "message is not modified"; ``callback_data`` over 64 bytes gives 400 ``BUTTON_DATA_INVALID``;
- 403 "bot can't initiate conversation with a user" for users who never started a private chat;
- ``answerCallbackQuery`` (each query once; text at most 200 characters), ``setMyCommands``,
  ``setWebhook``, ``deleteWebhook``, ``getWebhookInfo``;
- any answer on demand with :meth:`FakeTelegram.fail`, e.g. 429 with ``parameters.retry_after``.

Every call is recorded in :attr:`FakeTelegram.calls` with the path prefix it came through
(``via``), so two bot processes pointed at ``{url}/a/bot`` and ``{url}/b/bot`` can be told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from erm.sandbox.server import serve_app

TOKEN = "424242:AAH-fake-telegram-token-for-tests_0123"
BOT_ID = 424242
BOT_USERNAME = "erm_test_bot"
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
MAX_CALLBACK_ANSWER = 200

_PATH = re.compile(r"^(?P<via>.*?)/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[A-Za-z-]+=\"[^\"<>]*\")*)\s*>")
_ATTR = re.compile(r"([A-Za-z-]+)=\"([^\"]*)\"")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ALLOWED_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "tg-emoji", "code", "pre", "blockquote",
}  # fmt: skip
_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]+)?")


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def parse_html(text: str) -> str:
    """The visible text of a message in Telegram's HTML parse mode, or ``ApiError(400)``."""
    visible: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "<":
            match = _TAG.match(text, i)
            if match is None:
                raise _entities_error(f"Unexpected character '<' at byte offset {_offset(text, i)}")
            closing, tag = match.group(1) == "/", match.group(2).lower()
            if tag not in _ALLOWED_TAGS:
                what = "end" if closing else "start"
                raise _entities_error(
                    f'Unsupported {what} tag "{tag}" at byte offset {_offset(text, i)}'
                )
            if closing:
                if not stack or stack[-1] != tag:
                    raise _entities_error(f"Unexpected end tag at byte offset {_offset(text, i)}")
                stack.pop()
            else:
                attrs = dict(_ATTR.findall(match.group(3)))
                if tag == "a" and "href" not in attrs:
                    raise _entities_error("Can't find href attribute of the a tag")
                if tag == "span" and attrs.get("class") != "tg-spoiler":
                    raise _entities_error('Tag "span" must have class "tg-spoiler"')
                stack.append(tag)
            i = match.end()
        elif char == "&":
            match = _ENTITY.match(text, i)
            if match is None:
                raise _entities_error(f"Unsupported HTML entity at byte offset {_offset(text, i)}")
            name = match.group(1)
            if name in _NAMED:
                visible.append(_NAMED[name])
            else:
                number = int(name[2:], 16) if name[1:2] in "xX" else int(name[1:])
                visible.append(chr(number))
            i = match.end()
        elif char == ">":
            raise _entities_error(f"Unexpected character '>' at byte offset {_offset(text, i)}")
        else:
            visible.append(char)
            i += 1
    if stack:
        raise _entities_error(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(visible)


def utf16_length(text: str) -> int:
    """Telegram counts message length in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _offset(text: str, index: int) -> int:
    return len(text[:index].encode())


def _entities_error(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: can't parse entities: {detail}")


@dataclass
class Call:
    """One request the fake received."""

    method: str
    params: dict[str, Any]
    via: str
    at: float
    status: int = 200
    description: str = ""


@dataclass
class SentMessage:
    """A message the bot sent (and possibly edited since)."""

    chat_id: int
    message_id: int
    text: str  # as sent (HTML)
    plain: str  # visible text
    reply_markup: dict[str, Any] | None
    reply_to: int | None
    date: int
    edits: int = 0

    @property
    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    def button(self, label: str) -> dict[str, Any]:
        """The inline button whose text contains ``label`` (case-insensitive)."""
        for button in self.buttons:
            if label.lower() in button["text"].lower():
                return button
        raise LookupError(f"no button {label!r} in {[b['text'] for b in self.buttons]}")


@dataclass
class Failure:
    method: str
    status: int
    description: str
    parameters: dict[str, Any] | None
    times: int


@dataclass
class User:
    """A Telegram user as the fake describes it in updates."""

    id: int
    first_name: str
    username: str | None = None
    last_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        if self.last_name:
            data["last_name"] = self.last_name
        return data


@dataclass
class Group:
    id: int  # negative, as Telegram's group ids are
    title: str
    type: str = "supergroup"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "title": self.title}


@dataclass
class _Poll:
    future: asyncio.Future[None]
    via: str


@dataclass
class FakeTelegram:
    """The fake Bot API; use ``async with FakeTelegram() as fake`` (serves on a free port)."""

    token: str = TOKEN
    bot_id: int = BOT_ID
    username: str = BOT_USERNAME
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    messages: list[SentMessage] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    webhook_url: str = ""
    webhook_secret: str | None = None
    conflicts: int = 0
    started: set[int] = field(default_factory=set)  # users who started a private chat
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _failures: list[Failure] = field(default_factory=list)
    _queries: dict[str, bool] = field(default_factory=dict)  # callback query id -> answered
    _poll: _Poll | None = None
    _new_update: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _query_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: contextlib.AbstractAsyncContextManager[str] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST"])])
        self._server = serve_app(app)
        self.url = await self._server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        self._new_update.set()  # wake long polls so the server can stop at once
        assert self._server is not None
        await self._server.__aexit__(None, None, None)

    @property
    def api_url(self) -> str:
        """The Bot API base URL to configure (``TELEGRAM_API_URL``)."""
        return f"{self.url}/bot"

    def api_url_via(self, name: str) -> str:
        """A base URL whose calls are recorded with ``via == "/name"``."""
        return f"{self.url}/{name}/bot"

    @property
    def bot(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "ERM test bot",
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    # -- what users do -------------------------------------------------------------------------

    def start_private(self, user: User) -> None:
        """``user`` has opened a private chat with the bot (pressed Start)."""
        self.started.add(user.id)

    def message_update(
        self,
        user: User,
        text: str,
        *,
        group: Group | None = None,
        date: float | None = None,
        update_id: int | None = None,
    ) -> dict[str, Any]:
        """A message update (not queued): for webhook tests, or to queue it yourself.

        A message in a private chat means the user has started the bot.
        """
        if group is None:
            self.start_private(user)
        chat = group.to_dict() if group else {"id": user.id, "type": "private", **_names(user)}
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(date if date is not None else time.time()),
            "chat": chat,
            "from": user.to_dict(),
            "text": text,
        }
        command = _COMMAND.match(text)
        if command:
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": utf16_length(command.group(0))}
            ]
        return {"update_id": update_id or next(self._update_ids), "message": message}

    def message(
        self,
        user: User,
        text: str,
        *,
        group: Group | None = None,
        date: float | None = None,
    ) -> dict[str, Any]:
        """Queue a message from ``user`` (private chat unless ``group``); returns the update."""
        update = self.message_update(user, text, group=group, date=date)
        self.queue(update)
        return update

    def callback_update(
        self, user: User, message: SentMessage, data: str, *, update_id: int | None = None
    ) -> dict[str, Any]:
        """A button press on ``message`` (not queued)."""
        query_id = f"q{next(self._query_ids)}"
        self._queries[query_id] = False
        chat = (
            {"id": message.chat_id, "type": "private", **_names(user)}
            if message.chat_id > 0
            else {"id": message.chat_id, "type": "supergroup", "title": "group"}
        )
        return {
            "update_id": update_id or next(self._update_ids),
            "callback_query": {
                "id": query_id,
                "from": user.to_dict(),
                "chat_instance": f"ci{message.chat_id}",
                "data": data,
                "message": {
                    "message_id": message.message_id,
                    "date": message.date,
                    "chat": chat,
                    "from": self.bot,
                    "text": message.plain,
                },
            },
        }

    def press(self, user: User, message: SentMessage, label: str) -> dict[str, Any]:
        """Queue a press of the button labelled ``label`` on ``message``; returns the update."""
        update = self.callback_update(user, message, message.button(label)["callback_data"])
        self.queue(update)
        return update

    def queue(self, update: dict[str, Any]) -> None:
        """Queue an update for ``getUpdates`` (again, if it was delivered before)."""
        self._pending.append(update)
        self._pending.sort(key=lambda u: u["update_id"])
        self._new_update.set()

    # -- failures ------------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        status: int = 429,
        description: str | None = None,
        retry_after: int | None = 1,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error (default: 429)."""
        parameters = {"retry_after": retry_after} if status == 429 and retry_after else None
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after}",
                403: "Forbidden: bot was blocked by the user",
                400: "Bad Request",
            }.get(status, "Internal Server Error")
        self._failures.append(Failure(method, status, description, parameters, times))

    # -- inspection ----------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def sent(self, chat_id: int | None = None) -> list[SentMessage]:
        """Messages the bot sent (to ``chat_id``), oldest first."""
        return [m for m in self.messages if chat_id is None or m.chat_id == chat_id]

    def answers(self) -> list[Call]:
        """Successful ``answerCallbackQuery`` calls."""
        return [c for c in self.calls_to("answerCallbackQuery") if c.status == 200]

    def unanswered_queries(self) -> list[str]:
        return [q for q, answered in self._queries.items() if not answered]

    @property
    def pending(self) -> list[dict[str, Any]]:
        """Updates not confirmed by a later ``getUpdates`` offset."""
        return list(self._pending)

    async def wait_until(
        self, condition: Callable[[], bool], within: float = 10.0, what: str = "condition"
    ) -> None:
        """Wait (bounded) until ``condition()`` holds; re-checked after every call."""
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                if condition():
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._changed.wait()
        if not condition():  # pragma: no cover - the timeout raises first
            raise AssertionError(f"timed out waiting for {what}")

    async def send(
        self,
        user: User,
        text: str,
        *,
        group: Group | None = None,
        date: float | None = None,
        replies: int = 1,
        within: float = 10.0,
    ) -> list[SentMessage]:
        """Queue a message and wait (bounded) for ``replies`` new messages from the bot."""
        before = len(self.messages)
        self.message(user, text, group=group, date=date)
        await self.wait_until(
            lambda: len(self.messages) >= before + replies, within, f"{replies} replies to {text!r}"
        )
        return self.messages[before:]

    async def wait_for_messages(
        self, count: int, chat_id: int | None = None, within: float = 10.0
    ) -> list[SentMessage]:
        await self.wait_until(lambda: len(self.sent(chat_id)) >= count, within, f"{count} messages")
        return self.sent(chat_id)

    # -- the HTTP side -------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        match = _PATH.match(request.url.path)
        if match is None:
            return _error(ApiError(404, "Not Found"))
        via, token, method = match.group("via", "token", "method")
        params = await _params(request)
        call = Call(method, params, via, time.monotonic())
        self.calls.append(call)
        try:
            if token != self.token:
                raise ApiError(401, "Unauthorized")
            self._inject(method)
            handler = getattr(self, f"_api_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found")
            if method == "getUpdates":
                result = await self._api_getUpdates(params, via, request)
            else:
                result = await handler(params, via)
        except ApiError as exc:
            call.status, call.description = exc.status, exc.description
            self._changed.set()
            return _error(exc)
        self._changed.set()
        return JSONResponse({"ok": True, "result": result})

    def _inject(self, method: str) -> None:
        for failure in self._failures:
            if failure.method == method and failure.times > 0:
                failure.times -= 1
                raise ApiError(failure.status, failure.description, failure.parameters)

    async def _api_getMe(self, params: dict[str, Any], via: str) -> Any:
        return self.bot

    async def _api_getUpdates(self, params: dict[str, Any], via: str, request: Request) -> Any:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        if self._poll is not None and not self._poll.future.done():
            # Like Telegram: the newer request wins, the older one is answered 409. Only two
            # pollers (different ``via``) count as a conflict: one process replacing its own
            # abandoned poll (stopping, then confirming offsets) is what PTB does on stop.
            if self._poll.via != via:
                self.conflicts += 1
            self._poll.future.set_exception(
                ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only "
                    "one bot instance is running",
                )
            )
        offset = int(params.get("offset") or 0)
        limit = max(1, min(100, int(params.get("limit") or 100)))
        timeout = float(params.get("timeout") or 0)
        if offset > 0:
            self._pending = [u for u in self._pending if u["update_id"] >= offset]
        poll = _Poll(asyncio.get_running_loop().create_future(), via)
        self._poll = poll
        deadline = time.monotonic() + timeout
        while not self._pending and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if await request.is_disconnected():
                break  # the poller went away (stopped): its poll is over, no conflict
            self._new_update.clear()
            waiter: asyncio.Future[Any] = asyncio.ensure_future(self._new_update.wait())
            waiting: set[asyncio.Future[Any]] = {waiter, poll.future}
            done, _ = await asyncio.wait(
                waiting, timeout=min(remaining, 0.05), return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            if poll.future in done:
                poll.future.result()  # raises the 409
        if poll.future.done():
            poll.future.result()
        else:
            poll.future.set_result(None)
        return self._pending[:limit]

    async def _api_sendMessage(self, params: dict[str, Any], via: str) -> Any:
        chat_id = int(params["chat_id"])
        text, plain = _checked_text(params)
        markup = _checked_markup(params.get("reply_markup"))
        if chat_id > 0 and chat_id not in self.started:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        reply = params.get("reply_parameters")
        reply_to = (
            int(reply["message_id"])
            if isinstance(reply, dict)
            else (int(params["reply_to_message_id"]) if "reply_to_message_id" in params else None)
        )
        message = SentMessage(
            chat_id, next(self._message_ids), text, plain, markup, reply_to, int(time.time())
        )
        self.messages.append(message)
        return self._message_dict(message)

    async def _api_editMessageText(self, params: dict[str, Any], via: str) -> Any:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        text, plain = _checked_text(params)
        markup = _checked_markup(params.get("reply_markup"))
        for message in self.messages:
            if message.chat_id == chat_id and message.message_id == message_id:
                break
        else:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message.plain == plain and message.text == text and message.reply_markup == markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        message.text, message.plain, message.reply_markup = text, plain, markup
        message.edits += 1
        return self._message_dict(message)

    async def _api_answerCallbackQuery(self, params: dict[str, Any], via: str) -> Any:
        query_id = str(params["callback_query_id"])
        if self._queries.get(query_id) is not False:
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        if len(str(params.get("text") or "")) > MAX_CALLBACK_ANSWER:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self._queries[query_id] = True
        return True

    async def _api_setMyCommands(self, params: dict[str, Any], via: str) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: commands must be a list of at most 100")
        for entry in commands:
            name, description = entry.get("command", ""), entry.get("description", "")
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands = commands
        return True

    async def _api_setWebhook(self, params: dict[str, Any], via: str) -> Any:
        url = str(params.get("url") or "")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        if url and not url.startswith("https://"):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        self.webhook_url, self.webhook_secret = url, (str(secret) if secret else None)
        if self._poll is not None and not self._poll.future.done():
            self._poll.future.set_exception(
                ApiError(409, "Conflict: terminated by setWebhook request")
            )
        return True

    async def _api_deleteWebhook(self, params: dict[str, Any], via: str) -> Any:
        if _truthy(params.get("drop_pending_updates")):
            self._pending.clear()
        self.webhook_url, self.webhook_secret = "", None
        return True

    async def _api_getWebhookInfo(self, params: dict[str, Any], via: str) -> Any:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }

    async def _api_sendChatAction(self, params: dict[str, Any], via: str) -> Any:
        chat_id = int(params["chat_id"])
        if chat_id > 0 and chat_id not in self.started:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        return True

    def _message_dict(self, message: SentMessage) -> dict[str, Any]:
        chat: dict[str, Any] = (
            {"id": message.chat_id, "type": "private", "first_name": "user"}
            if message.chat_id > 0
            else {"id": message.chat_id, "type": "supergroup", "title": "group"}
        )
        data: dict[str, Any] = {
            "message_id": message.message_id,
            "date": message.date,
            "chat": chat,
            "from": self.bot,
            "text": message.plain,
        }
        if message.reply_markup:
            data["reply_markup"] = message.reply_markup
        return data


def _names(user: User) -> dict[str, Any]:
    names: dict[str, Any] = {"first_name": user.first_name}
    if user.username:
        names["username"] = user.username
    return names


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in {"true", "1"}


def _checked_text(params: dict[str, Any]) -> tuple[str, str]:
    text = str(params.get("text") or "")
    if not text.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    mode = str(params.get("parse_mode") or "")
    if mode.upper() == "HTML":
        plain = parse_html(text)
    elif mode:
        raise ApiError(400, f"Bad Request: unsupported parse_mode {mode!r} in this fake")
    else:
        plain = text
    if utf16_length(plain) > MAX_TEXT:
        raise ApiError(400, "Bad Request: message is too long")
    if not plain.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    return text, plain


def _checked_markup(markup: Any) -> dict[str, Any] | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup.get("inline_keyboard") or []:
        for button in row:
            if not str(button.get("text") or "").strip():
                raise ApiError(
                    400, "Bad Request: text buttons are unallowed in the inline keyboard"
                )
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    return markup


async def _params(request: Request) -> dict[str, Any]:
    """Request parameters: query string, then form or JSON body; JSON-looking values decoded."""
    params: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    if "application/json" in content_type:
        body = await request.body()
        if body:
            params.update(json.loads(body))
        return params
    if request.method == "POST":
        # x-www-form-urlencoded, as PTB sends it (nested objects are JSON strings inside).
        form = (await request.body()).decode()
        for key, value in urllib.parse.parse_qsl(form, keep_blank_values=True):
            params[key] = _maybe_json(value)
    return params


def _maybe_json(value: str) -> Any:
    if value[:1] in "[{":
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def _error(exc: ApiError) -> JSONResponse:
    body: dict[str, Any] = {
        "ok": False,
        "error_code": exc.status,
        "description": exc.description,
    }
    if exc.parameters:
        body["parameters"] = exc.parameters
    return JSONResponse(body, status_code=exc.status)


@contextlib.asynccontextmanager
async def fake_telegram(**kwargs: Any) -> AsyncIterator[FakeTelegram]:
    """``async with fake_telegram() as fake``: the fake, serving on a free loopback port."""
    fake = FakeTelegram(**kwargs)
    async with fake:
        yield fake
