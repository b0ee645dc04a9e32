"""The bot's one ASGI app: Slack's request URL, the Telegram webhook, health and metrics.

Each platform adapter is a ``WebService``: it contributes routes and may run background work
(Telegram long polling, Slack Socket Mode) that the app's lifespan starts and stops, in order,
so a SIGTERM to uvicorn finishes in-flight commands before the process exits.

- ``GET /healthz``: the process is up and serving HTTP (liveness).
- ``GET /readyz``: the platforms have started, the database answers, its schema is at the newest
  migration and ERM answers, each within a timeout; 200 with one entry per check, else 503
  (readiness: a load balancer sends traffic only to ready replicas).
- ``GET /metrics``: Prometheus text format (:mod:`bot.metrics`).

Every other HTTP request (a Slack command, a Telegram webhook update) gets a fresh request id in
the log context (:func:`adapters.logs.bind_request`), which the work it starts inherits. A route
that takes a body reads it with :func:`adapters.bodies.read_bounded` (413 past its limit, while
it streams), never ``request.body()``: a sender must not choose how much memory a request takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
from alembic.config import Config
from alembic.script import ScriptDirectory
from prometheus_client.exposition import choose_encoder
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.logs import bind_request
from adapters.platforms import PLATFORMS
from bot import metrics
from bot.storage.base import BOT_MIGRATIONS, is_current
from erm.db import MIGRATIONS_DIR

log = logging.getLogger(__name__)

HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
READY_QUERY = {"query": "query Ready { __typename }"}
"""What /readyz sends ERM: unauthenticated, touches no data; any answer below 500 will do."""


class WebService(Protocol):
    """A platform adapter as the web app sees it."""

    def routes(self) -> list[BaseRoute]: ...

    async def start(self) -> None:
        """Start background work (polling, Socket Mode); return once it runs."""

    async def stop(self) -> None:
        """Stop background work and wait for commands in flight."""


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check: ``detail`` says what was seen (or what is wrong), never a secret."""

    name: str
    ok: bool
    detail: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail, "ms": round(self.seconds * 1e3, 1)}


class Readiness:
    """The checks behind ``/readyz``: database, migrations, ERM; each bounded by ``timeout``."""

    def __init__(
        self,
        engine: AsyncEngine,
        erm_url: str,
        *,
        timeout: float = 3.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.engine = engine
        self.erm_url = erm_url
        self.timeout = timeout
        self._transport = transport

    async def check(self) -> list[Check]:
        storage, erm = await asyncio.gather(self._storage(), self.erm())
        return [*storage, erm]

    async def _storage(self) -> list[Check]:
        database = await self.database()
        if not database.ok:
            return [database, Check("migrations", False, "not checked: no database")]
        return [database, await self.migrations()]

    async def database(self) -> Check:
        async def probe() -> str:
            async with self.engine.connect() as connection:
                await connection.scalar(text("SELECT 1"))
            return f"{self.engine.dialect.name} answers"

        return await _timed("database", self.timeout, probe)

    async def migrations(self) -> Check:
        async def probe() -> str:
            state = await schema_state(self.engine)
            if state is Schema.BEHIND:
                raise _NotReadyError("schema is behind: run `erm-bot db upgrade`")
            if state is Schema.NEWER:
                return "schema is newer than this version (an upgrade is rolling out)"
            return "schema is at the newest migration"

        return await _timed("migrations", self.timeout, probe)

    async def erm(self) -> Check:
        return await erm_check(self.erm_url, self.timeout, transport=self._transport)


async def erm_check(
    url: str, within: float, *, transport: httpx.AsyncBaseTransport | None = None
) -> Check:
    """ERM answers an unauthenticated request within ``within`` seconds (any status below 500)."""

    async def probe() -> str:
        async with httpx.AsyncClient(transport=transport, timeout=within) as http:
            response = await http.post(url, json=READY_QUERY)
        if response.status_code >= 500:
            raise _NotReadyError(f"ERM answered HTTP {response.status_code}")
        return f"ERM answered HTTP {response.status_code}"

    return await _timed("erm", within, probe)


class Schema(enum.Enum):
    CURRENT = "current"
    BEHIND = "behind"  # this version needs migrations the database lacks: not ready
    NEWER = "newer"  # a newer erm-bot migrated it (rolling upgrade): migrations only add, so ready


async def schema_state(engine: AsyncEngine) -> Schema:
    """Where the database's schema stands relative to this version's migrations."""
    if await is_current(engine):
        return Schema.CURRENT
    try:
        async with engine.connect() as connection:
            recorded = set(
                await connection.scalars(text("SELECT version_num FROM alembic_version"))
            )
    except SQLAlchemyError:
        return Schema.BEHIND  # no version table: never migrated
    return Schema.NEWER if recorded - _known_revisions() else Schema.BEHIND


@functools.cache
def _known_revisions() -> frozenset[str]:
    """Every migration this version ships (erm's and the bot's)."""
    config = Config()  # no file: nothing read from the working directory

    def option(value: str) -> str:
        return value.replace("%", "%%")  # options pass through configparser interpolation

    locations = [MIGRATIONS_DIR / "versions", BOT_MIGRATIONS]
    config.set_main_option("script_location", option(str(MIGRATIONS_DIR)))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", option(os.pathsep.join(map(str, locations))))
    return frozenset(r.revision for r in ScriptDirectory.from_config(config).walk_revisions())


class _NotReadyError(Exception):
    """A check's own verdict; its message is the detail shown."""


async def _timed(name: str, within: float, probe: Callable[[], Awaitable[str]]) -> Check:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(within):
            detail = await probe()
    except TimeoutError:
        ok, detail = False, f"no answer within {within:g} s"
    except _NotReadyError as exc:
        ok, detail = False, str(exc)
    except Exception as exc:
        # The exception's class only: driver messages can quote connection strings.
        ok, detail = False, f"failed ({type(exc).__name__})"
    else:
        ok = True
    return Check(name, ok, detail, time.perf_counter() - started)


async def healthz(_request: Request) -> Response:
    """The process is up and serving HTTP."""
    return JSONResponse({"status": "ok"})


async def metrics_text(request: Request) -> Response:
    """Prometheus text, or OpenMetrics when the scraper asks for it (``Accept``)."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(metrics.REGISTRY), headers={"Content-Type": content_type})


class RequestContext:
    """Binds a fresh request id for every platform request (not for health and metrics)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path") or "")
        if scope["type"] == "http" and path not in HEALTH_PATHS:
            bind_request(_platform(path), http_path=path[:100])
        await self.app(scope, receive, send)


def _platform(path: str) -> str:
    """A platform's routes live under its name (``/slack/events``); anything else is "http"."""
    for platform in PLATFORMS:
        if path.startswith(f"/{platform.name}/"):
            return platform.name
    return "http"


def create_app(
    services: Sequence[WebService] = (), *, readiness: Readiness | None = None
) -> Starlette:
    started = False

    async def readyz(_request: Request) -> Response:
        checks = [Check("startup", started, "platforms started" if started else "not started yet")]
        if readiness is not None:
            checks.extend(await readiness.check())
        ready = all(c.ok for c in checks)
        body = {
            "status": "ready" if ready else "not ready",
            "checks": {c.name: c.to_dict() for c in checks},
        }
        if not ready:
            failed = ", ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok)
            log.warning("not ready: %s", failed)
        return JSONResponse(body, status_code=200 if ready else 503)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ]
    for service in services:
        routes.extend(service.routes())

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        nonlocal started
        running: list[WebService] = []
        try:
            for service in services:
                await service.start()
                running.append(service)
            started = True
            yield
        finally:
            started = False
            for service in reversed(running):
                try:
                    await service.stop()
                except Exception:
                    log.exception("stopping %s failed", type(service).__name__)

    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(RequestContext)])
