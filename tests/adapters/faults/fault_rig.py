"""The fault-injection rig: a bot stack whose ERM and database can be broken on purpose.

- :class:`TcpProxy`: a TCP proxy on 127.0.0.1 the test stops and starts again. Stopped, it refuses
  connections and cuts the ones it carried, which is what the bot sees when PostgreSQL (or ERM)
  restarts; started again on the same port, the bot must find its way back by itself.
- :func:`fault_stack`: the sandbox ERM over loopback (optionally behind a hook that sees every
  GraphQL request, so a test can act at the exact moment a code mutation arrives), a migrated
  database (optionally reached through a proxy), and the core's dispatcher, with short ERM timeouts
  so "slower than the client's timeout" takes a second, not twenty.
- :class:`SlackClient`: signed slash commands to a running bot (in this process or a real
  ``erm-bot run``) and the answers the fake Slack got for them.
- :func:`start_bot`: ``erm-bot run`` as a real process, configured through its environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from fakes.slack import Call, FakeSlack, command_form, encode_form, shown, signed_headers
from sqlalchemy import func, make_url, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.runtime import Runtime
from adapters.settings import Settings
from bot.audit import AuditLog, AuditRecord, AuditRow
from bot.dispatch import Dispatcher
from bot.roles import Role
from bot.storage.base import migrate
from bot.storage.requests import RequestRow
from erm.client import ErmClient
from erm.db import create_engine
from erm.sandbox import ACME, create_app, seed_state
from erm.sandbox.server import serve
from erm.sandbox.state import SandboxState
from erm.secret_box import SecretBox
from erm.service import ErmService, ServiceConfig
from erm.transport import ClientConfig
from erm.vault import TokenVault

ERM_BOT = Path(sys.executable).parent / "erm-bot"
STOP_TIMEOUT = 30.0
MUTATIONS = ("GenerateDaysCode", "GenerateFreeCode", "GenerateResetCode")  # operation names

# ERM timeouts of the fault stack: a hang is noticed within a second.
CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.0
TOTAL_TIMEOUT = 1.0
QUERY_ATTEMPTS = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a TCP proxy the test can stop and start ----------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; :meth:`stop` is the upstream "restarting"."""

    def __init__(self, upstream_host: str, upstream_port: int, port: int | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port or free_port()
        self.connections = 0  # accepted since creation
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def stop(self) -> None:
        """Refuse new connections and cut every open one (both sides)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        if self._server is None:  # stopped while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(sink)
            sink.transport.abort()


# -- the sandbox ERM behind a hook --------------------------------------------------------------

Hook = Callable[[str], Awaitable[None]]


def hooked(app: Any, before: Hook | None = None, after: Hook | None = None) -> Any:
    """``app`` with ``before(operation)`` / ``after(operation)`` around every GraphQL request.

    ``after`` runs even when the app breaks the connection on purpose (a dropped answer), and
    before the client can see the break, so it can change faults for the requests that follow.
    """

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/graphql"):
            await app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = bool(message.get("more_body"))
        try:
            operation = str(json.loads(body or b"{}").get("operationName") or "?")
        except ValueError:
            operation = "?"
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if before is not None:
            await before(operation)
        try:
            await app(scope, replay, send)
        finally:
            if after is not None:
                await after(operation)

    return wrapped


# -- the stack ----------------------------------------------------------------------------------


@dataclass
class Hooks:
    """Called around each GraphQL request the sandbox gets (see :func:`hooked`); tests set them."""

    before: Hook | None = None
    after: Hook | None = None

    async def run_before(self, operation: str) -> None:
        if self.before is not None:
            await self.before(operation)

    async def run_after(self, operation: str) -> None:
        if self.after is not None:
            await self.after(operation)


@dataclass
class FaultStack:
    settings: Settings
    runtime: Runtime
    dispatcher: Dispatcher
    engine: AsyncEngine
    sandbox: SandboxState
    erm_url: str  # the sandbox itself
    operations: list[str] = field(default_factory=list)  # GraphQL operations ERM received
    erm_proxy: TcpProxy | None = None  # between the bot and ERM, when asked for
    hooks: Hooks = field(default_factory=Hooks)

    @property
    def service(self) -> ErmService:
        return self.runtime.service

    async def grant(self, key: str, role: Role, distributor: str = ACME.name) -> None:
        platform, _, user_id = key.partition(":")
        await self.dispatcher.core.grants.grant(platform, user_id, role, distributor, "tests")

    def code_events(self, oem_id: str) -> int:
        """How many codes the sandbox ERM holds for an item (seeded history included)."""
        return len(self.sandbox.item_by_oem_id(oem_id).code_generator.events)

    async def audit(self, limit: int = 20) -> list[AuditRecord]:
        """The newest audit rows first."""
        return await AuditLog(self.engine).recent(limit=limit)


@contextlib.asynccontextmanager
async def fault_stack(
    database_url: str,
    secret_keys: list[str],
    *,
    connect_args: Mapping[str, Any] | None = None,
    proxy_erm: bool = False,
) -> AsyncIterator[FaultStack]:
    """The bot's core over the sandbox ERM and the database at ``database_url``.

    ``FaultStack.hooks`` see every GraphQL request (see :func:`hooked`); with ``proxy_erm`` the
    bot reaches ERM through a :class:`TcpProxy` (``FaultStack.erm_proxy``) the test can stop.
    """
    sandbox = seed_state(0)
    operations: list[str] = []
    hooks = Hooks()

    async def record(operation: str) -> None:
        operations.append(operation)
        await hooks.run_before(operation)

    engine = create_engine(database_url, connect_args=connect_args)
    try:
        await migrate(engine)
        async with (
            serve(hooked(create_app(sandbox), record, hooks.run_after)) as sandbox_url,
            TcpProxy(*host_port(sandbox_url)) as erm_proxy,
        ):
            bot_erm_url = via_port(sandbox_url, erm_proxy.port) if proxy_erm else sandbox_url
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                erm_api_url=bot_erm_url,
                erm_connect_timeout=CONNECT_TIMEOUT,
                erm_read_timeout=READ_TIMEOUT,
                erm_total_timeout=TOTAL_TIMEOUT,
                erm_query_attempts=QUERY_ATTEMPTS,
                erm_bot_database_url=database_url,
                erm_bot_secret_keys=",".join(secret_keys),
            )
            vault = TokenVault(engine, SecretBox(secret_keys))
            async with ErmClient(settings.erm_client_config()) as client:
                # A lost answer is settled within a second here, not two minutes.
                config = ServiceConfig(
                    reconcile_delay=0.05, reconcile_quick=0.1, reconcile_window=1.0
                )
                service = ErmService(client, vault, config)
                # The sign-in goes straight to the sandbox, whatever is in front of it.
                async with ErmClient(ClientConfig(url=sandbox_url)) as direct:
                    await ErmService(direct, vault).add_distributor(
                        ACME.name, ACME.email, ACME.password
                    )
                runtime = Runtime(settings, engine, vault, client, service)
                dispatcher = runtime.dispatcher()
                try:
                    yield FaultStack(
                        settings,
                        runtime,
                        dispatcher,
                        engine,
                        sandbox,
                        sandbox_url,
                        operations,
                        erm_proxy if proxy_erm else None,
                        hooks,
                    )
                finally:
                    await dispatcher.core.background.drain(5.0)
    finally:
        await engine.dispose()


def host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    assert parsed.hostname is not None, url
    assert parsed.port is not None, url
    return parsed.hostname, parsed.port


def via_port(url: str, port: int) -> str:
    """``url`` (HTTP or a database URL) pointed at 127.0.0.1:``port`` instead."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


async def table_rows(engine: AsyncEngine) -> dict[str, int]:
    """How many request claims and audit rows the database holds."""
    async with engine.connect() as connection:
        requests = await connection.scalar(select(func.count()).select_from(RequestRow))
        audit = await connection.scalar(select(func.count()).select_from(AuditRow))
    return {"requests": int(requests or 0), "audit": int(audit or 0)}


# -- Slack, from the outside --------------------------------------------------------------------


@dataclass
class Sent:
    """A slash command sent: Slack's HTTP answer, how long the ack took, the fields it carried."""

    response: httpx.Response
    seconds: float
    fields: dict[str, str]

    @property
    def response_path(self) -> str:
        return urlparse(self.fields["response_url"]).path


@dataclass
class SlackClient:
    """Signed slash commands to the bot at ``base_url``; answers read from the fake Slack."""

    fake: FakeSlack
    http: httpx.AsyncClient  # with base_url = the bot

    async def command(self, command: str, text: str = "", **fields: Any) -> Sent:
        fields.setdefault("response_url", self.fake.response_url())
        form = command_form(command, text, **fields)
        return await self.post_form(form)

    async def post_form(self, form: dict[str, str]) -> Sent:
        body = encode_form(form)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await self.http.post(
            "/slack/events", content=body.encode(), headers=signed_headers(body)
        )
        return Sent(response, loop.time() - started, form)

    async def answer(self, sent: Sent, within: float = 15.0) -> Call:
        path = sent.response_path
        calls = await self.fake.wait_calls(
            lambda c: c.method == "response" and c.path == path, within=within
        )
        return calls[0]

    async def ask(self, command: str, text: str = "", **fields: Any) -> str:
        """A slash command's first answer, as the user reads it."""
        sent = await self.command(command, text, **fields)
        assert sent.response.status_code == 200, sent.response.text
        return shown(await self.answer(sent))


# -- erm-bot run as a process -------------------------------------------------------------------


async def start_bot(
    env: Mapping[str, str], port: int, cwd: Path, *, log: Path, start_timeout: float = 30.0
) -> asyncio.subprocess.Process:
    """Start ``erm-bot run`` with only ``env`` as its configuration; returns once it is healthy.

    Its stdout and stderr go to ``log`` (appended: one file across restarts).
    """
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("ERM_", "SLACK_", "TELEGRAM_"))
    }
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            str(ERM_BOT),
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            cwd=cwd,
            env={**environment, **env},
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=2.0) as http, asyncio.timeout(start_timeout):
        while True:
            if process.returncode is not None:
                output = await asyncio.to_thread(log.read_text, errors="replace")
                raise AssertionError(
                    f"erm-bot run exited with {process.returncode}: {output[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return process
            await asyncio.sleep(0.1)


async def stop_bot(process: asyncio.subprocess.Process) -> None:
    """SIGKILL (a no-op when it has ended), then reap it (bounded)."""
    if process.returncode is None:
        process.kill()
    await asyncio.wait_for(process.wait(), STOP_TIMEOUT)


async def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Poll ``condition`` (cheap, in this loop) until it holds; fail after ``within`` s."""
    try:
        async with asyncio.timeout(within):
            while not condition():  # noqa: ASYNC110 - state changed by other tasks and servers
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {within:g} s waiting for {what}") from None


def settings_of(env: Mapping[str, str]) -> Settings:
    """The settings a process reads from ``env`` alone (no .env file, no os.environ)."""
    return Settings.model_validate({name.lower(): value for name, value in env.items()})
