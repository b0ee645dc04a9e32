"""/healthz and /readyz: liveness is the process; readiness is the database, its schema and ERM.

The app runs with its lifespan (``serve_app``), as uvicorn serves it in ``erm-bot run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import TestDatabase

from adapters.web import Readiness, create_app
from bot.storage.base import migrate
from erm.db import create_engine
from erm.sandbox import create_app as create_sandbox
from erm.sandbox import seed_state
from erm.sandbox.server import serve, serve_app


@contextlib.asynccontextmanager
async def bot_app(readiness: Readiness | None) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_app(create_app([], readiness=readiness)) as url,
        httpx.AsyncClient(base_url=url, timeout=10.0) as http,
    ):
        yield http


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def sandbox_url() -> AsyncIterator[str]:
    async with serve(create_sandbox(seed_state())) as url:
        yield url


async def test_healthz_answers_while_the_process_serves() -> None:
    async with bot_app(None) as http:
        response = await http.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_ready_when_the_database_its_schema_and_erm_answer(engine: AsyncEngine) -> None:
    await migrate(engine)  # the bot's tables too, as `erm-bot run` does on start
    async with sandbox_url() as erm, bot_app(Readiness(engine, erm)) as http:
        response = await http.get("/readyz")

    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"startup", "database", "migrations", "erm"}
    assert all(check["ok"] for check in body["checks"].values())


async def test_not_ready_while_the_schema_is_behind(database: TestDatabase) -> None:
    fresh = database.create_engine()  # never migrated
    try:
        async with sandbox_url() as erm, bot_app(Readiness(fresh, erm)) as http:
            response = await http.get("/readyz")
    finally:
        await fresh.dispose()

    checks = response.json()["checks"]
    assert response.status_code == 503
    assert checks["database"]["ok"] is True
    assert checks["migrations"] == {
        "ok": False,
        "detail": "schema is behind: run `erm-bot db upgrade`",
        "ms": checks["migrations"]["ms"],
    }


async def test_still_ready_when_a_newer_version_has_migrated_the_schema(
    engine: AsyncEngine,
) -> None:
    """A rolling upgrade: the first new replica migrates; the old ones keep serving."""
    await migrate(engine)
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO alembic_version (version_num) VALUES ('bot9999_from_the_future')")
        )
    async with sandbox_url() as erm, bot_app(Readiness(engine, erm)) as http:
        response = await http.get("/readyz")

    checks = response.json()["checks"]
    assert response.status_code == 200
    assert checks["migrations"]["detail"].startswith("schema is newer than this version")


async def test_not_ready_when_the_database_is_unreachable_and_the_url_stays_private() -> None:
    # Nothing listens on port 9 of the loopback: the connection is refused at once.
    unreachable = create_engine("postgresql+asyncpg://bot:pw-s3cret-value@127.0.0.1:9/erm_bot")
    try:
        async with sandbox_url() as erm, bot_app(Readiness(unreachable, erm)) as http:
            response = await http.get("/readyz")
    finally:
        await unreachable.dispose()

    checks = response.json()["checks"]
    assert response.status_code == 503
    assert checks["database"]["ok"] is False
    assert checks["migrations"]["detail"] == "not checked: no database"
    assert checks["erm"]["ok"] is True
    assert "pw-s3cret-value" not in response.text


async def test_not_ready_when_erm_does_not_answer_within_the_timeout(engine: AsyncEngine) -> None:
    async with silent_server() as erm, bot_app(Readiness(engine, erm, timeout=0.5)) as http:
        started = time.monotonic()
        response = await http.get("/readyz")
        took = time.monotonic() - started

    checks = response.json()["checks"]
    assert response.status_code == 503
    assert checks["erm"] == {
        "ok": False,
        "detail": "no answer within 0.5 s",
        "ms": checks["erm"]["ms"],
    }
    assert checks["database"]["ok"] is True
    assert took < 3.0


async def test_not_ready_when_erm_answers_with_a_server_error(engine: AsyncEngine) -> None:
    state = seed_state()
    state.faults.error_rate = 1.0
    async with serve(create_sandbox(state)) as erm, bot_app(Readiness(engine, erm)) as http:
        response = await http.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["erm"]["detail"] == "ERM answered HTTP 503"


async def test_not_ready_before_the_platforms_have_started(engine: AsyncEngine) -> None:
    app = create_app([], readiness=None)  # no lifespan run: nothing started
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bot") as http:
        response = await http.get("/readyz")

    body: dict[str, Any] = response.json()
    assert response.status_code == 503
    assert body["checks"]["startup"]["ok"] is False
