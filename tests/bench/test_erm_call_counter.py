"""The bench's count of ERM calls: the sandbox wrapper counts GraphQL requests by operation name,
and a cell's calls are the difference of two readings.

In process, through httpx's ASGI transport: no server, no timing.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator

import httpx

from bench.common import ERMCalls
from bench.erm_server import ANONYMOUS, CALLS_PATH, CallCounter, bench_state
from erm import operations as ops
from erm.sandbox import ACME, create_app


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    # Split mid-JSON: the counter must read the name from the whole body, not its first chunk.
    middle = len(body) // 2
    yield body[:middle]
    yield body[middle:]


async def test_graphql_requests_are_counted_by_operation_name_and_nothing_else_is() -> None:
    app = CallCounter(create_app(bench_state()))
    sign_in = {
        "operationName": ops.SIGN_IN_CLIENT.name,
        "query": ops.SIGN_IN_CLIENT.document,
        "variables": {"signInCredentialsInput": {"email": ACME.email, "password": ACME.password}},
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://erm.test") as http:
        signed = await http.post("/graphql", content=_chunks(json.dumps(sign_in).encode()))
        refused = await http.post("/graphql", content=b"not json")
        await http.get("/graphql")  # 405: not a GraphQL request
        await http.get("/_sandbox/health")
        calls = await http.get(CALLS_PATH)

    assert signed.status_code == 200, signed.text
    assert signed.json()["data"]["signInClient"]["accessToken"]
    assert refused.status_code == 400
    assert calls.json() == {"total": 2, "operations": {"SignInClient": 1, ANONYMOUS: 1}}


def test_a_cells_calls_are_the_difference_of_two_readings() -> None:
    calls = ERMCalls.between(
        {"SignInClient": 1, "GenerateDaysCode": 3},
        {"SignInClient": 1, "GenerateDaysCode": 7, "GetSpecificItem": 1},
    )

    assert calls.operations == {"GenerateDaysCode": 4, "GetSpecificItem": 1}
    assert calls.total == 5
    assert calls.per(4) == 1.25
    assert math.isnan(ERMCalls().per(4))  # never read: unknown, not zero
