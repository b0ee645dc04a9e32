"""The sandbox as an ASGI app: ``POST /graphql`` plus control endpoints under ``/_sandbox/``.

The GraphQL endpoint is a raw ASGI callable rather than a Starlette request handler because fault
injection needs what a handler cannot do: start a response and then break the connection, or hold
an answer back while watching for the client to leave. Parsed and validated documents are cached
by query text, so a benchmark repeating the same operations pays for parsing once.

HTTP behaviour follows Apollo Server: request errors (unparsable JSON, GraphQL syntax, a field the
schema does not have, a variable that cannot be coerced, introspection while it is switched off)
are HTTP 400; errors raised while executing are HTTP 200 with ``errors`` next to (possibly partial)
``data``. The endpoint serves the sandbox's schema or an altered copy of it (contract tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from inspect import isawaitable
from typing import Any, NoReturn

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    ValidationRule,
    execute,
    parse,
    specified_rules,
    validate,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from erm.sandbox.errors import (
    BAD_REQUEST,
    BAD_USER_INPUT,
    GRAPHQL_PARSE_FAILED,
    GRAPHQL_VALIDATION_FAILED,
    INTERNAL_SERVER_ERROR,
)
from erm.sandbox.faults import ConnectionDroppedError, Fault, FaultConfig
from erm.sandbox.schema import RequestContext, load_schema
from erm.sandbox.seed import populate, seed_state
from erm.sandbox.state import SandboxState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 1_000_000
_DOCUMENT_CACHE_SIZE = 512
_JSON_HEADERS = [(b"content-type", b"application/json")]
# Apollo Server's words when a server runs with ``introspection: false`` (its NoIntrospection rule).
NO_INTROSPECTION = (
    "GraphQL introspection is not allowed by Apollo Server, but the query contained __schema or "
    "__type. To enable introspection, pass introspection: true to ApolloServer in production"
)
# An odd answer's error beside the code (``odd_answer=data_and_errors``): a gateway whose service
# made the code and then failed at something after it.
ODD_ANSWER_ERROR = "Failed to record the code event: Timeout awaiting 'request' for 10000ms"
_OTHER_CODE_TYPE = {"DAYSCODE": "FREECODE", "FREECODE": "RESETCODE", "RESETCODE": "DAYSCODE"}
_UNAVAILABLE_BODY = json.dumps(
    {
        "errors": [
            {
                "message": "Service Unavailable (injected by the ERM sandbox)",
                "extensions": {"code": "SERVICE_UNAVAILABLE"},
            }
        ]
    }
).encode()


class _DroppedConnectionFilter(logging.Filter):
    """Keep uvicorn from logging a traceback for every connection dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDroppedError))


DROPPED_CONNECTION_FILTER = _DroppedConnectionFilter()


class _RequestError(Exception):
    """A request the GraphQL layer refuses before executing (answered HTTP 400)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"])
        self.errors = errors


class _NoIntrospection(ValidationRule):
    """Apollo Server's rule with introspection off: ``__schema`` and ``__type`` are refused,
    ``__typename`` is not."""

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        if node.name.value in ("__schema", "__type"):
            self.report_error(GraphQLError(NO_INTROSPECTION, node))


_WITHOUT_INTROSPECTION = (*specified_rules, _NoIntrospection)


class GraphQLEndpoint:
    """``POST /graphql``: Apollo-style answers, with faults injected around execution."""

    def __init__(self, state: SandboxState, schema: GraphQLSchema | None = None) -> None:
        self.state = state
        self.schema = schema if schema is not None else load_schema()
        # keyed by whether introspection was allowed too: the setting changes at run time
        self._documents: dict[tuple[str, bool], DocumentNode | _RequestError] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _send_json(
                send,
                405,
                _error_body("Only POST is supported on /graphql", BAD_REQUEST),
                [(b"allow", b"POST")],
            )
            return
        body = await _read_body(receive)
        faults = self.state.faults
        if faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        fault = self.state.fault_injector.before_execution(faults)
        if fault is Fault.ERROR:
            await _send_bytes(send, 503, _UNAVAILABLE_BODY)
            return
        if fault is Fault.DROP:
            await _drop(send)
        context = RequestContext(self.state, _header(scope, b"authorization"))
        status, payload = await self.run(body, context)
        if context.codes_issued:
            after = self.state.fault_injector.after_code_issued(faults)
            if after is Fault.DROP:
                await _drop(send)
            if after is Fault.HANG and not await _hang(receive, faults.hang_seconds):
                return  # the client gave up; nobody is left to answer
            if after is Fault.ODD_ANSWER:
                _make_odd(payload, faults.odd_answer)
        await _send_json(send, status, payload)

    async def run(self, body: bytes, context: RequestContext) -> tuple[int, dict[str, Any]]:
        """Execute one JSON request body; returns the HTTP status and the JSON answer."""
        try:
            query, variables, operation_name = _parse_body(body)
            document = self._document(query)
        except _RequestError as exc:
            return 400, {"errors": exc.errors}
        outcome = execute(
            self.schema,
            document,
            context_value=context,
            variable_values=variables,
            operation_name=operation_name,
        )
        result: ExecutionResult = await outcome if isawaitable(outcome) else outcome
        errors = result.errors or []
        if result.data is None and errors and all(e.path is None for e in errors):
            # variable coercion or operation selection failed: nothing was executed
            return 400, {"errors": [_format(e, BAD_USER_INPUT) for e in errors]}
        payload: dict[str, Any] = {"data": result.data}
        if errors:
            payload["errors"] = [_format(e, INTERNAL_SERVER_ERROR) for e in errors]
        return 200, payload

    def _document(self, query: str) -> DocumentNode:
        key = (query, self.state.faults.introspection)
        known = self._documents.get(key)
        if known is None:
            known = self._compile(*key)
            if len(self._documents) >= _DOCUMENT_CACHE_SIZE:
                self._documents.clear()
            self._documents[key] = known
        if isinstance(known, _RequestError):
            raise known
        return known

    def _compile(self, query: str, introspection: bool) -> DocumentNode | _RequestError:
        try:
            document = parse(query)
        except GraphQLError as exc:
            return _RequestError([_format(exc, GRAPHQL_PARSE_FAILED)])
        rules = None if introspection else _WITHOUT_INTROSPECTION
        errors = validate(self.schema, document, rules)
        if errors:
            return _RequestError([_format(e, GRAPHQL_VALIDATION_FAILED) for e in errors])
        return document


def create_app(state: SandboxState | None = None, *, schema_sdl: str | None = None) -> Starlette:
    """The ASGI app serving ``state`` (a freshly seeded one by default) through the sandbox's
    schema, or through ``schema_sdl`` (an altered copy of it: see :func:`load_schema`)."""
    sandbox = state if state is not None else seed_state()
    logging.getLogger("uvicorn.error").addFilter(DROPPED_CONNECTION_FILTER)

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                changes = json.loads(await request.body())
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object of fault settings")
                sandbox.faults.update(changes)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            sandbox.fault_injector.restart()
        return JSONResponse(sandbox.faults.to_dict())

    async def reset(request: Request) -> JSONResponse:
        """Heal every fault; with ``{"data": true}`` also re-seed the data."""
        raw = await request.body()
        try:
            options = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return JSONResponse({"error": "body must be JSON"}, status_code=400)
        sandbox.faults.update(FaultConfig().to_dict())
        sandbox.fault_injector.restart()
        reseed = isinstance(options, dict) and options.get("data") is True
        if reseed:
            sandbox.clear()
            populate(sandbox, sandbox.seed)
        return JSONResponse({"faults": sandbox.faults.to_dict(), "data_reset": reseed})

    app = Starlette(
        routes=[
            Route("/graphql", GraphQLEndpoint(sandbox, load_schema(schema_sdl)), methods=None),
            Route("/_sandbox/health", health, methods=["GET"]),
            Route("/_sandbox/faults", faults, methods=["GET", "POST"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
        ]
    )
    app.state.sandbox = sandbox
    return app


# -- helpers --------------------------------------------------------------------------------------


def _parse_body(body: bytes) -> tuple[str, dict[str, Any], str | None]:
    try:
        data = json.loads(body)
    except ValueError:
        raise _RequestError([_plain_error("POST body is not valid JSON", BAD_REQUEST)]) from None
    if not isinstance(data, dict):
        raise _RequestError([_plain_error("POST body must be a JSON object", BAD_REQUEST)])
    query = data.get("query")
    if not isinstance(query, str) or not query.strip():
        raise _RequestError(
            [_plain_error("GraphQL operations must contain a non-empty `query`.", BAD_REQUEST)]
        )
    variables = data.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise _RequestError([_plain_error("`variables` must be a JSON object", BAD_REQUEST)])
    operation_name = data.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise _RequestError([_plain_error("`operationName` must be a string", BAD_REQUEST)])
    return query, variables, operation_name


def _format(error: GraphQLError, default_code: str) -> dict[str, Any]:
    """An Apollo-shaped error: message, locations, path, extensions.code."""
    formatted: dict[str, Any] = {"message": error.message}
    if error.locations:
        formatted["locations"] = [
            {"line": loc.line, "column": loc.column} for loc in error.locations
        ]
    if error.path is not None:
        formatted["path"] = list(error.path)
    extensions = dict(error.extensions or {})
    extensions.setdefault("code", default_code)
    formatted["extensions"] = extensions
    return formatted


def _make_odd(payload: dict[str, Any], kind: str) -> None:
    """Make the answer to a request that issued a code odd, in place, the way ``kind`` says.

    Done on the JSON rather than through graphql-core, which would refuse to serialise an enum
    value the schema does not list. A code answer is a root value with ``codeType``/``codeDec``.
    """
    data = payload.get("data") or {}
    keys = [
        key
        for key, value in data.items()
        if isinstance(value, dict) and {"codeType", "codeDec"} & value.keys()
    ]
    if kind == "data_and_errors":
        error = {
            "message": ODD_ANSWER_ERROR,
            "path": keys[:1],
            "extensions": {"code": INTERNAL_SERVER_ERROR},
        }
        payload.setdefault("errors", []).append(error)
    for answer in (data[key] for key in keys):
        if kind == "bad_enum":
            answer["codeType"] = "DAYSCODE_V2"
        elif kind == "no_digits":
            answer.update(codeDec="*#", codeHex="")
        elif kind == "wrong_type" and "codeType" in answer:
            answer["codeType"] = _OTHER_CODE_TYPE.get(answer["codeType"], "DAYSCODE")


def _plain_error(message: str, code: str) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code}}


def _error_body(message: str, code: str) -> dict[str, Any]:
    return {"errors": [_plain_error(message, code)]}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY_BYTES:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks) if size <= MAX_BODY_BYTES else b""


async def _send_json(
    send: Send,
    status: int,
    payload: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await _send_bytes(send, status, body, extra_headers)


async def _send_bytes(
    send: Send,
    status: int,
    body: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra_headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drop(send: Send) -> NoReturn:
    """Promise a body, then break the connection (see :class:`ConnectionDroppedError`)."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_JSON_HEADERS, (b"content-length", b"4096")],
        }
    )
    raise ConnectionDroppedError


async def _hang(receive: Receive, seconds: float) -> bool:
    """Hold the answer for ``seconds``; ``False`` if the client disconnected meanwhile."""
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, watcher):
            task.cancel()
        await asyncio.gather(sleeper, watcher, return_exceptions=True)
    return not (watcher.done() and not watcher.cancelled())


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
