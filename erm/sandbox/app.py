"""The sandbox as an ASGI app: ``POST /graphql`` plus control endpoints under ``/_sandbox/``.

The GraphQL endpoint is a raw ASGI callable rather than a Starlette request handler because fault
injection needs what a handler cannot do: start a response and then break the connection, or hold
an answer back while watching for the client to leave. Parsed and validated documents are cached
by query text, so a benchmark repeating the same operations pays for parsing once.

HTTP behaviour follows Apollo Server: request errors (unparsable JSON, GraphQL syntax, a field the
schema does not have, a variable that cannot be coerced) are HTTP 400; errors raised while
executing are HTTP 200 with ``errors`` next to (possibly partial) ``data``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from inspect import isawaitable
from typing import Any, NoReturn

from graphql import DocumentNode, ExecutionResult, GraphQLError, execute, parse, validate
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


class GraphQLEndpoint:
    """``POST /graphql``: Apollo-style answers, with faults injected around execution."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.schema = load_schema()
        self._documents: dict[str, DocumentNode | _RequestError] = {}

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
        known = self._documents.get(query)
        if known is None:
            known = self._compile(query)
            if len(self._documents) >= _DOCUMENT_CACHE_SIZE:
                self._documents.clear()
            self._documents[query] = known
        if isinstance(known, _RequestError):
            raise known
        return known

    def _compile(self, query: str) -> DocumentNode | _RequestError:
        try:
            document = parse(query)
        except GraphQLError as exc:
            return _RequestError([_format(exc, GRAPHQL_PARSE_FAILED)])
        errors = validate(self.schema, document)
        if errors:
            return _RequestError([_format(e, GRAPHQL_VALIDATION_FAILED) for e in errors])
        return document


def create_app(state: SandboxState | None = None) -> Starlette:
    """The ASGI app serving ``state`` (a freshly seeded one by default)."""
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
            Route("/graphql", GraphQLEndpoint(sandbox), methods=None),
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
