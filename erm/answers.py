"""What an ERM answer means: its data, or the ``erm.errors`` error it amounts to.

Every lower-layer failure is mapped onto the error tree here and only here: a request that got no
answer (:func:`transport_error`), an HTTP status, a body that is not JSON, GraphQL errors
(:func:`unwrap`). The rule that runs through all of it: a query that failed is only unavailable,
but a code mutation whose answer was lost after it may have reached ERM raises
``UncertainOutcomeError`` so the caller can reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from erm import operations as ops
from erm.errors import (
    ErmAuthError,
    ErmError,
    ErmNotFoundError,
    ErmRejectedError,
    ErmSchemaError,
    ErmUnavailableError,
    UncertainOutcomeError,
)

__all__ = ["transport_error", "unwrap"]

# Statuses after which a mutation may have been applied upstream (a gateway gave up waiting, or the
# server failed after the resolver ran). 503 means the service refused before doing any work.
_MUTATION_UNCERTAIN_STATUSES = frozenset({500, 502, 504})

# GraphQL request errors: ERM did not accept the document, so nothing ran.
_SCHEMA_CODES = frozenset({"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"})
# Codes that mean ERM refused before doing anything (NOT_FOUND / BAD_USER_INPUT: older servers).
_REFUSAL_CODES = frozenset({"BAD_REQUEST", "FORBIDDEN", "BAD_USER_INPUT", "NOT_FOUND"})
_NULL_ROOT = "Cannot return null for non-nullable field"

# Transport failures that prove the request never left this process.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def transport_error(op: ops.Operation, exc: httpx.TransportError | TimeoutError) -> ErmError:
    """The error for a request that got no answer (``exc``: why), to be raised ``from exc``."""
    if isinstance(exc, _NOT_SENT):
        return ErmUnavailableError(f"cannot reach ERM ({_describe(exc)})")
    if op.mutation:
        return UncertainOutcomeError(op.root_field, _describe(exc))
    return ErmUnavailableError(f"ERM did not answer ({_describe(exc)})")


def unwrap(op: ops.Operation, response: httpx.Response) -> Mapping[str, Any]:
    """The data under ``op``'s root field in ``response``, or raise the error it amounts to."""
    status = response.status_code
    if status == 401:
        raise ErmAuthError("ERM refused the access token (HTTP 401)")
    if status >= 500:
        if op.mutation and status in _MUTATION_UNCERTAIN_STATUSES:
            raise UncertainOutcomeError(op.root_field, f"HTTP {status}")
        raise ErmUnavailableError(f"ERM answered HTTP {status}")
    try:
        payload = response.json()
    except ValueError as exc:
        if op.mutation and status == 200:
            raise UncertainOutcomeError(op.root_field, "unreadable answer") from exc
        raise ErmUnavailableError(f"ERM answered HTTP {status} with no JSON body") from exc
    if not isinstance(payload, dict):
        if op.mutation and status == 200:
            raise UncertainOutcomeError(op.root_field, "answer of an unexpected shape")
        raise ErmUnavailableError("ERM answered with an unexpected JSON shape")
    data = _dict(payload.get("data"))
    result = data.get(op.root_field)
    errors = payload.get("errors")
    if errors:
        if op.mutation and isinstance(result, dict):
            # Data and errors together: the code may be made and the answer damaged.
            raise UncertainOutcomeError(op.root_field, "answer with data and errors")
        raise _graphql_error(op, errors, status)
    if status != 200:
        raise ErmUnavailableError(f"ERM answered HTTP {status}")
    if not isinstance(result, dict):
        if op.mutation:
            raise UncertainOutcomeError(op.root_field, "answer without data")
        raise ErmUnavailableError(f"ERM answer has no {op.root_field}")
    return result


def _graphql_error(op: ops.Operation, errors: object, status: int) -> ErmError:
    """Map the first GraphQL error to the error tree (erm-api.md §4 and §8).

    ERM is NestJS behind Apollo: a refusal for a business or validation reason is ``BAD_REQUEST``
    with the top-level message "Bad Request Exception" and the reason in
    ``extensions.originalError.message`` (a string, or a list from class-validator); older servers
    put it in ``extensions.(exception.)response.message``. Everything but 400/401/403 arrives as
    ``INTERNAL_SERVER_ERROR``, so neither ``NOT_FOUND`` nor ``BAD_USER_INPUT`` is relied on: an id
    that matches nothing shows as a null non-nullable root field, and any other server error on a
    code mutation leaves its outcome unknown.
    """
    first = _dict(errors[0] if isinstance(errors, list) and errors else None)
    extensions = _dict(first.get("extensions"))
    code = extensions.get("code") if isinstance(extensions.get("code"), str) else None
    top = str(first.get("message") or "")
    message = (_reason(extensions) or top or "unknown error")[:500]
    if code == "UNAUTHENTICATED" or top == "Unauthorized":
        return ErmAuthError(f"ERM refused the access token: {message}", message)
    if code in _SCHEMA_CODES:
        return ErmSchemaError(op.name, message)
    if top.startswith(_NULL_ROOT) and _at_root(first, op):
        return ErmNotFoundError(message, code)
    if code in _REFUSAL_CODES or 400 <= _status_of(extensions, status) < 500:
        return ErmRejectedError(message, code)
    if op.mutation:
        return UncertainOutcomeError(op.root_field, f"ERM error {code or 'without a code'}")
    return ErmUnavailableError(f"ERM failed to answer {op.name}: {message}")


def _reason(extensions: Mapping[str, Any]) -> str | None:
    """The reason of a refusal, wherever this version of NestJS put it."""
    holders = (
        extensions.get("originalError"),
        extensions.get("response"),
        _dict(extensions.get("exception")).get("response"),
    )
    for holder in holders:
        message = _dict(holder).get("message")
        if isinstance(message, list):
            parts = [str(m).strip() for m in message if str(m).strip()]
            if parts:
                return "; ".join(parts)
        elif isinstance(message, str) and message.strip():
            return message.strip()
    return None


def _status_of(extensions: Mapping[str, Any], status: int) -> int:
    """The HTTP status ERM meant: older NestJS keeps it beside ``INTERNAL_SERVER_ERROR``."""
    for holder in (
        extensions.get("originalError"),
        extensions.get("exception"),
        extensions,
    ):
        for key in ("statusCode", "status"):
            value = _dict(holder).get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return status


def _at_root(error: Mapping[str, Any], op: ops.Operation) -> bool:
    """Whether a "Cannot return null" error is about the operation's root field itself."""
    path = error.get("path")
    if isinstance(path, list):
        return path == [op.root_field]
    return f".{op.root_field}." in f"{error.get('message')}"


def _dict(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one: error payloads are not trusted."""
    return value if isinstance(value, dict) else {}


def _describe(exc: BaseException) -> str:
    """A short reason naming the failure kind, never including request data or headers."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__
