"""Reading an inbound HTTP body without letting its sender choose how much memory it takes.

Starlette's ``request.body()`` keeps reading until the client stops: an unsigned 250 MB chunked
post to the Slack request URL was held whole in memory before its signature could be checked.
Every inbound route reads its body with :func:`read_bounded` instead, which refuses a declared
``Content-Length`` over the limit before reading a byte, and stops a chunked (or lying) body as
soon as it passes the limit; the route answers :func:`too_large` (413).

Once refused, the rest of the body is never read into the app: uvicorn closes the connection
after the response (it cannot be reused with a body left unread), so the client may see the 413
or, if it was still sending, a closed connection.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from bot import metrics

log = logging.getLogger(__name__)


class BodyTooLargeError(Exception):
    """The body is (or declares itself) larger than the route accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


class BadContentLengthError(Exception):
    """The ``Content-Length`` header is not a number."""


async def read_bounded(request: Request, limit: int) -> bytes:
    """The request's body, read only while it stays within ``limit`` bytes.

    Raises :class:`BodyTooLargeError` on a declared length over ``limit`` (nothing read) or as
    soon as the bytes received pass it (at most ``limit`` bytes plus one network chunk held), and
    :class:`BadContentLengthError` on a ``Content-Length`` that is not a number.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadContentLengthError("Content-Length is not a number") from None
        if length > limit:
            raise BodyTooLargeError(limit)
    received = bytearray()
    async for chunk in request.stream():
        if len(received) + len(chunk) > limit:
            raise BodyTooLargeError(limit)
        received += chunk
    return bytes(received)


def too_large(platform: str, error: BodyTooLargeError) -> Response:
    """The answer to an oversized body: 413, counted, logged without any of the body."""
    metrics.count_body_refused(platform, "too_large")
    log.warning("%s request refused: %s", platform, error)
    # Close the connection: its unread rest must not be parsed as a next request.
    return Response("request body too large", status_code=413, headers={"Connection": "close"})


def bad_length(platform: str) -> Response:
    """The answer to a ``Content-Length`` that is not a number (a 400, not a 500)."""
    metrics.count_body_refused(platform, "bad_length")
    log.warning("%s request refused: Content-Length is not a number", platform)
    return Response("bad Content-Length", status_code=400, headers={"Connection": "close"})
