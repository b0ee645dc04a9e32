"""The bot's one ASGI app: Slack's request URL, the Telegram webhook, and health.

Each platform adapter is a ``WebService``: it contributes routes and may run background work
(Telegram long polling, Slack Socket Mode) that the app's lifespan starts and stops, in order,
so a SIGTERM to uvicorn finishes in-flight commands before the process exits.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

log = logging.getLogger(__name__)


class WebService(Protocol):
    """A platform adapter as the web app sees it."""

    def routes(self) -> list[BaseRoute]: ...

    async def start(self) -> None:
        """Start background work (polling, Socket Mode); return once it runs."""

    async def stop(self) -> None:
        """Stop background work and wait for commands in flight."""


async def healthz(_request: Request) -> Response:
    """The process is up and serving HTTP."""
    return JSONResponse({"status": "ok"})


def create_app(services: Sequence[WebService] = ()) -> Starlette:
    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    for service in services:
        routes.extend(service.routes())

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        started: list[WebService] = []
        try:
            for service in services:
                await service.start()
                started.append(service)
            yield
        finally:
            for service in reversed(started):
                try:
                    await service.stop()
                except Exception:
                    log.exception("stopping %s failed", type(service).__name__)

    return Starlette(routes=routes, lifespan=lifespan)
