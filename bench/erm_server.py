"""The ERM sandbox of the benchmark, in a process of its own.

``python -m bench.erm_server --port 0`` prints one JSON line (``{"url": ".../graphql"}``) once it
listens, then serves until SIGTERM. Its own process keeps GraphQL execution (graphql-core is the
most expensive part of a request here) off the load generator's event loop, so the ack and
end-to-end times the harness measures are not delayed by the sandbox's work.

The data is the seeded demo data with one change: the code policy of ``FLEET_DEFAULT`` is opened
like ``FLEET_OPEN``'s, so acme has 100 items on which codes can be issued back to back (20 would
make concurrent commands share items, and the bot rightly serialises codes per item).

Every GraphQL request the sandbox serves is counted by operation name; ``GET /_bench/calls``
answers the counts so far (``{"total": n, "operations": {name: n}}``). The harness reads them
before and after each cell, so each cell knows how many ERM calls its commands cost.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import uvicorn

from erm.sandbox import FLEET_DEFAULT, FLEET_OPEN, create_app, seed_state
from erm.sandbox.app import Message, Receive, Scope, Send
from erm.sandbox.seed import OPEN_POLICY
from erm.sandbox.state import SandboxState

DISTRIBUTOR = "acme"
CALLS_PATH = "/_bench/calls"
GRAPHQL_PATH = "/graphql"
ANONYMOUS = "(anonymous)"


class CallCounter:
    """The sandbox app, counting the GraphQL requests it serves by operation name.

    A wrapper rather than a route of the sandbox's: the count is the bench's concern. A request
    is counted once its body is read (before the sandbox's added latency), so by the time a
    command's answer has arrived every ERM call it made is in the count.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.operations: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        return {"total": self.operations.total(), "operations": dict(self.operations)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == CALLS_PATH:
            await _send_json(send, self.snapshot())
            return
        if scope["type"] == "http" and scope["path"] == GRAPHQL_PATH and scope["method"] == "POST":
            receive = self._counting(receive)
        await self.app(scope, receive, send)

    def _counting(self, receive: Receive) -> Receive:
        chunks: list[bytes] = []

        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.operations[_operation_name(b"".join(chunks))] += 1
            return message

        return counted


def _operation_name(body: bytes) -> str:
    # The sandbox parses the body again; a few microseconds here, in the sandbox's process.
    try:
        name = json.loads(body).get("operationName")
    except (ValueError, AttributeError):
        return ANONYMOUS
    return name if isinstance(name, str) and name else ANONYMOUS


async def _send_json(send: Send, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def bench_state(seed: int = 0) -> SandboxState:
    """The seeded sandbox with acme's default fleet opened (see the module docstring)."""
    state = seed_state(seed)
    state.fleet_by_name(FLEET_DEFAULT).policy = dataclasses.replace(OPEN_POLICY)
    return state


def bench_items(state: SandboxState) -> list[tuple[str, str]]:
    """``(OEM item id, ERM id)`` of the items commands go to, in a fixed order."""
    items = [
        *state.items_of(DISTRIBUTOR, fleet=FLEET_OPEN),
        *state.items_of(DISTRIBUTOR, fleet=FLEET_DEFAULT),
    ]
    return [(item.oem_item_id, item.id) for item in items]


async def _serve(host: str, port: int, seed: int) -> None:
    config = uvicorn.Config(
        CallCounter(create_app(bench_state(seed))),
        host=host,
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise OSError(f"the ERM sandbox could not listen on {host}:{port}")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    sys.stdout.write(json.dumps({"url": f"http://{host}:{bound}/graphql"}) + "\n")
    sys.stdout.flush()
    await task


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.erm_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args.host, args.port, args.seed))


if __name__ == "__main__":
    main()
