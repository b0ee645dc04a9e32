"""Approvals with real ``erm-bot run`` processes on one PostgreSQL database (a database of its own:
a process is configured by URL alone), Slack on the loopback fake, ERM on the sandbox.

- two processes get clicks for the same request at the same moment: exactly one code;
- the process that posted a card is killed with SIGKILL; another process decides the card.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from approvals_rig import (
    ITEM,
    SLACK_ADMIN,
    SLACK_AGENT,
    SLACK_SUPERVISOR,
    SlackSide,
    card_ts,
    has_buttons,
)
from fakes.slack import SIGNING_SECRET, FakeSlack
from support import fresh_postgres_database

from adapters.runtime import open_runtime
from adapters.settings import Settings
from bot.roles import Role
from bot.storage.approval_tables import Status
from bot.storage.approvals import ApprovalStore
from bot.storage.grants import GrantStore
from erm.models import keypad_format
from erm.sandbox import ACME, create_app, seed_state, serve
from erm.sandbox.state import SandboxState

pytestmark = pytest.mark.postgres

ERM_BOT = Path(sys.executable).with_name("erm-bot")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@pytest.fixture
async def postgres_database() -> AsyncIterator[str]:
    """A new PostgreSQL database for the processes, dropped afterwards."""
    async with fresh_postgres_database("erm_bot_approvals") as url:
        yield url


@dataclass
class World:
    env: dict[str, str]
    sandbox: SandboxState
    slack: FakeSlack
    cwd: Path

    def code_events(self) -> int:
        return len(self.sandbox.item_by_oem_id(ITEM).code_generator.events)

    def newest_code(self) -> str:
        return str(self.sandbox.item_by_oem_id(ITEM).code_generator.events[-1].code_dec_string)

    @property
    def settings(self) -> Settings:
        return Settings.model_validate({k.lower(): v for k, v in self.env.items()})


@pytest.fixture
async def world(
    postgres_database: str, tmp_path: Path, secret_keys: list[str]
) -> AsyncIterator[World]:
    sandbox = seed_state(0)
    async with serve(create_app(sandbox)) as erm_url, FakeSlack() as slack:
        env = {
            "ERM_API_URL": erm_url,
            "ERM_BOT_DATABASE_URL": postgres_database,
            "ERM_BOT_SECRET_KEYS": ",".join(secret_keys),
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
        }
        world = World(env, sandbox, slack, tmp_path)
        async with open_runtime(world.settings) as runtime:
            await runtime.service.add_distributor(ACME.name, ACME.email, ACME.password)
            grants = GrantStore(runtime.engine)
            for user, role in (
                (SLACK_AGENT, Role.AGENT),
                (SLACK_SUPERVISOR, Role.SUPERVISOR),
                (SLACK_ADMIN, Role.ADMIN),
            ):
                await grants.grant("slack", user, role, ACME.name, "tests")
            await ApprovalStore(runtime.engine).set_channel(
                ACME.name, "slack", "C9", by="tests", now=datetime.now(UTC)
            )
        yield world


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Bot:
    """One ``erm-bot run`` process, and Slack as its users reach it."""

    process: asyncio.subprocess.Process
    slack: SlackSide


@contextlib.asynccontextmanager
async def erm_bot_run(world: World, name: str) -> AsyncIterator[Bot]:
    """``erm-bot run`` configured by ``world.env`` alone; Slack as users reach that process."""
    port = _free_port()
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("ERM_", "SLACK_", "TELEGRAM_"))
    }
    log = world.cwd / f"{name}.log"
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            str(ERM_BOT),
            "run",
            "--port",
            str(port),
            cwd=world.cwd,
            env={**environment, **world.env},
            stdout=out,
            stderr=out,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=15.0) as http:
            await _healthy(process, http, log)
            yield Bot(process, SlackSide(world.slack, None, http))
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)


async def _healthy(process: asyncio.subprocess.Process, http: httpx.AsyncClient, log: Path) -> None:
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            if process.returncode is not None:
                output = await asyncio.to_thread(log.read_text, errors="replace")
                raise AssertionError(f"erm-bot run exited with {process.returncode}: {output}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


async def _pending(slack: SlackSide, world: World) -> str:
    answer = await slack.ask(SLACK_AGENT, "/code", f"free {ITEM} paid off", channel="D1")
    assert "Waiting for a supervisor" in answer.text, answer.text
    await slack.wait_cards(channel="C9")
    async with open_runtime(world.settings) as runtime:
        [approval] = await ApprovalStore(runtime.engine).pending([ACME.name], now=datetime.now(UTC))
    return approval.id


def _channel_messages_without(world: World, code: str) -> bool:
    """No message the fake recorded carries the code, except the DM to the requester."""
    forms = (code, keypad_format(code), keypad_format(code).replace(" ", ""))
    with_code = [c for c in world.slack.calls if any(f in c.dump() for f in forms)]
    return [(c.method, c.channel) for c in with_code] == [("chat.postMessage", SLACK_AGENT)]


async def test_two_processes_clicked_at_the_same_moment_issue_exactly_one_code(
    world: World,
) -> None:
    async with erm_bot_run(world, "a") as bot_a, erm_bot_run(world, "b") as bot_b:
        a, b = bot_a.slack, bot_b.slack
        approval_id = await _pending(a, world)
        [card] = a.cards("C9")
        before = world.code_events()

        paths = await asyncio.gather(
            a.click(SLACK_SUPERVISOR, card, "Approve"),
            b.click(SLACK_ADMIN, card, "Approve"),
            b.click(SLACK_SUPERVISOR, card, "Approve"),
            a.click(SLACK_ADMIN, card, "Approve"),
        )
        notices = [(await a.answer(path)).text for path in paths]
        await a.wait_dms(SLACK_AGENT)
        await world.slack.wait_for("chat.update")

    assert world.code_events() == before + 1
    assert sum("sent privately" in n for n in notices) == 1
    assert sum("Already approved by" in n for n in notices) == 3
    assert len(a.dms(SLACK_AGENT)) == 1
    assert not has_buttons(world.slack.messages[("C9", card_ts(card))])
    assert _channel_messages_without(world, world.newest_code())
    async with open_runtime(world.settings) as runtime:
        approval = await ApprovalStore(runtime.engine).get(approval_id)
    assert approval is not None
    assert approval.status is Status.APPROVED


async def test_a_card_of_a_killed_process_is_decided_by_another(world: World) -> None:
    async with erm_bot_run(world, "a") as bot_a:
        await _pending(bot_a.slack, world)
        [card] = bot_a.slack.cards("C9")
        bot_a.process.kill()  # SIGKILL: no shutdown at all
    before = world.code_events()

    async with erm_bot_run(world, "b") as bot_b:
        b = bot_b.slack
        notice = await b.answer(await b.click(SLACK_SUPERVISOR, card, "Approve"))
        [dm] = await b.wait_dms(SLACK_AGENT)
        await world.slack.wait_for("chat.update")

    assert "sent privately" in notice.text
    assert world.code_events() == before + 1
    assert "Free code" in dm.text
    assert _channel_messages_without(world, world.newest_code())
