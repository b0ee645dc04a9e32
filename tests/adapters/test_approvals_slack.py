"""Approvals through the Slack fake: requests, cards in the approval channel, clicks, decisions.

Both adapters run (the Telegram group is an approval chat too), so every card shown here is also
in the Telegram group; tests/adapters/test_approvals_cross.py decides across platforms.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from approvals_rig import (
    ITEM,
    SLACK_ADMIN,
    SLACK_AGENT,
    SLACK_CHANNEL,
    SLACK_SUPERVISOR,
    SLACK_VIEWER,
    Team,
    assert_code_only_in_private,
    button,
    has_buttons,
    open_team,
)
from fakes.slack import Call, FakeSlack
from fakes.telegram import FakeTelegram

from bot.storage.approval_tables import Status


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def team(stack: Any) -> AsyncIterator[Team]:
    async with (
        FakeSlack() as fake_slack,
        FakeTelegram() as fake_telegram,
        open_team(stack, fake_slack, fake_telegram) as team,
    ):
        yield team


async def request_free(team: Team, user: str = SLACK_AGENT, channel: str = "D1") -> Call:
    """A free code asked for in Slack; returns the card it put in the approval channel."""
    answer = await team.slack.ask(user, "/code", f"free {ITEM} paid off", channel=channel)
    assert "Waiting for a supervisor" in answer.text, answer.text
    assert answer.body["response_type"] == "ephemeral"
    [card] = await team.slack.wait_cards()
    return card


async def test_approvals_here_answers_in_the_channel_for_everyone(team: Team) -> None:
    [here] = [c for c in team.slack.fake.calls_to("response") if "come to this chat" in c.text]

    assert here.body["response_type"] == "in_channel"
    channels = await team.approvals.store.channels("acme")
    assert {(c.platform, c.chat_id) for c in channels} == {
        ("slack", SLACK_CHANNEL),
        ("telegram", str(-100777000)),
    }


async def test_a_request_is_pending_privately_and_carded_in_the_channel(team: Team) -> None:
    before = team.stack.code_events(ITEM)

    card = await request_free(team)

    assert team.stack.code_events(ITEM) == before
    assert has_buttons(card.body)
    assert button(card, "Approve")["style"] == "primary"
    assert button(card, "Deny")["style"] == "danger"
    approval = await team.only()
    assert approval.id in card.text
    assert "name-U1" in card.text
    assert "/erm approvals approve" in str(card.blocks)  # spelled the way Slack users type it


async def test_approve_sends_the_code_by_dm_and_edits_every_card(team: Team) -> None:
    card = await request_free(team)
    approval = await team.only()
    before = team.stack.code_events(ITEM)

    notice_path = await team.slack.click(SLACK_SUPERVISOR, card, "Approve")
    notice = await team.slack.answer(notice_path)
    [dm] = await team.slack.wait_dms(SLACK_AGENT)
    await team.slack.fake.wait_for("chat.update")
    await team.telegram.fake.wait_until(lambda: team.telegram.cards()[0].edits >= 1)

    assert team.stack.code_events(ITEM) == before + 1
    assert notice.body["response_type"] == "ephemeral"
    assert "sent privately to name-U1" in notice.text
    record = await team.issued(approval.id)
    assert record.code_dec[:6] in dm.dump().replace(" ", "")
    shown = team.slack.current(card)
    assert not has_buttons(shown)
    assert "Approved by name-U5" in shown["text"]
    [tg_card] = team.telegram.cards()
    assert tg_card.buttons == []
    assert "Approved by name-U5" in tg_card.plain
    assert_code_only_in_private(team, record, f"slack:{SLACK_AGENT}")


async def test_a_double_click_issues_one_code_and_tells_the_second_who_decided(
    team: Team,
) -> None:
    card = await request_free(team)
    before = team.stack.code_events(ITEM)

    first, second = await asyncio.gather(
        team.slack.click(SLACK_SUPERVISOR, card, "Approve"),
        team.slack.click(SLACK_SUPERVISOR, card, "Approve"),
    )
    notices = [(await team.slack.answer(p)).text for p in (first, second)]
    await team.slack.wait_dms(SLACK_AGENT)

    assert team.stack.code_events(ITEM) == before + 1
    assert sum("sent privately" in n for n in notices) == 1
    assert sum("Already approved by name-U5" in n for n in notices) == 1
    assert len(team.slack.dms(SLACK_AGENT)) == 1


async def test_deny_by_command_with_a_reason_tells_the_requester_by_dm(team: Team) -> None:
    card = await request_free(team)
    approval = await team.only()
    before = team.stack.code_events(ITEM)

    answer = await team.slack.ask(
        SLACK_ADMIN, "/erm", f"approvals deny {approval.id} balance not paid"
    )
    [dm] = await team.slack.wait_dms(SLACK_AGENT)
    await team.slack.fake.wait_for("chat.update")

    assert team.stack.code_events(ITEM) == before
    assert f"Denied {approval.id}" in answer.text
    assert "Reason: balance not paid" in dm.text
    shown = team.slack.current(card)
    assert not has_buttons(shown)
    assert "Denied by name-U7" in shown["text"]


async def test_deny_button_offers_deny_without_reason_then_denies(team: Team) -> None:
    card = await request_free(team)
    approval = await team.only()

    asked = await team.slack.answer(await team.slack.click(SLACK_SUPERVISOR, card, "Deny"))
    assert asked.body["replace_original"] is True
    asked_card = Call(
        card.method, card.path, card.headers, asked.body, card.at, card.status, card.answer
    )
    assert [b["text"]["text"] for b in _buttons(asked.body)] == ["Deny without reason", "Back"]
    assert f"/erm approvals deny {approval.id} REASON" in asked.text
    done = await team.slack.answer(
        await team.slack.click(SLACK_SUPERVISOR, asked_card, "Deny without reason")
    )
    await team.slack.wait_dms(SLACK_AGENT)

    assert f"Denied {approval.id}" in done.text
    assert (await team.approvals.load(approval.id)).status is Status.DENIED


async def test_self_approval_is_refused_privately_and_changes_nothing(team: Team) -> None:
    await team.slack.ask(SLACK_ADMIN, "/erm", "approvals policy supervisors on")
    card = await request_free(team, SLACK_SUPERVISOR)
    approval = await team.only()

    notice = await team.slack.answer(await team.slack.click(SLACK_SUPERVISOR, card, "Approve"))

    assert notice.body["response_type"] == "ephemeral"
    assert "You asked for this yourself" in notice.text
    assert (await team.approvals.load(approval.id)).status is Status.PENDING
    assert has_buttons(team.slack.current(card))


async def test_an_approver_without_the_role_is_refused_privately(team: Team) -> None:
    card = await request_free(team)
    approval = await team.only()

    by_viewer = await team.slack.answer(await team.slack.click(SLACK_VIEWER, card, "Approve"))
    by_agent = await team.slack.answer(await team.slack.click(SLACK_AGENT, card, "Approve"))

    assert "Only a supervisor or admin of acme" in by_viewer.text
    assert "You asked for this yourself" in by_agent.text
    assert by_viewer.body["response_type"] == "ephemeral"
    assert (await team.approvals.load(approval.id)).status is Status.PENDING


async def test_a_request_made_in_a_channel_is_answered_only_to_the_requester(
    team: Team,
) -> None:
    answer = await team.slack.ask(SLACK_AGENT, "/code", f"days {ITEM} 45", channel="C1")

    assert answer.body["response_type"] == "ephemeral"
    assert "Waiting for a supervisor" in answer.text
    assert "more than 30 days" in answer.text


def _buttons(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in body.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]]
