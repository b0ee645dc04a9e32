"""Running the sandbox over real HTTP: in a test's event loop, or as the ``sandbox`` command.

:func:`serve` runs uvicorn as a task of the current loop and yields the GraphQL URL once the socket
is listening (port 0 picks a free port), so loopback tests need no threads or subprocesses.
:func:`run_sandbox` is the blocking entry point behind ``erm-bot sandbox`` / ``python -m
erm.sandbox``; with ``json_output`` its first stdout line is machine-readable for scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import uvicorn
from uvicorn.config import LifespanType

from erm.sandbox.app import DROPPED_CONNECTION_FILTER, create_app
from erm.sandbox.config import SandboxConfig
from erm.sandbox.faults import FaultConfig
from erm.sandbox.persist import StateFile, persisting
from erm.sandbox.seed import DEMO_DISTRIBUTORS, seed_state

SHUTDOWN_GRACE_SECONDS = 1
"""Requests still running at shutdown (a hanging answer) are cancelled after this long."""


@contextlib.asynccontextmanager
async def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn in this event loop; yields ``http://host:port/graphql``."""
    async with _running(app, host, port) as (url, _task):
        yield f"{url}/graphql"


@contextlib.asynccontextmanager
async def serve_app(app: Any, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve any ASGI app, lifespan included, in this event loop; yields ``http://host:port``."""
    async with _running(app, host, port, lifespan="on") as (url, _task):
        yield url


@contextlib.asynccontextmanager
async def _running(
    app: Any, host: str, port: int, *, lifespan: LifespanType = "off"
) -> AsyncIterator[tuple[str, asyncio.Task[None]]]:
    """Start uvicorn as a task; yields the base URL and the task (which ends on SIGINT/SIGTERM)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # leave the process's logging setup alone
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").addFilter(DROPPED_CONNECTION_FILTER)

    async def run() -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits the process when it cannot bind: keep it an error
            raise OSError(
                f"cannot listen on {host}:{port} (address already in use, or not allowed)"
            ) from None

    task = asyncio.create_task(run())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises why it could not start
                raise OSError(f"the server on {host}:{port} stopped before it started")
            await asyncio.sleep(0.01)
        bound_port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound_port}", task
    finally:
        server.should_exit = True
        with contextlib.suppress(OSError):  # already raised above when it failed to start
            await task


def run_sandbox(
    host: str = "127.0.0.1",
    port: int = 8765,
    json_output: bool = False,
    faults: FaultConfig | None = None,
    token_ttl: int = 86400,
    *,
    seed: int = 0,
    out: TextIO | None = None,
    state_file: Path | None = None,
) -> None:
    """Seed a sandbox, announce its URL and demo logins, and serve until interrupted.

    With ``state_file`` the codes it issues are kept there and come back on the next start
    (:mod:`.persist`); a file that does not fit raises
    :class:`~erm.sandbox.persist.SavedStateError` before anything is served.
    """
    stream = out if out is not None else sys.stdout
    state = seed_state(seed, SandboxConfig(token_ttl_seconds=token_ttl), faults)
    app: Any = create_app(state)
    if state_file is not None:
        saved = StateFile(state, state_file)
        saved.restore()
        saved.save()
        app = persisting(app, saved)

    async def main() -> None:
        async with _running(app, host, port) as (url, server_task):
            _announce(stream, f"{url}/graphql", json_output, state.faults)
            await server_task  # uvicorn ends it on Ctrl-C / SIGTERM

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def _announce(stream: TextIO, url: str, json_output: bool, faults: FaultConfig) -> None:
    distributors = [
        {"name": d.name, "email": d.email, "password": d.password} for d in DEMO_DISTRIBUTORS
    ]
    if json_output:
        stream.write(json.dumps({"url": url, "distributors": distributors}) + "\n")
        stream.flush()
        return
    lines = [f"ERM sandbox listening on {url}", "Demo distributors (email / password):"]
    lines += [f"  {d['name']:<10} {d['email']:<26} {d['password']}" for d in distributors]
    active = {k: v for k, v in faults.to_dict().items() if v != getattr(FaultConfig(), k)}
    if active:
        lines.append(f"Faults: {json.dumps(active)}")
    base = url.removesuffix("/graphql")
    lines.append(f"Fault control: GET/POST {base}/_sandbox/faults, POST {base}/_sandbox/reset")
    lines.append("Press Ctrl-C to stop.")
    stream.write("\n".join(lines) + "\n")
    stream.flush()
