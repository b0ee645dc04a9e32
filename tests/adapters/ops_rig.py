"""Real ``erm-bot run`` processes for the operations tests (shutdown, scaling).

A ``Deployment`` is what a bot process talks to, all in the test's event loop on 127.0.0.1: the
sandbox ERM, the fake Slack Web API and the fake Telegram Bot API, plus a database (a SQLite file,
or a PostgreSQL database of its own, created and dropped by the test) prepared as an operator
would: acme added, roles granted. Each process is configured only through its environment and
writes its log to a file (a pipe nobody reads could fill up and stall it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack, command_form, encode_form, signed_headers
from fakes.telegram import FakeTelegram, User
from support import fresh_postgres_database

from adapters.runtime import open_runtime
from adapters.settings import Settings
from bot.roles import Role
from bot.storage.grants import GrantStore
from erm.sandbox import ACME, create_app, seed_state, serve
from erm.sandbox.state import SandboxState
from erm.secret_box import SecretBox

ERM_BOT = Path(sys.executable).parent / "erm-bot"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 40.0
AGENT = User(7101, "Amina", "amina_k")
SLACK_USER = "U1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_database() -> contextlib.AbstractAsyncContextManager[str]:
    """A fresh PostgreSQL database for processes that know only a URL; dropped afterwards."""
    return fresh_postgres_database("erm_bot_ops")


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a process gets from ``env`` (and nothing else)."""
    return Settings.model_validate({name.lower(): value for name, value in env.items()})


@dataclass
class Deployment:
    erm: SandboxState
    slack: FakeSlack
    telegram: FakeTelegram
    env: dict[str, str]
    cwd: Path
    processes: list[BotProcess] = field(default_factory=list)

    def code_events(self, oem_id: str) -> int:
        return len(self.erm.item_by_oem_id(oem_id).code_generator.events)

    async def start(self, name: str, **extra: str) -> BotProcess:
        """``erm-bot run`` on a free port; Telegram calls go through ``/<name>/bot`` on the fake."""
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(_PREFIXES)},
            **self.env,
            "TELEGRAM_API_URL": self.telegram.api_url_via(name),
            "ERM_BOT_LOG_FORMAT": "json",
            **extra,
        }
        log_path = self.cwd / f"{name}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                str(ERM_BOT),
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                cwd=self.cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        bot = BotProcess(name, f"http://127.0.0.1:{port}", process, log_path)
        self.processes.append(bot)
        return bot


_PREFIXES = ("ERM_", "SLACK_", "TELEGRAM_")


@dataclass
class BotProcess:
    name: str
    url: str
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def via(self) -> str:
        """How the fake Telegram records this process's calls."""
        return f"/{self.name}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_healthy(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as http, asyncio.timeout(START_TIMEOUT):
            while True:
                if self.process.returncode is not None:
                    pytest.fail(f"{self.name} exited with {self.process.returncode}: {self.log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)

    async def terminate(self) -> int:
        """SIGTERM, then the exit status (bounded wait)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            pytest.fail(f"{self.name} did not stop within {STOP_TIMEOUT} s of SIGTERM")

    async def kill(self) -> None:
        """SIGKILL: no shutdown at all, as when a machine or a pod dies."""
        self.process.kill()
        await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)

    async def reap(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)


@contextlib.asynccontextmanager
async def deployment(cwd: Path, database_url: str) -> AsyncIterator[Deployment]:
    """Sandbox ERM, fake Slack and Telegram, the database prepared; processes reaped at the end."""
    state = seed_state()
    async with serve(create_app(state)) as erm_url, FakeSlack() as slack, FakeTelegram() as tg:
        env = {
            "ERM_API_URL": erm_url,
            "ERM_BOT_DATABASE_URL": database_url,
            "ERM_BOT_SECRET_KEYS": SecretBox.generate_key(),
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "TELEGRAM_BOT_TOKEN": tg.token,
        }
        async with open_runtime(settings_of(env)) as runtime:
            await runtime.service.add_distributor(ACME.name, ACME.email, ACME.password)
            grants = GrantStore(runtime.engine)
            await grants.grant("slack", SLACK_USER, Role.SUPERVISOR, ACME.name, "tests")
            await grants.grant("telegram", str(AGENT.id), Role.SUPERVISOR, ACME.name, "tests")
        tg.start_private(AGENT)
        deployed = Deployment(state, slack, tg, env, cwd)
        try:
            yield deployed
        finally:
            for process in deployed.processes:
                await process.reap()


async def slack_command(url: str, slack: FakeSlack, command: str, text: str) -> str:
    """POST a signed slash command to the bot at ``url``; returns its response_url."""
    form = command_form(command, text, user_id=SLACK_USER, response_url=slack.response_url())
    body = encode_form(form)
    async with httpx.AsyncClient(timeout=5.0) as http:
        response = await http.post(
            f"{url}/slack/events", content=body.encode(), headers=signed_headers(body)
        )
    assert response.status_code == 200, response.text
    return form["response_url"]


def answers(slack: FakeSlack, response_url: str) -> int:
    """How many messages the bot posted to one response_url."""
    path = httpx.URL(response_url).path
    return len([c for c in slack.calls_to("response") if c.path == path])
