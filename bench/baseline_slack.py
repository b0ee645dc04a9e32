"""The Slack baseline: a bare bolt ``AsyncApp`` served by uvicorn, as bolt's docs show it.

``python -m bench.baseline_slack --port P`` (configured by the environment the harness sets:
``SLACK_BOT_TOKEN``, ``SLACK_SIGNING_SECRET``, ``SLACK_API_URL`` and the ``BENCH_*`` variables of
:mod:`bench.bare_erm`). ``/history`` and ``/code`` ack, make their one ERM call with a plain httpx
client and post the answer to the ``response_url`` with the same client (kept-alive connections:
a stronger baseline than bolt's ``respond()``, which opens a new aiohttp session per post).

Bolt's defaults are kept (``process_before_response=False``): the listener runs as a task and the
HTTP answer waits for ``ack()``, which bolt's async runner notices by polling every 10 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import uvicorn
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.bare_erm import BareErm


def create(erm: BareErm) -> Starlette:
    app = AsyncApp(
        token=os.environ["SLACK_BOT_TOKEN"],
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        client=AsyncWebClient(
            token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]
        ),
    )

    async def answer(ack: AsyncAck, command: dict[str, Any]) -> None:
        await ack()
        word = str(command["command"]).lstrip("/")
        text = await erm.answer(word, str(command.get("text") or ""))
        await erm.http.post(
            str(command["response_url"]), json={"text": text, "response_type": "ephemeral"}
        )

    app.command("/history")(answer)
    app.command("/code")(answer)
    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await erm.sign_in()  # once, at start
        yield
        await erm.aclose()

    return Starlette(
        routes=[
            Route("/slack/events", events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_slack", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create(BareErm.from_environment()),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
