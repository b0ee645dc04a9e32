"""``erm-bot run`` as a real process: Slack, Telegram and the console give the same answer.

The process is configured only through its environment, like a deployment: the sandbox ERM, the
fake Slack Web API and the fake Telegram Bot API run in this test's event loop on 127.0.0.1; the
bot's own HTTP server gets signed slash commands; Telegram updates come through long polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack, command_form, encode_form, signed_headers
from fakes.telegram import FakeTelegram, User

from adapters.runtime import open_runtime
from adapters.settings import Settings
from bot.messages import Identity, Reply, Request
from bot.roles import Role
from bot.storage.grants import GrantStore
from erm.sandbox import ACME, create_app, seed_state, serve
from erm.sandbox.seed import OPEN_ACP1_OEM_ID
from erm.secret_box import SecretBox

ERM_BOT = Path(sys.executable).parent / "erm-bot"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
AGENT = User(7001, "Amina", "amina_k")


@dataclass
class Running:
    url: str
    env: dict[str, str]
    process: asyncio.subprocess.Process
    slack: FakeSlack
    telegram: FakeTelegram


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_healthy(url: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(timeout=2.0) as http, asyncio.timeout(START_TIMEOUT):
        while True:
            if process.returncode is not None:
                assert process.stderr is not None
                err = (await process.stderr.read()).decode()
                pytest.fail(f"erm-bot run exited with {process.returncode}: {err[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    key = SecretBox.generate_key()
    async with (
        serve(create_app(seed_state())) as erm_url,
        FakeSlack() as slack,
        FakeTelegram() as telegram,
    ):
        env = {
            "ERM_API_URL": erm_url,
            "ERM_BOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
            "ERM_BOT_SECRET_KEYS": key,
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "TELEGRAM_BOT_TOKEN": telegram.token,
            "TELEGRAM_API_URL": telegram.api_url,
        }
        async with open_runtime(settings_of(env)) as runtime:
            await runtime.service.add_distributor(ACME.name, ACME.email, ACME.password)
            grants = GrantStore(runtime.engine)
            for platform, user in (
                ("slack", "U1"),
                ("telegram", str(AGENT.id)),
                ("console", "ann"),
            ):
                await grants.grant(platform, user, Role.AGENT, ACME.name, "tests")
        port = free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("ERM_", "SLACK_"))}
        process = await asyncio.create_subprocess_exec(
            str(ERM_BOT),
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            cwd=tmp_path,
            env={**environment, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_healthy(url, process)
            yield Running(url, env, process, slack, telegram)
        finally:
            if process.returncode is None:
                process.kill()
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)


def settings_of(env: dict[str, str]) -> Settings:
    """The settings the process reads from ``env`` (and nothing else: no .env, no os.environ)."""
    return Settings.model_validate({name.lower(): value for name, value in env.items()})


async def console_answer(env: dict[str, str], text: str) -> Reply:
    async with open_runtime(settings_of(env)) as runtime:
        request = Request(Identity("console", "ann"), text, request_key="console:scenario")
        return await runtime.dispatcher().handle(request)


async def test_the_same_command_gets_the_same_answer_on_slack_telegram_and_the_console(
    running: Running,
) -> None:
    text = f"history {OPEN_ACP1_OEM_ID} 3"
    form = command_form("/history", text.removeprefix("history "), user_id="U1")
    form["response_url"] = running.slack.response_url()
    body = encode_form(form)
    async with httpx.AsyncClient(base_url=running.url, timeout=5.0) as http:
        ack = await http.post("/slack/events", content=body.encode(), headers=signed_headers(body))
    assert ack.status_code == 200
    slack_answer = (await running.slack.wait_for("response"))[0].text
    telegram_answer = (await running.telegram.send(AGENT, f"/{text}", within=15.0))[0].plain
    console = await console_answer(running.env, f"/{text}")

    assert console.lines, console.text()
    for line in console.lines:  # each code event, keypad-ready, on every platform
        assert line in slack_answer
        assert line in telegram_answer


async def test_sigterm_stops_the_bot_cleanly_and_nothing_secret_is_logged(
    running: Running,
) -> None:
    await running.telegram.send(AGENT, "/whoami", within=15.0)

    running.process.send_signal(signal.SIGTERM)
    returncode = await asyncio.wait_for(running.process.wait(), STOP_TIMEOUT)
    assert running.process.stderr is not None
    log = (await running.process.stderr.read()).decode()

    assert returncode == 0, log[-2000:]
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "TELEGRAM_BOT_TOKEN"):
        assert running.env[name] not in log, name
    assert running.env["ERM_BOT_SECRET_KEYS"] not in log
    assert ACME.password not in log
