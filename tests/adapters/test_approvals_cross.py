"""Approvals across platforms, restarts and processes: the database decides, once.

- a Telegram agent's request approved from Slack, and a Slack agent's from Telegram;
- a restart between request and decision (new dispatcher and adapters on the same database) and
  a click on a card posted before it;
- two bot processes (separate engines, dispatchers and Slack adapters) on one database, SQLite and
  PostgreSQL, receiving clicks for the same request at the same moment: one code.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from approvals_rig import (
    ITEM,
    SLACK_ADMIN,
    SLACK_AGENT,
    SLACK_SUPERVISOR,
    TG_AGENT,
    TG_SUPERVISOR,
    Team,
    assert_code_only_in_private,
    has_buttons,
    open_team,
)
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram
from support import TestDatabase

from adapters.runtime import Runtime
from bot.storage.approval_tables import Status
from erm.client import ErmClient
from erm.secret_box import SecretBox
from erm.service import ErmService
from erm.vault import TokenVault


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeSlack, FakeTelegram]]:
    # A bot id of its own: the PostgreSQL polling lock is per bot id, and other test runs may
    # share the server.
    bot_id = secrets.randbelow(10**9) + 10**9
    telegram = FakeTelegram(token=f"{bot_id}:AAH-approvals-suite-token", bot_id=bot_id)
    async with FakeSlack() as fake_slack, telegram as fake_telegram:
        yield fake_slack, fake_telegram


@pytest.fixture
async def team(stack: Any, fakes: tuple[FakeSlack, FakeTelegram]) -> AsyncIterator[Team]:
    async with open_team(stack, *fakes) as team:
        yield team


async def telegram_request(team: Team) -> None:
    fake = team.telegram.fake
    fake.message(TG_AGENT, f"/code free {ITEM} paid off")
    await team.telegram.wait_cards()
    await team.slack.wait_cards()


async def test_a_telegram_request_is_approved_from_slack(team: Team) -> None:
    await telegram_request(team)
    approval = await team.only()
    [slack_card] = team.slack.cards()
    [telegram_card] = team.telegram.cards()
    before = team.stack.code_events(ITEM)

    notice = await team.slack.answer(
        await team.slack.click(SLACK_SUPERVISOR, slack_card, "Approve")
    )
    fake = team.telegram.fake
    await fake.wait_until(lambda: any("<code>" in m.text for m in fake.sent(TG_AGENT.id)))
    await fake.wait_until(lambda: telegram_card.edits >= 1, what="Telegram card edited")
    await team.slack.fake.wait_for("chat.update")

    assert team.stack.code_events(ITEM) == before + 1
    assert "sent privately to Amina Kamau" in notice.text
    assert telegram_card.buttons == []
    assert "Approved by name-U5" in telegram_card.plain
    assert not has_buttons(team.slack.current(slack_card))
    record = await team.issued(approval.id)
    assert_code_only_in_private(team, record, f"telegram:{TG_AGENT.id}")


async def test_a_slack_request_is_approved_from_telegram(team: Team) -> None:
    answer = await team.slack.ask(SLACK_AGENT, "/code", f"reset {ITEM} repossessed", channel="D1")
    assert "Waiting for a supervisor" in answer.text
    [telegram_card] = await team.telegram.wait_cards()
    [slack_card] = await team.slack.wait_cards()
    approval = await team.only()
    before = team.stack.code_events(ITEM)

    await team.telegram.press(TG_SUPERVISOR, telegram_card, "Approve")
    [dm] = await team.slack.wait_dms(SLACK_AGENT)
    await team.slack.fake.wait_for("chat.update")

    assert team.stack.code_events(ITEM) == before + 1
    assert "sent privately to name-U1" in team.telegram.last_notice()
    assert "Reset code" in dm.text
    assert "Approved by Chloe" in dm.text
    assert telegram_card.buttons == []
    assert "Approved by Chloe" in team.slack.current(slack_card)["text"]
    record = await team.issued(approval.id)
    assert_code_only_in_private(team, record, f"slack:{SLACK_AGENT}")


async def test_a_card_posted_before_a_restart_is_decided_after_it(
    stack: Any, fakes: tuple[FakeSlack, FakeTelegram]
) -> None:
    fake_slack, fake_telegram = fakes
    async with open_team(stack, fake_slack, fake_telegram) as before_restart:
        await telegram_request(before_restart)
        approval = await before_restart.only()
        [slack_card] = before_restart.slack.cards()
        [telegram_card] = before_restart.telegram.cards()
    # The old process is gone. A new one: new core, dispatcher, adapters; the same database.
    restarted = stack.runtime.dispatcher()
    assert restarted.core is not stack.dispatcher.core
    events = stack.code_events(ITEM)
    async with open_team(
        stack, fake_slack, fake_telegram, dispatcher=restarted, setup=False
    ) as after_restart:
        notice = await after_restart.slack.answer(
            await after_restart.slack.click(SLACK_ADMIN, slack_card, "Approve")
        )
        await fake_telegram.wait_until(
            lambda: any("<code>" in m.text for m in fake_telegram.sent(TG_AGENT.id))
        )
        await fake_telegram.wait_until(lambda: telegram_card.edits >= 1, what="card edited")

        assert "sent privately" in notice.text
        assert stack.code_events(ITEM) == events + 1
        assert (await after_restart.approvals.load(approval.id)).status is Status.APPROVED
        assert telegram_card.buttons == []
        record = await after_restart.issued(approval.id)
        assert_code_only_in_private(after_restart, record, f"telegram:{TG_AGENT.id}")


@contextlib.asynccontextmanager
async def second_process(stack: Any, database: TestDatabase) -> AsyncIterator[Runtime]:
    """Another bot process on the same database: its own engine, vault, ERM client, service."""
    engine = database.create_engine()
    keys = stack.settings.secret_keys
    client = ErmClient(stack.settings.erm_client_config())
    await client.__aenter__()
    try:
        vault = TokenVault(engine, SecretBox(keys))
        service = ErmService(client, vault, stack.settings.erm_service_config())
        yield Runtime(stack.settings, engine, vault, client, service)
    finally:
        await client.__aexit__(None, None, None)
        await engine.dispose()


async def test_two_processes_clicking_at_the_same_moment_issue_one_code(
    any_stack: Any, database: TestDatabase, fakes: tuple[FakeSlack, FakeTelegram]
) -> None:
    stack = any_stack
    fake_slack, fake_telegram = fakes
    async with (
        second_process(stack, database) as other,
        open_team(stack, fake_slack, fake_telegram) as first,
        open_team(
            stack,
            fake_slack,
            fake_telegram,
            dispatcher=other.dispatcher(),
            engine=other.engine,
            setup=False,
            telegram=False,  # one poller per bot; the first process serves Telegram
        ) as second,
    ):
        answer = await first.slack.ask(SLACK_AGENT, "/code", f"free {ITEM}", channel="D1")
        assert "Waiting for a supervisor" in answer.text
        [card] = await first.slack.wait_cards()
        approval = await first.only()
        before = stack.code_events(ITEM)

        paths = await asyncio.gather(
            first.slack.click(SLACK_SUPERVISOR, card, "Approve"),
            second.slack.click(SLACK_ADMIN, card, "Approve"),
            first.slack.click(SLACK_ADMIN, card, "Approve"),
            second.slack.click(SLACK_SUPERVISOR, card, "Approve"),
        )
        notices = [(await first.slack.answer(p)).text for p in paths]
        await first.slack.wait_dms(SLACK_AGENT)

        assert stack.code_events(ITEM) == before + 1
        assert sum("sent privately" in n for n in notices) == 1
        assert sum("Already approved by" in n for n in notices) == 3
        assert len([c for c in first.slack.dms(SLACK_AGENT) if "```" in c.dump()]) == 1
        decided = await second.approvals.load(approval.id)
        assert decided.status is Status.APPROVED
        record = await first.issued(approval.id)
        assert_code_only_in_private(first, record, f"slack:{SLACK_AGENT}")
