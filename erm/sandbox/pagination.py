"""Relay connections over in-memory lists, in the shape every ERM list query answers.

Cursors are ``base64("arrayconnection:<index>")`` like graphql-relay's array connections: opaque to
clients, cheap to make, and stable as long as the list does not change between pages. ``pageInfo``
follows the practical reading (``hasPreviousPage`` / ``hasNextPage`` tell whether anything lies
before / after the returned slice, whichever direction was asked for), which is what a client paging
forward with ``after: endCursor`` needs.

Bad arguments are refused the way production's validation pipe refuses them: ``Bad Request
Exception`` with a list of reasons (erm-api.md §8). Two faults bend the answer on purpose:
``stuck_cursor`` (every page is the first, with ``hasNextPage`` true and the same ``endCursor``)
and ``ignore_first`` (every page holds all remaining nodes).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from erm.sandbox.errors import BadRequestError, not_a_cursor, too_small

MAX_PAGE_SIZE = 100
"""``first`` / ``last`` above this are cut down to it; it is also the size when neither is given."""

_PREFIX = "arrayconnection:"


def cursor_for(index: int) -> str:
    """The opaque cursor of the element at ``index``."""
    return base64.b64encode(f"{_PREFIX}{index}".encode()).decode()


def index_of(cursor: str, argument: str = "after") -> int:
    """Decode a cursor made by :func:`cursor_for`; anything else is the caller's mistake."""
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise BadRequestError([not_a_cursor(argument)]) from None
    if not text.startswith(_PREFIX) or not text[len(_PREFIX) :].isdigit():
        raise BadRequestError([not_a_cursor(argument)])
    return int(text[len(_PREFIX) :])


def connection(
    nodes: Sequence[Any],
    *,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    stuck_cursor: bool = False,
    ignore_first: bool = False,
) -> dict[str, Any]:
    """``{page: {edges, pageInfo}, pageData: {count, limit, offset}}`` for one page of ``nodes``."""
    negative = [
        too_small(name, 0)
        for name, size in (("first", first), ("last", last))
        if size is not None and size < 0
    ]
    if negative:
        raise BadRequestError(negative)
    total = len(nodes)
    start = 0
    end = total
    if after is not None:
        start = min(max(index_of(after) + 1, 0), total)
    if before is not None:
        end = max(min(index_of(before, "before"), total), start)
    if stuck_cursor:  # the server never moves past the first page
        start, end = 0, total
    if ignore_first:
        limit = total
    elif first is not None:
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
    if stuck_cursor:
        page_info["endCursor"] = page_info["endCursor"] or cursor_for(0)
        page_info["hasNextPage"] = True
    return {
        "page": {"edges": edges, "pageInfo": page_info},
        "pageData": {"count": total, "limit": limit, "offset": start},
    }
