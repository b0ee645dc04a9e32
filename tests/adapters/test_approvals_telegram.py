"""Approvals through the Telegram fake: requests, cards in the approval group, presses, expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from approvals_rig import (
    ITEM,
    TEAM,
    TG_ADMIN,
    TG_AGENT,
    TG_SUPERVISOR,
    TG_VIEWER,
    Team,
    assert_code_only_in_private,
    open_team,
)
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram, SentMessage

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


async def request_free(team: Team, **where: Any) -> SentMessage:
    """A free code asked for by the Telegram agent; returns its card in the approval group."""
    fake = team.telegram.fake
    before = len(fake.sent(TG_AGENT.id))
    fake.message(TG_AGENT, f"/code free {ITEM} paid off", **where)
    await fake.wait_until(lambda: len(fake.sent(TG_AGENT.id)) > before, what="pending notice")
    assert "Waiting for a supervisor" in fake.sent(TG_AGENT.id)[-1].plain
    [card] = await team.telegram.wait_cards()
    return card


async def test_a_request_is_pending_privately_and_carded_in_the_group(team: Team) -> None:
    before = team.stack.code_events(ITEM)

    card = await request_free(team)

    assert team.stack.code_events(ITEM) == before
    assert [b["text"] for b in card.buttons] == ["Approve", "Deny"]
    assert all(len(b["callback_data"].encode()) <= 64 for b in card.buttons)
    approval = await team.only()
    assert approval.id in card.plain
    assert "Amina Kamau" in card.plain
    assert "Account:" in card.plain
    assert "Last codes:" in card.plain


async def test_a_request_made_in_the_group_is_answered_in_the_private_chat(team: Team) -> None:
    fake = team.telegram.fake
    in_group_before = len(fake.sent(TEAM.id))

    card = await request_free(team, group=TEAM)
    await fake.wait_until(lambda: len(fake.sent(TEAM.id)) >= in_group_before + 2)

    group_texts = [m.plain for m in fake.sent(TEAM.id)[in_group_before:] if m is not card]
    assert all("Waiting for a supervisor" not in text for text in group_texts)
    assert any("private chat" in text for text in group_texts)


async def test_approve_sends_the_code_to_the_private_chat_and_edits_the_card(team: Team) -> None:
    card = await request_free(team)
    approval = await team.only()
    before = team.stack.code_events(ITEM)

    await team.telegram.press(TG_SUPERVISOR, card, "Approve")

    assert team.stack.code_events(ITEM) == before + 1
    assert "sent privately to Amina Kamau" in team.telegram.last_notice()
    assert card.buttons == []
    assert "Approved by Chloe" in card.plain
    delivered = [m for m in team.telegram.fake.sent(TG_AGENT.id) if "<code>" in m.text]
    assert len(delivered) == 1
    assert "Approved by Chloe" in delivered[0].plain
    record = await team.issued(approval.id)
    assert_code_only_in_private(team, record, f"telegram:{TG_AGENT.id}")
    await team.slack.fake.wait_for("chat.update")  # the Slack card shows it too


async def test_two_supervisors_pressing_at_once_issue_one_code(team: Team) -> None:
    card = await request_free(team)
    before = team.stack.code_events(ITEM)
    fake = team.telegram.fake

    fake.press(TG_SUPERVISOR, card, "Approve")
    fake.press(TG_ADMIN, card, "Approve")
    await fake.wait_until(lambda: len(fake.answers()) == 2, within=15, what="both answered")

    assert team.stack.code_events(ITEM) == before + 1
    notices = [str(c.params.get("text")) for c in fake.answers()]
    assert sum("sent privately" in n for n in notices) == 1
    assert sum("Already approved by" in n for n in notices) == 1
    assert len([m for m in fake.sent(TG_AGENT.id) if "<code>" in m.text]) == 1
    assert fake.unanswered_queries() == []


async def test_deny_in_the_group_with_a_reason_tells_the_agent(team: Team) -> None:
    card = await request_free(team)
    approval = await team.only()
    fake = team.telegram.fake
    before = team.stack.code_events(ITEM)

    sent = await fake.send(
        TG_SUPERVISOR, f"/approvals deny {approval.id} not paid yet", group=TEAM, replies=2
    )

    assert team.stack.code_events(ITEM) == before
    [in_group] = [m for m in sent if m.chat_id == TEAM.id]
    [told] = [m for m in sent if m.chat_id == TG_AGENT.id]
    assert f"Denied {approval.id}" in in_group.plain
    assert "Reason: not paid yet" in told.plain
    assert card.buttons == []
    assert "Denied by Chloe" in card.plain


async def test_a_viewer_pressing_approve_is_told_privately_and_nothing_changes(
    team: Team,
) -> None:
    card = await request_free(team)
    approval = await team.only()

    await team.telegram.press(TG_VIEWER, card, "Approve")

    assert "Only a supervisor or admin of acme" in team.telegram.last_notice()
    assert [b["text"] for b in card.buttons] == ["Approve", "Deny"]
    assert (await team.approvals.load(approval.id)).status is Status.PENDING


async def test_an_expired_request_edits_the_card_and_tells_the_agent(team: Team) -> None:
    card = await request_free(team)
    approval = await team.only()
    fake = team.telegram.fake

    approve = card.button("Approve")["callback_data"]

    report = await team.approvals.sweep(
        approval.created_at + timedelta(hours=24, seconds=1), team.dispatcher.run
    )

    assert report.expired == 1
    assert card.buttons == []
    assert card.plain.startswith("Expired")
    assert any("expired" in m.plain for m in fake.sent(TG_AGENT.id))
    # A phone that still shows the old buttons presses Approve.
    fake.queue(fake.callback_update(TG_SUPERVISOR, card, approve))
    await fake.wait_until(lambda: len(fake.answers()) == 1, what="the press answered")
    assert "expired" in team.telegram.last_notice()


async def test_a_reminder_card_is_posted_at_half_time_and_updated_with_the_decision(
    team: Team,
) -> None:
    await request_free(team)
    approval = await team.only()

    await team.approvals.sweep(
        approval.created_at + timedelta(hours=12, seconds=1), team.dispatcher.run
    )
    first, reminder = team.telegram.cards()
    assert reminder.plain.startswith("⚠️ Reminder")
    await team.telegram.press(TG_SUPERVISOR, reminder, "Approve")

    assert first.buttons == []
    assert reminder.buttons == []


async def test_the_agent_cancels_and_the_card_says_so(team: Team) -> None:
    card = await request_free(team)
    approval = await team.only()
    fake = team.telegram.fake

    [answer] = await fake.send(TG_AGENT, f"/approvals cancel {approval.id}")
    await fake.wait_until(lambda: card.edits >= 1, what="card edited")

    assert f"Cancelled {approval.id}" in answer.plain
    assert card.plain.startswith("Cancelled")
    assert card.buttons == []


async def test_the_requester_pressing_approve_is_refused_and_the_press_answered(
    team: Team,
) -> None:
    card = await request_free(team)

    await team.telegram.press(TG_AGENT, card, "Deny")

    assert "You asked for this yourself" in team.telegram.last_notice()
    assert team.telegram.fake.unanswered_queries() == []
