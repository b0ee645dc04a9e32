"""Deciding approval requests in the core: once, by the right people, on time, all audited.

Cards go to a recording notifier standing in for a platform; the chat adapters' own tests
(tests/adapters/test_approvals_*.py) run the same flow through the Slack and Telegram fakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from approval_harness import (
    CHANNEL,
    check_waiting,
    pending_id,
    service,
    with_approvals,
    with_channel,
)
from bot_harness import Bot
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import metrics
from bot.approvals.service import ApprovalService
from bot.dispatch import Dispatcher
from bot.messages import Click, Identity, Tone
from bot.roles import Role
from bot.storage.approval_tables import ApprovalRow, Status
from bot.storage.approvals import ApprovalStore
from erm.models import keypad_format
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
BotFactory = Callable[..., Awaitable[Any]]  # tests/bot/conftest.py's make_bot


@pytest.fixture
async def abot(make_bot: BotFactory, bot_engine: AsyncEngine) -> Bot:
    return with_approvals(await make_bot(bot_engine))


@pytest.fixture
async def any_abot(make_bot: BotFactory, engine: AsyncEngine) -> Bot:
    """With approvals, on SQLite and on PostgreSQL."""
    return with_approvals(await make_bot(engine))


async def ask_free(bot: Bot, user: str = "agent") -> str:
    reply = await bot.say(user, f"/code free {ITEM} paid off")
    return check_waiting(reply)


def button(reply: Any, label: str) -> str:
    return str(next(b.value for b in reply.buttons if b.label == label))


async def test_a_request_is_posted_as_a_card_with_context_and_no_code(abot: Bot) -> None:
    team, _ = await with_channel(abot)

    approval_id = await ask_free(abot)

    [(chat, card)] = team.posts
    text = card.text()
    assert chat == CHANNEL
    assert approval_id in text
    assert "console:agent" in text
    assert "paid off" in text  # the note
    assert "Last codes:" in text
    assert "free codes need approval" in text
    assert [b.label for b in card.buttons] == ["Approve", "Deny"]
    assert card.codes == ()


async def test_approve_issues_the_code_once_and_sends_it_to_the_requester_privately(
    abot: Bot,
) -> None:
    team, console = await with_channel(abot)
    approval_id = await ask_free(abot)
    before = abot.code_events(ITEM)

    approved = await abot.say("supervisor", f"/approvals approve {approval_id}")

    assert abot.code_events(ITEM) == before + 1
    assert "sent privately" in approved.text()
    assert approved.codes == ()  # the approver never sees the code
    [delivered] = console.private_to("agent")
    assert len(delivered.codes) == 1
    assert "Approved by console:supervisor" in delivered.text()
    record = await abot.core.codes.last_issue(
        "acme", (await service(abot).load(approval_id)).item_id
    )
    assert record is not None
    assert record.approval_id == approval_id
    assert record.issued_by_user == "agent"
    [(_, final)] = team.cards.values()
    assert final.buttons == ()
    assert final.title is not None
    assert final.title.startswith("Approved")
    assert "Approved by console:supervisor at" in final.text()
    assert record.code_dec not in final.text()
    assert keypad_format(record.code_dec) not in final.text()


async def test_the_approve_button_works_like_the_command(abot: Bot) -> None:
    team, console = await with_channel(abot)
    await ask_free(abot)
    [(_, card)] = team.posts

    pressed = await abot.dispatcher.press(
        Click(Identity("console", "supervisor"), button(card, "Approve"), request_key="k1")
    )

    assert pressed.notice is not None
    assert "sent privately to console:agent" in pressed.notice
    assert len(console.private_to("agent")[0].codes) == 1


async def test_a_second_approval_is_told_who_decided_first_and_issues_nothing(abot: Bot) -> None:
    approval_id = await ask_free(abot)
    await abot.say("supervisor", f"/approvals approve {approval_id}")
    after_first = abot.code_events(ITEM)

    again = await abot.say("admin", f"/approvals approve {approval_id}")

    assert abot.code_events(ITEM) == after_first
    assert again.tone is Tone.WARNING
    assert "Already approved by console:supervisor at" in again.text()


async def test_self_approval_is_refused_and_changes_nothing(abot: Bot) -> None:
    await abot.say("admin", "/approvals policy supervisors on")
    approval_id = await ask_free(abot, "supervisor")

    refused = await abot.say("supervisor", f"/approvals approve {approval_id}")

    assert refused.tone is Tone.WARNING
    assert "You asked for this yourself" in refused.text()
    assert (await service(abot).load(approval_id)).status is Status.PENDING


@pytest.mark.parametrize("user", ["viewer", "stranger"])
async def test_an_approver_without_the_role_is_refused_and_nothing_changes(
    abot: Bot, user: str
) -> None:
    team, _ = await with_channel(abot)
    approval_id = await ask_free(abot)
    [(_, card)] = team.posts

    pressed = await abot.dispatcher.press(
        Click(Identity("console", user), button(card, "Approve"), request_key=f"k-{user}")
    )

    assert pressed.notice is not None
    assert (await service(abot).load(approval_id)).status is Status.PENDING


async def test_an_agent_clicking_approve_is_told_who_may(abot: Bot) -> None:
    team, _ = await with_channel(abot)
    await ask_free(abot)
    await abot.core.grants.grant("console", "other", Role.AGENT, "acme", "tests")
    [(_, card)] = team.posts

    pressed = await abot.dispatcher.press(
        Click(Identity("console", "other"), button(card, "Approve"), request_key="k2")
    )

    assert pressed.notice == "Only a supervisor or admin of acme can decide this; you are agent."


async def test_deny_with_a_reason_tells_the_requester_and_issues_nothing(abot: Bot) -> None:
    team, console = await with_channel(abot)
    approval_id = await ask_free(abot)
    before = abot.code_events(ITEM)

    denied = await abot.say("supervisor", f"/approvals deny {approval_id} balance not paid")

    assert abot.code_events(ITEM) == before
    assert "console:agent was told" in denied.text()
    [told] = console.private_to("agent")
    assert "Reason: balance not paid" in told.text()
    [(_, final)] = team.cards.values()
    assert final.buttons == ()
    assert "Reason: balance not paid" in final.text()


async def test_the_deny_button_asks_for_a_reason_first_and_back_restores_the_card(
    abot: Bot,
) -> None:
    team, _ = await with_channel(abot)
    approval_id = await ask_free(abot)
    [(_, card)] = team.posts
    supervisor = Identity("console", "supervisor")

    asked = await abot.dispatcher.press(Click(supervisor, button(card, "Deny"), "k1"))
    assert asked.card is not None
    assert [b.label for b in asked.card.buttons] == ["Deny without reason", "Back"]
    assert f"/approvals deny {approval_id} REASON" in asked.card.text()
    back = await abot.dispatcher.press(Click(supervisor, button(asked.card, "Back"), "k2"))
    assert back.card is not None
    assert [b.label for b in back.card.buttons] == ["Approve", "Deny"]
    asked = await abot.dispatcher.press(Click(supervisor, button(back.card, "Deny"), "k3"))
    assert asked.card is not None
    denied = await abot.dispatcher.press(
        Click(supervisor, button(asked.card, "Deny without reason"), "k4")
    )

    assert denied.notice is not None

    assert denied.notice.startswith(f"Denied {approval_id}")
    approval = await service(abot).load(approval_id)
    assert approval.status is Status.DENIED
    assert approval.reason is None


async def test_the_requester_can_cancel_and_no_one_else(abot: Bot) -> None:
    team, _ = await with_channel(abot)
    approval_id = await ask_free(abot)

    by_other = await abot.say("supervisor", f"/approvals cancel {approval_id}")
    cancelled = await abot.say("agent", f"/approvals cancel {approval_id}")
    approve_after = await abot.say("supervisor", f"/approvals approve {approval_id}")

    assert by_other.tone is Tone.WARNING
    assert "Cancelled" in cancelled.text()
    assert "was cancelled by console:agent" in approve_after.text()
    [(_, final)] = team.cards.values()
    assert final.title is not None
    assert final.title.startswith("Cancelled")


async def test_sweep_expires_a_request_tells_the_requester_and_updates_its_cards(
    abot: Bot,
) -> None:
    team, console = await with_channel(abot)
    approval_id = await ask_free(abot)
    later = abot.core.clock() + timedelta(hours=24, minutes=1)

    report = await service(abot).sweep(later, abot.dispatcher.run)
    again = await service(abot).sweep(later, abot.dispatcher.run)

    assert report.expired == 1
    assert again.expired == 0
    assert (await service(abot).load(approval_id)).status is Status.EXPIRED
    assert "expired" in console.private_to("agent")[0].text()
    [(_, final)] = team.cards.values()
    assert final.title is not None
    assert final.title.startswith("Expired")


async def test_approving_after_the_expiry_time_is_refused_even_before_a_sweep(abot: Bot) -> None:
    approval_id = await ask_free(abot)
    real_clock = abot.core.clock
    abot.core.clock = lambda: real_clock() + timedelta(hours=25)
    before = abot.code_events(ITEM)

    refused = await abot.say("supervisor", f"/approvals approve {approval_id}")

    assert "expired" in refused.text()
    assert abot.code_events(ITEM) == before
    assert (await service(abot).load(approval_id)).status is Status.EXPIRED


async def test_sweep_reminds_approvers_once_at_half_time(abot: Bot) -> None:
    team, _ = await with_channel(abot)
    await ask_free(abot)
    now = abot.core.clock()

    early = await service(abot).sweep(now + timedelta(hours=11), abot.dispatcher.run)
    half = await service(abot).sweep(now + timedelta(hours=12, minutes=1), abot.dispatcher.run)
    later = await service(abot).sweep(now + timedelta(hours=13), abot.dispatcher.run)

    assert (early.reminded, half.reminded, later.reminded) == (0, 1, 0)
    assert len(team.posts) == 2
    reminder = team.posts[1][1]
    assert reminder.title is not None
    assert reminder.title.startswith("Reminder")
    assert [b.label for b in reminder.buttons] == ["Approve", "Deny"]


async def test_a_card_that_could_not_be_posted_is_posted_by_a_later_sweep(abot: Bot) -> None:
    team, _ = await with_channel(abot)
    team.down = True
    await ask_free(abot)
    assert team.posts == []
    team.down = False

    # A failed post waits a minute before the next attempt.
    report = await service(abot).sweep(
        abot.core.clock() + timedelta(minutes=1), abot.dispatcher.run
    )

    assert report.posted == 1
    assert len(team.posts) == 1


async def test_cards_another_process_could_not_edit_are_finished_by_a_sweep(abot: Bot) -> None:
    team, _ = await with_channel(abot)
    approval_id = await ask_free(abot)
    team.down = True
    await abot.say("supervisor", f"/approvals approve {approval_id}")
    team.down = False

    report = await service(abot).sweep(abot.core.clock(), abot.dispatcher.run)

    assert report.settled == 1
    [(_, final)] = team.cards.values()
    assert final.buttons == ()


async def test_an_approval_changed_in_the_database_issues_nothing(abot: Bot) -> None:
    approval_id = await ask_free(abot)
    async with abot.engine.begin() as connection:
        await connection.execute(
            update(ApprovalRow).where(ApprovalRow.id == approval_id).values(note="other note")
        )
    before = abot.code_events(ITEM)

    reply = await abot.say("supervisor", f"/approvals approve {approval_id}")

    assert abot.code_events(ITEM) == before
    assert "not issued" in reply.text()


async def test_every_step_is_audited_with_the_approval_id(abot: Bot) -> None:
    await with_channel(abot)
    approval_id = await ask_free(abot)
    await abot.say("supervisor", f"/approvals approve {approval_id}")

    rows = [r for r in await abot.core.audit.recent(limit=50) if r.approval_id == approval_id]
    outcomes = [r.outcome for r in reversed(rows) if r.command == "approval"]

    assert outcomes == ["requested", "posted", "decided", "executed", "delivered"]
    commands = [r.request_key for r in reversed(rows) if r.command == "code free"]
    assert len(commands) == 2  # the request (pending) and its run once approved
    assert commands[1] == f"approval:{approval_id}"
    assert (await abot.core.audit.verify()).ok


async def test_expired_and_cancelled_are_audited(abot: Bot) -> None:
    first = await ask_free(abot)
    second = pending_id(await abot.say("agent", f"/code reset {ITEM}"))
    await abot.say("agent", f"/approvals cancel {second}")
    await service(abot).sweep(abot.core.clock() + timedelta(days=2), abot.dispatcher.run)

    rows = await abot.core.audit.recent(limit=50)

    assert any(r.approval_id == first and r.outcome == "expired" for r in rows)
    assert any(r.approval_id == second and r.outcome == "cancelled" for r in rows)


async def test_a_new_dispatcher_on_the_same_database_decides_a_pending_request(
    abot: Bot,
) -> None:
    team, console = await with_channel(abot)
    approval_id = await ask_free(abot)
    [(_, card)] = team.posts
    # "Restart": a new core and dispatcher over the same database, notifiers registered again.
    core = replace(
        abot.core,
        approvals=ApprovalService(ApprovalStore(abot.engine)),
        notifiers={"slack": team, "console": console},
    )
    restarted = Dispatcher(core)

    pressed = await restarted.press(
        Click(Identity("console", "supervisor"), button(card, "Approve"), request_key="after")
    )

    assert pressed.notice is not None

    assert "sent privately" in pressed.notice
    assert (await service(abot).load(approval_id)).status is Status.APPROVED


async def test_two_approvers_at_once_make_one_decision_and_one_code(any_abot: Bot) -> None:
    bot = any_abot
    team, console = await with_channel(bot)
    approval_id = await ask_free(bot)
    before = bot.code_events(ITEM)

    replies = await asyncio.gather(
        bot.say("supervisor", f"/approvals approve {approval_id}"),
        bot.say("admin", f"/approvals approve {approval_id}"),
        bot.say("admin", f"/approvals deny {approval_id} changed my mind"),
    )

    assert bot.code_events(ITEM) - before in (0, 1)
    winners = [r for r in replies if r.tone is Tone.OK]
    assert len(winners) == 1
    approval = await service(bot).load(approval_id)
    if approval.status is Status.APPROVED:
        assert bot.code_events(ITEM) == before + 1
        assert len([r for r in console.private_to("agent") if r.codes]) == 1
    else:
        assert bot.code_events(ITEM) == before
    assert len(team.edits) == 1


async def test_the_time_to_a_decision_is_measured(abot: Bot) -> None:
    def decided(decision: str) -> float:
        return metrics.value("erm_bot_approval_latency_seconds_count", decision=decision)

    approved, denied = decided("approved"), decided("denied")
    first = await ask_free(abot)
    second = pending_id(await abot.say("agent", f"/code reset {ITEM}"))

    await abot.say("supervisor", f"/approvals approve {first}")
    await abot.say("supervisor", f"/approvals deny {second}")

    assert decided("approved") == approved + 1
    assert decided("denied") == denied + 1
