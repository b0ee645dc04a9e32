"""Relay connections over in-memory lists, in the shape every ERM list query answers.

Cursors are ``base64("arrayconnection:<index>")`` like graphql-relay's array connections: opaque to
clients, cheap to make, and stable as long as the list does not change between pages. ``pageInfo``
follows the practical reading (``hasPreviousPage`` / ``hasNextPage`` tell whether anything lies
before / after the returned slice, whichever direction was asked for), which is what a client paging
forward with ``after: endCursor`` needs.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from erm.sandbox.errors import BAD_USER_INPUT, SandboxError

MAX_PAGE_SIZE = 100
"""``first`` / ``last`` above this are cut down to it; it is also the size when neither is given."""

MSG_INVALID_CURSOR = "Invalid cursor"
MSG_NEGATIVE_PAGE_SIZE = "first and last must not be negative"

_PREFIX = "arrayconnection:"


def cursor_for(index: int) -> str:
    """The opaque cursor of the element at ``index``."""
    return base64.b64encode(f"{_PREFIX}{index}".encode()).decode()


def index_of(cursor: str) -> int:
    """Decode a cursor made by :func:`cursor_for`; anything else is the caller's mistake."""
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise SandboxError(MSG_INVALID_CURSOR, BAD_USER_INPUT) from None
    if not text.startswith(_PREFIX) or not text[len(_PREFIX) :].isdigit():
        raise SandboxError(MSG_INVALID_CURSOR, BAD_USER_INPUT)
    return int(text[len(_PREFIX) :])


def connection(
    nodes: Sequence[Any],
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """``{page: {edges, pageInfo}, pageData: {count, limit, offset}}`` for one page of ``nodes``."""
    if (first is not None and first < 0) or (last is not None and last < 0):
        raise SandboxError(MSG_NEGATIVE_PAGE_SIZE, BAD_USER_INPUT)
    total = len(nodes)
    start = 0
    end = total
    if after is not None:
        start = min(max(index_of(after) + 1, 0), total)
    if before is not None:
        end = max(min(index_of(before), total), start)
    if first is not None:
        limit = min(first, MAX_PAGE_SIZE)
        end = min(end, start + limit)
    elif last is not None:
        limit = min(last, MAX_PAGE_SIZE)
        start = max(start, end - limit)
    else:
        limit = MAX_PAGE_SIZE
        end = min(end, start + limit)
    edges = [{"cursor": cursor_for(i), "node": nodes[i]} for i in range(start, end)]
    page_info = {
        "startCursor": edges[0]["cursor"] if edges else None,
        "endCursor": edges[-1]["cursor"] if edges else None,
        "hasPreviousPage": start > 0,
        "hasNextPage": end < total,
    }
    return {
        "page": {"edges": edges, "pageInfo": page_info},
        "pageData": {"count": total, "limit": limit, "offset": start},
    }
