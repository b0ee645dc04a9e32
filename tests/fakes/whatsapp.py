"""A loopback fake of the WhatsApp Cloud (Graph) API: a real HTTP server on 127.0.0.1, in the test's
loop, plus builders for the webhook notifications Meta posts to the bot (platforms.md section 2b).

The Graph side, served under any version prefix (``/v23.0/...``):

- ``POST /v*/{phone_number_id}/messages`` with ``Authorization: Bearer <token>``: ``text``,
  ``interactive`` (``button`` reply buttons, ``list``) and ``template`` messages, and the
  ``status: read`` call (mark as read, typing indicator). Answers like Graph:
  ``{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}], "messages": [{"id"}]}``.
- ``GET /v*/{phone_number_id}`` (``verified_name``, ``display_phone_number``, ``id``...), honouring
  ``fields=``, as ``doctor`` asks it.
- Graph-shaped errors (``{"error": {"message", "type", "code", "error_data": {"details"},
  "fbtrace_id"}}``): a wrong or missing token is 401 code 190; a bad parameter 400 code 100
  (text body over 4096) or 131009 (the interactive limits); a free-form message outside the 24-hour
  customer service window 400 code 131047; an unknown template 404 code 132001; a template with the
  wrong number of parameters 400 code 132000; rate limits on demand with :meth:`fail_next`.

Simplifications, on purpose: the real Cloud API accepts an out-of-window message and reports
131047 later, in a ``failed`` status webhook; the fake refuses it at once (build that status with
:meth:`FakeWhatsApp.status` when a test needs the asynchronous form). Media and other message
types are refused with code 100 ("not supported by the fake") so that nothing goes untested
silently.

The webhook side: :meth:`FakeWhatsApp.user_message`, :meth:`~FakeWhatsApp.button_reply`,
:meth:`~FakeWhatsApp.list_reply` and :meth:`~FakeWhatsApp.status` build notifications exactly as
Meta sends them; :meth:`~FakeWhatsApp.deliver` posts one, signed (``X-Hub-Signature-256``), and
:meth:`~FakeWhatsApp.verify` performs the subscription handshake.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from erm.sandbox.server import serve_app

TOKEN = "EAAGfakeWhatsAppTokenForTests0123456789"
PHONE_NUMBER_ID = "109876543210987"
WABA_ID = "102290129340398"
BUSINESS_NUMBER = "15550100001"
DISPLAY_NUMBER = "+1 555-010-0001"
VERIFIED_NAME = "ERM Test Bot"
APP_SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
VERIFY_TOKEN = "erm-whatsapp-verify-token"

GRAPH_VERSION = "26.0"  # pywa 4.5's default; any ``v<N>`` prefix is served
WINDOW_SECONDS = 24 * 3600
WEBHOOK_TIMEOUT = 10.0  # seconds deliver() and verify() wait for the bot's answer
MAX_TEXT = 4096
MAX_INTERACTIVE_BODY = 1024
MAX_HEADER = 60
MAX_FOOTER = 60
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_ID = 256
MAX_LIST_BUTTON = 20
MAX_ROWS = 10
MAX_SECTIONS = 10
MAX_SECTION_TITLE = 24
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
MAX_ROW_ID = 200

# Codes, titles and HTTP statuses as Meta's "Cloud API error codes" table lists them.
INVALID_TOKEN = 190
INVALID_PARAMETER = 100
INVALID_VALUE = 131009
RATE_LIMIT = 130429
PAIR_RATE_LIMIT = 131056
REENGAGEMENT = 131047
TEMPLATE_PARAMS = 132000
TEMPLATE_MISSING = 132001
_ERRORS: dict[int, tuple[str, int, str]] = {
    0: ("AuthException", 401, "We were unable to authenticate the app user."),
    4: ("Application request limit reached", 429, "The app has reached its API call rate limit."),
    80007: (
        "Rate limit issues",
        400,
        "The WhatsApp Business Account has reached its rate limit.",
    ),
    RATE_LIMIT: (
        "Rate limit hit",
        400,
        "Message failed to send because there were too many messages sent from this phone "
        "number in a short period of time",
    ),
    PAIR_RATE_LIMIT: (
        "(Business Account, Consumer Account) pair rate limit hit",
        400,
        "Message failed to send because there were too many messages sent from this phone "
        "number to the same phone number in a short period of time",
    ),
    131026: ("Message undeliverable", 400, "Message Undeliverable."),
    131000: ("Something went wrong", 500, "Message failed to send due to an unknown error."),
    REENGAGEMENT: (
        "Re-engagement message",
        400,
        "Message failed to send because more than 24 hours have passed since the customer last "
        "replied to this number.",
    ),
    TEMPLATE_PARAMS: (
        "Number of parameters does not match the expected number of params",
        400,
        "body: number of localizable_params does not match the expected number of params",
    ),
    TEMPLATE_MISSING: (
        "Template name does not exist in the translation",
        404,
        "template name does not exist in the translation",
    ),
}

# Country prefixes of phone numbers -> the ISO code a BSUID starts with (the rest: "US").
_COUNTRIES = (("254", "KE"), ("255", "TZ"), ("256", "UG"), ("234", "NG"), ("44", "GB"))
_PATH = re.compile(r"^(?P<via>.*?)/v(?P<version>[0-9]+(?:\.[0-9]+)?)/(?P<rest>.*)$")


class GraphError(Exception):
    """An error answer of the Graph API."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        details: str | None = None,
        error_type: str = "OAuthException",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.error_type = error_type

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "code": self.code,
        }
        if self.details is not None:
            error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
        return {"error": error}


def graph_error(code: int, details: str | None = None, *, status: int | None = None) -> GraphError:
    """The error Graph answers for ``code`` (message ``(#code) Title``, as Meta words it)."""
    title, default_status, default_details = _ERRORS.get(code, ("Error", 400, "Error"))
    return GraphError(
        status or default_status, code, f"(#{code}) {title}", details or default_details
    )


def _invalid(details: str) -> GraphError:
    return GraphError(400, INVALID_VALUE, "(#131009) Parameter value is not valid", details)


def _bad_parameter(details: str) -> GraphError:
    return GraphError(400, INVALID_PARAMETER, "(#100) Invalid parameter", details)


def _bad_token() -> GraphError:
    return GraphError(401, INVALID_TOKEN, "Invalid OAuth access token - Cannot parse access token")


@dataclass
class Call:
    """One request the fake received."""

    method: str  # HTTP method
    path: str  # without the version prefix, e.g. "/109876543210987/messages"
    json: Any
    status: int = 200
    code: int | None = None  # the Graph error code, if any
    version: str = ""
    at: float = 0.0


@dataclass
class SentMessage:
    """A message the fake accepted (delivered to ``to``)."""

    to: str  # wa_id
    id: str  # wamid
    type: str  # "text" | "interactive" | "template"
    text: str  # text body, interactive body, or "template_name(param, ...)"
    payload: dict[str, Any]  # the request body as sent
    at: float
    interactive_type: str | None = None  # "button" | "list"
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (id, title)
    rows: list[tuple[str, str, str | None]] = field(default_factory=list)  # (id, title, descr.)
    list_button: str | None = None  # the list menu's label
    header: str | None = None
    footer: str | None = None
    template: str | None = None
    params: list[str] = field(default_factory=list)  # template parameters, in order
    language: str | None = None
    context_id: str | None = None  # the message replied to, if any

    def button(self, label: str) -> tuple[str, str]:
        """The (id, title) of the reply button or list row whose title contains ``label``."""
        for choice in [*self.buttons, *((row[0], row[1]) for row in self.rows)]:
            if label.lower() in choice[1].lower():
                return choice
        raise LookupError(f"no button {label!r} in {self.buttons or self.rows}")


@dataclass
class Failure:
    code: int
    status: int | None
    details: str | None
    times: int
    to: str | None


@dataclass
class FakeWhatsApp:
    """The fake Graph API; use ``async with FakeWhatsApp() as fake`` (serves on a free port).

    ``fake.url`` is the base to configure as ``WHATSAPP_API_URL`` (the version goes after it).
    ``fake.templates`` maps approved template names to their number of parameters.
    ``fake.clock`` (seconds since the epoch) decides the 24-hour window; replace it to move time.
    Building an inbound message (:meth:`user_message`, a reply) opens the window at once, whether
    or not it is ever delivered: the user wrote, and Meta would know.
    """

    token: str = TOKEN
    phone_number_id: str = PHONE_NUMBER_ID
    app_secret: str = APP_SECRET
    verify_token: str = VERIFY_TOKEN
    business_number: str = BUSINESS_NUMBER
    display_phone_number: str = DISPLAY_NUMBER
    verified_name: str = VERIFIED_NAME
    waba_id: str = WABA_ID
    clock: Callable[[], float] = time.time
    bsuids: bool = True  # add business-scoped user ids (``user_id``) to contacts, as since 2026
    templates: dict[str, int] = field(default_factory=dict)
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    messages: list[SentMessage] = field(default_factory=list)
    read: list[str] = field(default_factory=list)  # message ids marked as read, in order
    last_inbound: dict[str, float] = field(default_factory=dict)  # wa_id -> when they last wrote
    last_challenge: str | None = None  # what the last verify() sent as hub.challenge
    _failures: list[Failure] = field(default_factory=list)
    _bsuid_owners: dict[str, str] = field(default_factory=dict)
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: contextlib.AbstractAsyncContextManager[str] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeWhatsApp:
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST"])])
        self._server = serve_app(app)
        self.url = await self._server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.__aexit__(None, None, None)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, **kwargs: Any) -> AsyncIterator[FakeWhatsApp]:
        """``async with FakeWhatsApp.running() as fake``: same as ``async with FakeWhatsApp()``."""
        async with cls(**kwargs) as fake:
            yield fake

    def api_url(self, version: str = GRAPH_VERSION) -> str:
        """The versioned Graph base URL, for clients that want it whole."""
        return f"{self.url}/v{version}"

    # -- what tests set up ---------------------------------------------------------------------

    def add_template(self, name: str, params: int = 0) -> None:
        """Register an approved template ``name`` taking ``params`` parameters."""
        self.templates[name] = params

    def open_window(self, wa_id: str, at: float | None = None) -> None:
        """``wa_id`` wrote to the business at ``at`` (default: now by ``clock``)."""
        when = self.clock() if at is None else at
        self.last_inbound[wa_id] = max(when, self.last_inbound.get(wa_id, when))

    def in_window(self, wa_id: str) -> bool:
        """Whether free-form messages may go to ``wa_id`` now."""
        last = self.last_inbound.get(wa_id)
        return last is not None and self.clock() - last < WINDOW_SECONDS

    def fail_next(
        self,
        code: int = RATE_LIMIT,
        *,
        times: int = 1,
        status: int | None = None,
        details: str | None = None,
        to: str | None = None,
    ) -> None:
        """Answer the next ``times`` message sends (to ``to``, or anyone) with Graph error ``code``.

        130429 ("Rate limit hit") and 131056 ("(Business Account, Consumer Account) pair rate
        limit hit") come with HTTP 400, as Meta's error table lists them (code 4 would be 429).
        Meta documents no ``Retry-After`` header nor retry-after field for these: the only advice
        is ``error_data.details`` ("try again later"), so the fake sends none either and clients
        must choose their own backoff. ``status`` overrides the HTTP status. Mark-as-read calls
        are not counted.
        """
        self._failures.append(Failure(code, status, details, times, to))

    # -- inspection ----------------------------------------------------------------------------

    def sent(self, wa_id: str | None = None) -> list[SentMessage]:
        """Messages delivered (to ``wa_id``), oldest first."""
        return [m for m in self.messages if wa_id is None or m.to == wa_id]

    def calls_to(self, method: str, path_suffix: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.endswith(path_suffix)]

    def errors(self) -> list[Call]:
        """Calls answered with an error."""
        return [c for c in self.calls if c.status >= 400]

    # -- webhook payloads ----------------------------------------------------------------------

    def new_message_id(self, wa_id: str = "") -> str:
        """A fresh id shaped like Meta's (``wamid.`` and base64)."""
        raw = f"{wa_id}:{next(self._serial)}:{secrets.token_hex(8)}".encode()
        return "wamid." + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def user_message(
        self,
        wa_id: str,
        text: str,
        *,
        name: str = "Test User",
        message_id: str | None = None,
        timestamp: float | None = None,
    ) -> dict[str, Any]:
        """A text message from ``wa_id``; opens the 24-hour window from ``timestamp`` or now."""
        message = self._inbound(wa_id, message_id, timestamp)
        message.update({"type": "text", "text": {"body": text}})
        return self._messages_payload(wa_id, name, message)

    def button_reply(
        self,
        wa_id: str,
        button_id: str,
        title: str,
        *,
        context_id: str,
        name: str = "Test User",
        message_id: str | None = None,
        timestamp: float | None = None,
    ) -> dict[str, Any]:
        """A tap on reply button ``button_id`` of the bot's message ``context_id``."""
        message = self._inbound(wa_id, message_id, timestamp)
        message["context"] = {"from": self.business_number, "id": context_id}
        message.update(
            {
                "type": "interactive",
                "interactive": {
                    "type": "button_reply",
                    "button_reply": {"id": button_id, "title": title},
                },
            }
        )
        return self._messages_payload(wa_id, name, message)

    def list_reply(
        self,
        wa_id: str,
        row_id: str,
        title: str,
        *,
        context_id: str,
        description: str | None = None,
        name: str = "Test User",
        message_id: str | None = None,
        timestamp: float | None = None,
    ) -> dict[str, Any]:
        """A choice of row ``row_id`` in the list menu of the bot's message ``context_id``."""
        message = self._inbound(wa_id, message_id, timestamp)
        message["context"] = {"from": self.business_number, "id": context_id}
        reply: dict[str, Any] = {"id": row_id, "title": title}
        if description is not None:
            reply["description"] = description
        message.update(
            {"type": "interactive", "interactive": {"type": "list_reply", "list_reply": reply}}
        )
        return self._messages_payload(wa_id, name, message)

    def reply_to(self, sent: SentMessage, label: str, *, name: str = "Test User") -> dict[str, Any]:
        """The tap on the button (or list row) titled ``label`` of the delivered ``sent``."""
        choice_id, title = sent.button(label)
        if any(choice_id == row[0] for row in sent.rows):
            description = next(row[2] for row in sent.rows if row[0] == choice_id)
            return self.list_reply(
                sent.to, choice_id, title, context_id=sent.id, description=description, name=name
            )
        return self.button_reply(sent.to, choice_id, title, context_id=sent.id, name=name)

    def status(
        self,
        message_id: str,
        wa_id: str,
        status: str,
        *,
        errors: Sequence[int | dict[str, Any]] | None = None,
        timestamp: float | None = None,
    ) -> dict[str, Any]:
        """A status notification (``sent``/``delivered``/``read``/``failed``) for ``message_id``.

        ``errors`` are Graph codes (expanded like Meta's webhooks do) or whole error objects.
        """
        entry: dict[str, Any] = {
            "id": message_id,
            "status": status,
            "timestamp": str(int(self.clock() if timestamp is None else timestamp)),
            "recipient_id": wa_id,
        }
        if status in {"sent", "delivered"}:
            entry["conversation"] = {
                "id": secrets.token_hex(16),
                "expiration_timestamp": str(int(self.clock()) + WINDOW_SECONDS),
                "origin": {"type": "service"},
            }
            entry["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
        if errors:
            entry["errors"] = [_webhook_error(e) for e in errors]
        # Since the 2026 username rollout status notifications carry the recipient in contacts[].
        content: dict[str, Any] = {"statuses": [entry]}
        if self.bsuids:
            content = {"contacts": [self._contact(wa_id, None)], **content}
        return self._payload(content)

    def body(self, payload: dict[str, Any]) -> bytes:
        """The raw bytes Meta would post (compact JSON, non-ASCII escaped as Meta does)."""
        return json.dumps(payload, separators=(",", ":")).encode()

    def sign(self, body: bytes) -> str:
        """The ``X-Hub-Signature-256`` value of ``body``: ``sha256=`` HMAC-SHA256(app_secret)."""
        digest = hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
        return f"sha256={digest}"

    async def deliver(
        self,
        webhook_url: str,
        payload: dict[str, Any] | bytes,
        *,
        signature: bool | str = True,
    ) -> httpx.Response:
        """POST a notification to the bot's webhook as Meta does; returns the bot's answer.

        ``signature``: True signs with the app secret, False sends no header, a string is sent as
        the header verbatim (a forged or stale signature).
        """
        body = payload if isinstance(payload, bytes) else self.body(payload)
        headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}
        if signature is True:
            headers["X-Hub-Signature-256"] = self.sign(body)
        elif isinstance(signature, str):
            headers["X-Hub-Signature-256"] = signature
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT, trust_env=False) as client:
            return await client.post(webhook_url, content=body, headers=headers)

    async def verify(self, webhook_url: str, token: str | None = None) -> httpx.Response:
        """Meta's subscription handshake: GET with ``hub.mode=subscribe``, the verify token
        (``token`` or the fake's) and a random numeric ``hub.challenge``, kept in
        :attr:`last_challenge`. A bot that passes answers 200 with exactly the challenge."""
        self.last_challenge = str(secrets.randbelow(10**9) + 10**9)
        params = {
            "hub.mode": "subscribe",
            "hub.verify_token": self.verify_token if token is None else token,
            "hub.challenge": self.last_challenge,
        }
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT, trust_env=False) as client:
            return await client.get(webhook_url, params=params)

    def _inbound(
        self, wa_id: str, message_id: str | None, timestamp: float | None
    ) -> dict[str, Any]:
        when = self.clock() if timestamp is None else timestamp
        self.open_window(wa_id, when)
        return {
            "from": wa_id,
            "id": message_id or self.new_message_id(wa_id),
            "timestamp": str(int(when)),
        }

    def bsuid(self, wa_id: str) -> str:
        """The business-scoped user id Meta would give ``wa_id`` (stable for the fake)."""
        country = next((c for p, c in _COUNTRIES if wa_id.startswith(p)), "US")
        digest = int(hashlib.sha256(f"{self.waba_id}:{wa_id}".encode()).hexdigest()[:15], 16)
        bsuid = f"{country}.{digest:020d}"
        self._bsuid_owners[bsuid] = wa_id
        return bsuid

    def _contact(self, wa_id: str, name: str | None) -> dict[str, Any]:
        contact: dict[str, Any] = {}
        if name is not None:
            contact["profile"] = {"name": name}
        contact["wa_id"] = wa_id
        if self.bsuids:
            contact["user_id"] = self.bsuid(wa_id)
        return contact

    def _messages_payload(self, wa_id: str, name: str, message: dict[str, Any]) -> dict[str, Any]:
        return self._payload({"contacts": [self._contact(wa_id, name)], "messages": [message]})

    def _payload(self, content: dict[str, Any]) -> dict[str, Any]:
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": self.business_number,
                "phone_number_id": self.phone_number_id,
            },
            **content,
        }
        return {
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "changes": [{"value": value, "field": "messages"}]}],
        }

    # -- the HTTP side -------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        match = _PATH.match(request.url.path)
        path = match.group("rest") if match else request.url.path
        call = Call(request.method, f"/{path.lstrip('/')}", None, at=self.clock())
        call.version = match.group("version") if match else ""
        self.calls.append(call)
        try:
            if request.method == "POST":
                call.json = await _json(request)
            if not self._authorized(request):
                raise _bad_token()
            if match is None:
                raise _bad_parameter("Unknown path components: the Graph API version is missing")
            result = await self._route(request.method, path, call.json, request)
        except GraphError as exc:
            call.status, call.code = exc.status, exc.code
            return JSONResponse(exc.body(), status_code=exc.status)
        return JSONResponse(result)

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            token = request.query_params.get("access_token", "")
        return hmac.compare_digest(token.strip().encode(), self.token.encode())

    async def _route(self, method: str, path: str, body: Any, request: Request) -> dict[str, Any]:
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != self.phone_number_id:
            target = parts[0] if parts else ""
            raise GraphError(
                400,
                INVALID_PARAMETER,
                f"Unsupported {method.lower()} request. Object with ID '{target}'"
                " does not exist, cannot be loaded due to missing permissions, or does not support "
                "this operation.",
                error_type="GraphMethodException",
            )
        if method == "GET" and len(parts) == 1:
            return self._phone_number(request.query_params.get("fields"))
        if method == "POST" and parts[1:] == ["messages"]:
            if not isinstance(body, dict):
                raise _bad_parameter("The request body must be a JSON object")
            return self._messages(body)
        raise _bad_parameter(f"Unknown path components: /{'/'.join(parts[1:])}")

    def _phone_number(self, fields: str | None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "verified_name": self.verified_name,
            "code_verification_status": "VERIFIED",
            "display_phone_number": self.display_phone_number,
            "quality_rating": "GREEN",
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
            "id": self.phone_number_id,
        }
        if fields:
            wanted = {f.strip() for f in fields.split(",")} | {"id"}
            info = {k: v for k, v in info.items() if k in wanted}
        return info

    def _messages(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("messaging_product") != "whatsapp":
            raise _bad_parameter("The parameter messaging_product is required.")
        if body.get("status") == "read":
            return self._mark_read(body)
        to, wa_id = self._recipient(body)
        self._inject(wa_id)
        kind = body.get("type", "text")
        sent = self._checked(kind, body, wa_id)
        if kind in {"text", "interactive"} and not self.in_window(wa_id):
            raise graph_error(REENGAGEMENT)
        self.messages.append(sent)
        contact = {"input": to, "wa_id": wa_id}
        if self.bsuids:
            contact["user_id"] = self.bsuid(wa_id)
        return {
            "messaging_product": "whatsapp",
            "contacts": [contact],
            "messages": [{"id": sent.id}],
        }

    def _recipient(self, body: dict[str, Any]) -> tuple[str, str]:
        """(what the request named, the wa_id): ``to`` is a phone number (``+`` and spaces
        allowed), ``recipient`` a business-scoped user id (pywa replies with one)."""
        if body.get("recipient_type", "individual") != "individual":
            raise _bad_parameter("Only individual recipients are supported by the fake")
        to, recipient = body.get("to"), body.get("recipient")
        if isinstance(to, str) and to:
            wa_id = re.sub(r"[^0-9]", "", to)
            if not 6 <= len(wa_id) <= 15:
                raise _bad_parameter(f"Invalid parameter to: {to!r} is not a phone number")
            return to, wa_id
        if isinstance(recipient, str) and recipient in self._bsuid_owners:
            return recipient, self._bsuid_owners[recipient]
        if recipient:
            raise _bad_parameter(f"Invalid parameter recipient: unknown user id {recipient!r}")
        raise _bad_parameter("The parameter to is required.")

    def _mark_read(self, body: dict[str, Any]) -> dict[str, Any]:
        message_id = str(body.get("message_id") or "")
        if not message_id:
            raise _bad_parameter("The parameter message_id is required.")
        indicator = body.get("typing_indicator")
        if indicator is not None and (
            not isinstance(indicator, dict) or indicator.get("type") != "text"
        ):
            raise _bad_parameter("typing_indicator.type must be text")
        self.read.append(message_id)
        return {"success": True}

    def _inject(self, wa_id: str) -> None:
        for failure in self._failures:
            if failure.times > 0 and failure.to in {None, wa_id}:
                failure.times -= 1
                raise graph_error(failure.code, failure.details, status=failure.status)

    def _checked(self, kind: Any, body: dict[str, Any], wa_id: str) -> SentMessage:
        context = body.get("context")
        sent = SentMessage(
            to=wa_id,
            id=self.new_message_id(wa_id),
            type=str(kind),
            text="",
            payload=body,
            at=self.clock(),
            context_id=context.get("message_id") if isinstance(context, dict) else None,
        )
        content = body.get(str(kind))
        if not isinstance(content, dict):
            raise _bad_parameter(f"The parameter {kind} is required.")
        if kind == "text":
            _check_text(content, sent)
        elif kind == "interactive":
            _check_interactive(content, sent)
        elif kind == "template":
            self._check_template(content, sent)
        else:
            raise _bad_parameter(f"Message type {kind!r} is not supported by the fake")
        return sent

    def _check_template(self, content: dict[str, Any], sent: SentMessage) -> None:
        name = content.get("name")
        language = content.get("language")
        if not isinstance(name, str) or not name:
            raise _bad_parameter("The parameter template['name'] is required.")
        if not isinstance(language, dict) or not language.get("code"):
            raise _bad_parameter("The parameter template['language']['code'] is required.")
        if name not in self.templates:
            raise graph_error(
                TEMPLATE_MISSING,
                f"template name ({name}) does not exist in {language['code']}",
            )
        params = _template_params(content.get("components"))
        expected = self.templates[name]
        if len(params) != expected:
            raise graph_error(
                TEMPLATE_PARAMS,
                f"body: number of localizable_params ({len(params)}) does not match the "
                f"expected number of params ({expected})",
            )
        sent.template, sent.params, sent.language = name, params, str(language["code"])
        sent.text = f"{name}({', '.join(params)})"


def _webhook_error(error: int | dict[str, Any]) -> dict[str, Any]:
    if isinstance(error, dict):
        return error
    title, _, details = _ERRORS.get(error, ("Error", 400, "Error"))
    return {
        "code": error,
        "title": title,
        "message": title,
        "error_data": {"details": details},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }


def _text(value: Any, what: str, low: int, high: int, *, code_100: bool = False) -> str:
    """``value`` as a string of ``low``..``high`` characters, or the Graph error for ``what``."""
    if not isinstance(value, str) or not low <= len(value) <= high:
        if code_100:
            raise _bad_parameter(f"Param {what} must be at most {high} characters long.")
        raise _invalid(f"{what} length invalid. Min length: {low}, Max length: {high}")
    return value


def _check_text(content: dict[str, Any], sent: SentMessage) -> None:
    body = content.get("body")
    if not isinstance(body, str) or not body.strip():
        raise _bad_parameter("The parameter text['body'] is required.")
    sent.text = _text(body, "text['body']", 1, MAX_TEXT, code_100=True)


def _check_interactive(content: dict[str, Any], sent: SentMessage) -> None:
    kind = content.get("type")
    if kind not in {"button", "list"}:
        raise _bad_parameter(f"Interactive type {kind!r} is not supported by the fake")
    sent.interactive_type = kind
    body = content.get("body")
    if not isinstance(body, dict):
        raise _bad_parameter("The parameter interactive['body'] is required.")
    sent.text = _text(body.get("text"), "Body text", 1, MAX_INTERACTIVE_BODY)
    header, footer = content.get("header"), content.get("footer")
    if isinstance(header, dict) and header.get("type") == "text":
        sent.header = _text(header.get("text"), "Header text", 1, MAX_HEADER)
    if isinstance(footer, dict):
        sent.footer = _text(footer.get("text"), "Footer text", 1, MAX_FOOTER)
    action = content.get("action")
    if not isinstance(action, dict):
        raise _bad_parameter("The parameter interactive['action'] is required.")
    if kind == "button":
        _check_buttons(action, sent)
    else:
        _check_list(action, sent)


def _check_buttons(action: dict[str, Any], sent: SentMessage) -> None:
    buttons = action.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_BUTTONS:
        raise _invalid(f"Buttons count invalid. Min: 1, Max: {MAX_BUTTONS}")
    for button in buttons:
        reply = button.get("reply") if isinstance(button, dict) else None
        if not isinstance(reply, dict) or button.get("type") != "reply":
            raise _bad_parameter("Each button must be of type reply with a reply object")
        button_id = _text(reply.get("id"), "Button id", 1, MAX_BUTTON_ID)
        title = _text(reply.get("title"), "Button title", 1, MAX_BUTTON_TITLE)
        sent.buttons.append((button_id, title))
    if len({b[0] for b in sent.buttons}) != len(sent.buttons):
        raise _invalid("Duplicate buttons: each button id must be unique")
    if len({b[1] for b in sent.buttons}) != len(sent.buttons):
        raise _invalid("Duplicate buttons: each button title must be unique")


def _check_list(action: dict[str, Any], sent: SentMessage) -> None:
    sent.list_button = _text(action.get("button"), "Button label", 1, MAX_LIST_BUTTON)
    sections = action.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= MAX_SECTIONS:
        raise _invalid(f"Sections count invalid. Min: 1, Max: {MAX_SECTIONS}")
    for section in sections:
        if not isinstance(section, dict):
            raise _bad_parameter("Each section must be an object")
        if len(sections) > 1 or "title" in section:
            # Meta requires a section title as soon as there is more than one section.
            _text(section.get("title"), "Section title", 1, MAX_SECTION_TITLE)
        rows = section.get("rows")
        if not isinstance(rows, list) or not rows:
            raise _invalid("Rows count invalid. Each section needs at least 1 row")
        for row in rows:
            if not isinstance(row, dict):
                raise _bad_parameter("Each row must be an object")
            row_id = _text(row.get("id"), "Row id", 1, MAX_ROW_ID)
            title = _text(row.get("title"), "Row title", 1, MAX_ROW_TITLE)
            description = row.get("description")
            if description is not None:
                _text(description, "Row description", 0, MAX_ROW_DESCRIPTION)
            sent.rows.append((row_id, title, description))
    if len(sent.rows) > MAX_ROWS:
        raise _invalid(f"Total row count exceed max allowed count: {MAX_ROWS}")
    if len({r[0] for r in sent.rows}) != len(sent.rows):
        raise _invalid("Row ids must be unique across all sections")


def _template_params(components: Any) -> list[str]:
    """The text of the parameters of the header and body components, in order (buttons aside)."""
    params: list[str] = []
    if not isinstance(components, list):
        return params
    for component in components:
        # Graph takes component and parameter types in any case (pywa sends "BODY").
        kind = str(component.get("type", "")).lower() if isinstance(component, dict) else ""
        if kind not in {"header", "body"}:
            continue
        for param in component.get("parameters") or []:
            if not isinstance(param, dict):
                raise _bad_parameter("Each template parameter must be an object")
            value = param.get(str(param.get("type", "text")).lower())
            params.append(value if isinstance(value, str) else json.dumps(value))
    return params


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise _bad_parameter("The request body is not valid JSON") from None


@contextlib.asynccontextmanager
async def fake_whatsapp(**kwargs: Any) -> AsyncIterator[FakeWhatsApp]:
    """``async with fake_whatsapp() as fake``: the fake, serving on a free loopback port."""
    async with FakeWhatsApp(**kwargs) as fake:
        yield fake
