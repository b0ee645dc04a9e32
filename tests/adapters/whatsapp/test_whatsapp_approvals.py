"""Approvals across platforms: an agent asks on WhatsApp, a supervisor decides in the Telegram
group or the Slack channel, and the code goes back to the agent on WhatsApp only."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from approvals_rig import ITEM, SLACK_SUPERVISOR, TG_SUPERVISOR, Team, code_forms, open_team
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram
from fakes.whatsapp import FakeWhatsApp
from whatsapp_rig import AGENT, Served, ServeFactory, StackLike, wait_sent

from bot.roles import Role


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def team(stack: StackLike) -> AsyncIterator[Team]:
    bot_id = secrets.randbelow(10**9) + 10**9
    telegram = FakeTelegram(token=f"{bot_id}:AAH-whatsapp-approvals", bot_id=bot_id)
    async with FakeSlack() as slack, telegram, open_team(stack, slack, telegram) as team:
        yield team


async def ask(stack: StackLike, team: Team, serve: ServeFactory, fake: FakeWhatsApp) -> Served:
    served = await serve(stack)
    await stack.grant(f"whatsapp:{AGENT}", Role.AGENT)
    await fake.deliver(served.url, fake.user_message(AGENT, f"code free {ITEM} paid off"))
    [pending] = await wait_sent(fake, AGENT, 1)
    assert "```" not in pending.text
    await team.telegram.wait_cards()
    await team.slack.wait_cards()
    return served


def code_only_on_whatsapp(team: Team, fake: FakeWhatsApp, forms: list[str]) -> None:
    with_code = [m for m in fake.sent() if any(f in m.text for f in forms)]
    assert [m.to for m in with_code] == [AGENT]
    assert not [m for m in team.telegram.fake.messages if any(f in m.text for f in forms)]
    assert not [c for c in team.slack.fake.calls if any(f in c.dump() for f in forms)]


async def test_approved_in_the_telegram_group_the_code_reaches_the_agent_on_whatsapp(
    stack: StackLike, team: Team, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    await ask(stack, team, serve, fake)
    approval = await team.only()
    [card] = team.telegram.cards()

    await team.telegram.press(TG_SUPERVISOR, card, "Approve")

    _, delivered = await wait_sent(fake, AGENT, 2)
    assert "```" in delivered.text
    record = await team.issued(approval.id)
    code_only_on_whatsapp(team, fake, code_forms(record))


async def test_approved_in_the_slack_channel_the_code_reaches_the_agent_on_whatsapp(
    stack: StackLike, team: Team, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    await ask(stack, team, serve, fake)
    approval = await team.only()
    [card] = team.slack.cards()

    await team.slack.answer(await team.slack.click(SLACK_SUPERVISOR, card, "Approve"))

    _, delivered = await wait_sent(fake, AGENT, 2)
    assert "```" in delivered.text
    record = await team.issued(approval.id)
    code_only_on_whatsapp(team, fake, code_forms(record))
