"""PostgreSQL restarting under a running bot: a TCP proxy the test stops and starts again.

The bot's engine reaches PostgreSQL only through :class:`fault_rig.TcpProxy`. Stopping the proxy
cuts every connection the bot holds and refuses new ones, which is what the bot sees while the
server restarts; starting it again on the same port is the server back. The machine's PostgreSQL
itself is shared by other tests and never touched.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack
from fakes.telegram import FakeTelegram, User
from fault_rig import (
    FaultStack,
    SlackClient,
    TcpProxy,
    fault_stack,
    host_port,
    shown,
    table_rows,
    via_port,
)
from support import TestDatabase

from adapters.platform import Attached
from adapters.slack.app import SlackAdapter
from adapters.slack.config import SlackConfig
from adapters.telegram.app import TelegramAdapter
from adapters.telegram.config import TelegramConfig
from adapters.web import create_app
from bot.audit import AuditLog
from bot.replies import STORAGE_DOWN
from bot.roles import Role
from erm.models import keypad_format
from erm.sandbox import OPEN_ACP1_OEM_ID
from erm.sandbox.server import serve_app

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database", ["postgres"], indirect=True),
]

ITEM = OPEN_ACP1_OEM_ID
OTHER_ITEM = "TEST2503000002"
AGENT = User(6001, "Baraka", "baraka_o")


@dataclass
class Outage:
    stack: FaultStack
    proxy: TcpProxy
    slack: SlackClient
    adapter: SlackAdapter


@pytest.fixture
async def outage(
    database: TestDatabase, secret_keys: list[str], fake_slack: FakeSlack
) -> AsyncIterator[Outage]:
    async with TcpProxy(*host_port(database.url)) as proxy:
        url = via_port(database.url, proxy.port)
        async with fault_stack(url, secret_keys, connect_args=database.connect_args) as stack:
            await stack.grant("slack:U1", Role.AGENT)
            config = SlackConfig(
                bot_token=fake_slack.bot_token,
                signing_secret=SIGNING_SECRET,
                api_url=fake_slack.api_url,
            )
            adapter = SlackAdapter(stack.dispatcher, config)
            attached = Attached(stack.dispatcher.core, "slack", adapter)
            async with (
                serve_app(create_app([attached])) as base_url,
                httpx.AsyncClient(base_url=base_url, timeout=10.0) as http,
            ):
                yield Outage(stack, proxy, SlackClient(fake_slack, http), adapter)


def newest_code(stack: FaultStack, oem_id: str) -> str:
    event = stack.sandbox.item_by_oem_id(oem_id).code_generator.events[-1]
    return keypad_format(event.code_dec_string)


async def test_commands_during_the_outage_are_acked_and_refused_clearly_running_nothing(
    outage: Outage,
) -> None:
    stack, slack = outage.stack, outage.slack
    await slack.ask("/history", f"{ITEM} 1")
    before = stack.code_events(OTHER_ITEM)
    await outage.proxy.stop()

    sent = await slack.command("/code", f"days {OTHER_ITEM} 3")
    text = shown(await slack.answer(sent))

    assert sent.response.status_code == 200
    assert sent.seconds < 3.0
    assert text.startswith(STORAGE_DOWN), text
    assert "incident" not in text
    assert "Traceback" not in text
    assert stack.code_events(OTHER_ITEM) == before
    assert "GenerateDaysCode" not in stack.operations


async def test_the_bot_recovers_by_itself_and_nothing_recorded_before_is_lost(
    outage: Outage,
) -> None:
    stack, slack, proxy = outage.stack, outage.slack, outage.proxy
    seeded = {item: stack.code_events(item) for item in (ITEM, OTHER_ITEM)}
    first = await slack.command("/code", f"days {ITEM} 7")
    first_text = shown(await slack.answer(first))
    code = newest_code(stack, ITEM)
    assert code in first_text
    recorded = await table_rows(stack.engine)

    await proxy.stop()
    during = await slack.ask("/code", f"days {OTHER_ITEM} 3")
    await proxy.start()
    resent = await slack.ask("/resend", ITEM)
    # Slack (or a user's client) sends the first command again: same trigger_id.
    again = await slack.post_form({**first.fields, "response_url": slack.fake.response_url()})
    again_text = shown(await slack.answer(again))
    after = await slack.ask("/code", f"days {OTHER_ITEM} 3")

    assert during.startswith(STORAGE_DOWN)
    assert code in resent
    assert code in again_text
    assert stack.code_events(ITEM) == 1 + seeded[ITEM]
    assert newest_code(stack, OTHER_ITEM) in after
    assert stack.code_events(OTHER_ITEM) == 1 + seeded[OTHER_ITEM]
    verdict = await AuditLog(stack.engine).verify()
    assert verdict.ok, verdict.problem
    now = await table_rows(stack.engine)
    # /resend and the last /code claimed keys; the outage's command and the redelivery did not.
    assert now["requests"] == recorded["requests"] + 2
    assert now["audit"] == recorded["audit"] + 3  # the redelivery is audited as a duplicate
    assert proxy.connections > 1  # the bot opened new connections by itself


async def test_database_lost_while_erm_makes_the_code_still_shows_the_code_once(
    outage: Outage,
) -> None:
    stack, slack, proxy = outage.stack, outage.slack, outage.proxy
    await slack.ask("/history", f"{ITEM} 1")
    before = stack.code_events(ITEM)

    async def restart_database_now(operation: str) -> None:
        if operation == "GenerateDaysCode":
            await proxy.stop()

    stack.hooks.before = restart_database_now
    text = await slack.ask("/code", f"days {ITEM} 12")
    stack.hooks.before = None
    await proxy.start()
    history = await slack.ask("/history", f"{ITEM} 1")

    code = newest_code(stack, ITEM)
    assert code in text
    assert "erm-bot could not record it: /resend will not show it, /history will." in text
    assert stack.code_events(ITEM) == before + 1
    assert code in history


# -- Telegram long polling on PostgreSQL --------------------------------------------------------


async def test_telegram_polling_stops_during_the_outage_and_answers_afterwards(
    outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    stack, proxy = outage.stack, outage.proxy
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    # A bot id of its own: the polling lock is per bot id and per database, and other test runs
    # on this PostgreSQL server poll their fake bots at the same time.
    bot_id = secrets.randbelow(10**9) + 10**9
    async with FakeTelegram(token=f"{bot_id}:AAH-fault-suite-token", bot_id=bot_id) as fake:
        config = TelegramConfig(
            bot_token=fake.token, api_url=fake.api_url, poll_timeout=1.0, lock_interval=0.2
        )
        adapter = TelegramAdapter(stack.dispatcher, config, stack.engine)
        attached = Attached(stack.dispatcher.core, "telegram", adapter)
        await attached.start()
        try:
            await fake.send(AGENT, "/whoami", within=15.0)
            await proxy.stop()
            await fake.wait_until(lambda: not adapter.polling, within=10.0, what="polling stops")
            answered = len(fake.sent())
            fake.message(AGENT, f"/history {ITEM} 1")  # sent during the outage
            await asyncio.sleep(0.5)
            unanswered = len(fake.sent()) == answered
            await proxy.start()
            [late] = (await fake.wait_for_messages(answered + 1, within=20.0))[answered:]
            leading_again = adapter.polling
        finally:
            await attached.stop()

    assert unanswered
    assert leading_again
    assert newest_code(stack, ITEM) in late.plain
