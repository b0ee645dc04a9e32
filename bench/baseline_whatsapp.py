"""The WhatsApp baseline: a bare pywa_async app behind its own Starlette route under uvicorn.

``python -m bench.baseline_whatsapp --port P`` (configured by ``WHATSAPP_TOKEN``,
``WHATSAPP_PHONE_NUMBER_ID``, ``WHATSAPP_APP_SECRET``, ``WHATSAPP_VERIFY_TOKEN``,
``WHATSAPP_API_URL`` and the ``BENCH_*`` variables of :mod:`bench.bare_erm`).

pywa's own webhook handling, as its docs show for a custom server: ``webhook_update_validator``
checks ``X-Hub-Signature-256``, then ``webhook_update_handler`` parses the update, skips
duplicates (in memory) and runs the text handler, which makes its one ERM call with a plain httpx
client and replies with ``reply_text``. pywa runs the handler before it answers, so the webhook
is answered 200 once the reply is sent; since a person's next message is delivered only after the
previous post was answered, each person's replies keep their order with no extra code: the
simplest honest way to keep it (answering first and working after would need a queue per person).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import AsyncIterator

import httpx
import uvicorn
from pywa_async import filters
from pywa_async.client import WhatsApp
from pywa_async.handlers import MessageHandler
from pywa_async.types import Message
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bench.bare_erm import BareErm

WEBHOOK_PATH = "/whatsapp/webhook"


def build() -> Starlette:
    erm = BareErm.from_environment()
    session = httpx.AsyncClient(timeout=20.0, limits=httpx.Limits(max_connections=100))
    wa = WhatsApp(
        phone_id=os.environ["WHATSAPP_PHONE_NUMBER_ID"],
        token=os.environ["WHATSAPP_TOKEN"],
        session=session,
        server=None,
        verify_token=os.environ["WHATSAPP_VERIFY_TOKEN"],
        app_secret=os.environ["WHATSAPP_APP_SECRET"],
    )
    # pywa points the session at graph.facebook.com/v<version>/: keep the path, use the fake.
    session.base_url = os.environ["WHATSAPP_API_URL"].rstrip("/") + session.base_url.path

    async def answer(_client: WhatsApp, message: Message) -> None:
        word, _, rest = (message.text or "").strip().lstrip("/").partition(" ")
        await message.reply_text(await erm.answer(word.lower(), rest))

    wa.add_handlers(MessageHandler(answer, filters.text))

    async def webhook(request: Request) -> Response:
        body = await request.body()
        error = await wa.webhook_update_validator(body, request.headers.get("x-hub-signature-256"))
        if error is not None:
            return PlainTextResponse(error[0], status_code=error[1])
        text, status = await wa.webhook_update_handler(body)
        return PlainTextResponse(text, status_code=status)

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await erm.sign_in()  # once, at start
        try:
            yield
        finally:
            await erm.aclose()
            await session.aclose()

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhook, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_whatsapp")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("pywa", "pywa_async"):  # it logs every update at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    uvicorn.run(
        build(), host="127.0.0.1", port=args.port, log_config=None, access_log=False, lifespan="on"
    )


if __name__ == "__main__":
    main()
