"""Approvals never lost, flooded or sidestepped (issue 14: items 2, 4, 14 and 15 in part).

Each test runs the real store (SQLite, and PostgreSQL where storage races are the point) and the
bot over the in-process ERM sandbox; approval chats are recording notifiers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
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
from support import TestDatabase

from bot import metrics
from bot.approvals.cards import person
from bot.messages import Click, Identity, Reply, Tone
from bot.roles import Role
from bot.storage.approval_tables import ApprovalRow, NewApproval, Status
from bot.storage.approvals import ApprovalStore
from erm.models import CodeType
from erm.sandbox import OPEN_ACP1_OEM_ID, OPEN_OPENTOKEN_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
BotFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def abot(make_bot: BotFactory, bot_engine: AsyncEngine) -> Bot:
    return with_approvals(await make_bot(bot_engine))


@pytest.fixture
async def any_abot(make_bot: BotFactory, engine: AsyncEngine) -> Bot:
    """With approvals, on SQLite and on PostgreSQL."""
    return with_approvals(await make_bot(engine))


def later(bot: Bot, **delta: float) -> None:
    """Move the bot's clock forward (every later step sees the new time)."""
    clock = bot.core.clock
    bot.core.clock = lambda: clock() + timedelta(**delta)


async def audit_rows(bot: Bot, outcome: str) -> int:
    return sum(1 for r in await bot.core.audit.recent(limit=1000) if r.outcome == outcome)


def button(reply: Reply, label: str) -> str:
    return str(next(b.value for b in reply.buttons if b.label == label))


# -- item 2: two identical requests at the same instant make one ---------------------------------


def _new(item_id: str) -> NewApproval:
    return NewApproval(
        distributor="acme",
        requester=Identity("console", "agent"),
        requester_chat=None,
        origin_chat=None,
        code_type=CodeType.FREE,
        item_id=item_id,
        item_label=item_id,
        client_name=None,
        days=None,
        note=None,
        command_text=f"/code free {item_id}",
        needs="free codes need approval",
        context={},
        request_key=None,
    )


async def test_identical_requests_at_the_same_instant_on_two_connections_make_one(
    any_abot: Bot, database: TestDatabase
) -> None:
    second = database.create_engine()
    try:
        stores = [ApprovalStore(any_abot.engine), ApprovalStore(second)]
        now = any_abot.core.clock()
        for round_ in range(8):
            new = _new(f"item-{round_}")
            made = await asyncio.gather(
                *(s.create(new, now=now, ttl=timedelta(hours=24)) for s in stores)
            )

            assert made[0][0].id == made[1][0].id
            assert sorted(created for _, created in made) == [False, True]
        pending = await stores[0].pending(["acme"], now=now, limit=100)
        assert len(pending) == 8
    finally:
        await second.dispose()


async def test_the_same_ask_sent_twice_at_once_is_one_request(any_abot: Bot) -> None:
    replies = await asyncio.gather(
        any_abot.say("agent", f"/code free {ITEM}"), any_abot.say("agent", f"/code free {ITEM}")
    )

    assert pending_id(replies[0]) == pending_id(replies[1])
    now = any_abot.core.clock()
    assert len(await service(any_abot).store.pending(["acme"], now=now)) == 1


async def test_a_request_past_its_expiry_not_yet_swept_does_not_block_a_new_one(abot: Bot) -> None:
    first = pending_id(await abot.say("agent", f"/code free {ITEM}"))
    later(abot, hours=25)

    again = await abot.say("agent", f"/code free {ITEM}")

    assert check_waiting(again) != first


# -- item 2: an approval won but never run is finished -------------------------------------------


async def _approved_then_died(bot: Bot) -> str:
    """A request approved by a process that died before running it (no lease: an older row)."""
    approval_id = pending_id(await bot.say("agent", f"/code free {ITEM} paid off"))
    decided = await service(bot).store.decide(
        approval_id, Status.APPROVED, by=Identity("console", "supervisor"), now=bot.core.clock()
    )
    assert decided
    return approval_id


async def test_an_approval_won_but_never_run_is_run_once_by_a_later_sweep(any_abot: Bot) -> None:
    team, console = await with_channel(any_abot)
    approval_id = await _approved_then_died(any_abot)
    before = any_abot.code_events(ITEM)

    soon = await service(any_abot).sweep(any_abot.core.clock(), any_abot.dispatcher.run)
    later(any_abot, minutes=16)
    report = await service(any_abot).sweep(any_abot.core.clock(), any_abot.dispatcher.run)
    again = await service(any_abot).sweep(any_abot.core.clock(), any_abot.dispatcher.run)

    assert soon.recovered == 0  # its process may still be running it
    assert report.recovered == 1
    assert again.recovered == 0
    assert any_abot.code_events(ITEM) == before + 1
    [delivered] = console.private_to("agent")
    assert len(delivered.codes) == 1
    approval = await service(any_abot).load(approval_id)
    assert approval.result == "code issued"
    [(_, final)] = team.cards.values()
    assert final.buttons == ()


async def test_an_approved_run_that_was_cut_off_is_left_to_a_person_and_never_reissued(
    any_abot: Bot,
) -> None:
    _, console = await with_channel(any_abot)
    approval_id = await _approved_then_died(any_abot)
    # The run had started (its request key is claimed) when the process died: ERM may hold a code.
    await any_abot.core.requests.claim(f"approval:{approval_id}", "fingerprint")
    before = any_abot.code_events(ITEM)
    later(any_abot, minutes=16)

    report = await service(any_abot).sweep(any_abot.core.clock(), any_abot.dispatcher.run)

    assert report.recovered == 1
    assert any_abot.code_events(ITEM) == before
    [told] = console.private_to("agent")
    assert "interrupted" in told.text()
    assert f"/history {ITEM}" in told.text()
    assert (await service(any_abot).load(approval_id)).result == "interrupted"


async def test_an_approved_run_that_issued_but_died_before_recording_tells_without_reissuing(
    abot: Bot,
) -> None:
    _, console = await with_channel(abot)
    approval_id = pending_id(await abot.say("agent", f"/code free {ITEM}"))
    await abot.say("supervisor", f"/approvals approve {approval_id}")
    async with abot.engine.begin() as connection:  # as if it died right after the code
        await connection.execute(
            update(ApprovalRow)
            .where(ApprovalRow.id == approval_id)
            .values(executed_at=None, result=None, delivered_at=None, run_until=None)
        )
    before = abot.code_events(ITEM)
    later(abot, minutes=16)

    report = await service(abot).sweep(abot.core.clock(), abot.dispatcher.run)

    assert report.recovered == 1
    assert abot.code_events(ITEM) == before
    told = console.private_to("agent")[-1]
    assert "was issued" in told.text()
    assert f"/resend {ITEM}" in told.text()


# -- item 4: cards never lost, never flooded -----------------------------------------------------


async def test_a_card_whose_poster_was_killed_mid_post_is_posted_by_a_later_sweep(
    any_abot: Bot,
) -> None:
    team, _ = await with_channel(any_abot)
    entered = asyncio.Event()
    post = team.post_card

    async def hang(chat_id: str, reply: Reply) -> str:
        entered.set()
        await asyncio.Event().wait()  # the drain timeout cancels it here
        return "never"

    team.post_card = hang  # type: ignore[method-assign]
    asking = asyncio.create_task(any_abot.say("agent", f"/code free {ITEM}"))
    async with asyncio.timeout(10):
        await entered.wait()
    asking.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asking
    team.post_card = post  # type: ignore[method-assign]

    meanwhile = await service(any_abot).sweep(any_abot.core.clock(), any_abot.dispatcher.run)
    later(any_abot, minutes=3)
    report = await service(any_abot).sweep(any_abot.core.clock(), any_abot.dispatcher.run)
    again = await service(any_abot).sweep(any_abot.core.clock(), any_abot.dispatcher.run)

    assert meanwhile.posted == 0  # the claim holds while its poster may be alive
    assert report.posted == 1
    assert again.posted == 0
    assert len(team.posts) == 1


async def test_a_dead_approval_chat_backs_off_and_is_audited_once_per_request(
    any_abot: Bot,
) -> None:
    team, console = await with_channel(any_abot)
    team.down = True
    calls = 0
    post = team.post_card

    async def counted(chat_id: str, reply: Reply) -> str:
        nonlocal calls
        calls += 1
        return await post(chat_id, reply)

    team.post_card = counted  # type: ignore[method-assign]
    failures_before = metrics.value("erm_bot_approval_post_failures_total", platform="slack")
    asked = [await any_abot.say("agent", f"/code days {ITEM} {days}") for days in (31, 32, 33)]
    for reply in asked:  # the agent is not told about chats: nothing for them to do there
        check_waiting(reply)
        assert "chat" not in reply.text().lower()
        assert "channel" not in reply.text().lower()
    start = any_abot.core.clock()

    for minute in range(1, 61):  # an hour of sweeps, one a minute
        await service(any_abot).sweep(start + timedelta(minutes=minute), any_abot.dispatcher.run)

    assert await audit_rows(any_abot, "post_failed") == 3
    assert calls <= 3 + 18  # before: 3 + 60 * 3 = 183
    assert console.private_to("agent") == []  # supervisors see it in /approvals (below)
    failures = metrics.value("erm_bot_approval_post_failures_total", platform="slack")
    assert failures - failures_before == calls
    shown = await any_abot.say("supervisor", "/approvals")
    assert f"Approval chat unreachable: slack {CHANNEL}" in shown.text()
    assert "3 request(s)" in shown.text()

    team.down = False  # the bot is added back: the next due attempts post every card
    for minute in range(61, 130):
        await service(any_abot).sweep(start + timedelta(minutes=minute), any_abot.dispatcher.run)
    assert len(team.posts) == 3
    assert "unreachable" not in (await any_abot.say("supervisor", "/approvals")).text()


async def test_the_requester_is_told_once_when_the_sweep_cannot_reach_the_chat(abot: Bot) -> None:
    approval_id = pending_id(await abot.say("agent", f"/code free {ITEM}"))
    team, console = await with_channel(abot)  # the chat is set after the request, and is dead
    team.down = True

    for minute in range(30):
        await service(abot).sweep(
            abot.core.clock() + timedelta(minutes=minute), abot.dispatcher.run
        )

    [told] = console.private_to("agent")
    assert "could not be reached" in told.text()
    assert f"/approvals approve {approval_id}" in told.text()


async def test_cancel_after_the_expiry_expires_the_request_and_tells_the_requester(
    any_abot: Bot,
) -> None:
    _, console = await with_channel(any_abot)
    approval_id = pending_id(await any_abot.say("agent", f"/code free {ITEM}"))
    later(any_abot, hours=25)

    reply = await any_abot.say("agent", f"/approvals cancel {approval_id}")

    assert reply.tone is Tone.WARNING
    assert f"Request {approval_id} expired at" in reply.text()
    assert "ask again" in reply.text()
    assert (await service(any_abot).load(approval_id)).status is Status.EXPIRED
    [told] = console.private_to("agent")
    assert f"Request {approval_id} expired" in told.text()


@pytest.fixture
async def two_distributors(make_bot: BotFactory, bot_engine: AsyncEngine) -> Bot:
    bot = with_approvals(await make_bot(bot_engine, sunbright=True))
    await bot.grant("outsider", Role.SUPERVISOR, "sunbright")
    return bot


def _unknown(reply_text: str, approval_id: str) -> str:
    return reply_text.replace(approval_id, "ZZZZZZ")


@pytest.mark.parametrize("decided", [False, True])
async def test_a_supervisor_of_another_distributor_learns_nothing_about_a_request(
    two_distributors: Bot, decided: bool
) -> None:
    bot = two_distributors
    team, _ = await with_channel(bot)
    approval_id = pending_id(await bot.say("agent", f"/code free {ITEM} paid off"))
    [(_, card)] = team.posts
    if decided:
        await bot.say("supervisor", f"/approvals deny {approval_id} no")
    before = bot.code_events(ITEM)

    answers = {}
    for verb in ("approve", "deny", "cancel"):
        unknown = (await bot.say("outsider", f"/approvals {verb} ZZZZZZ")).text()
        known = (await bot.say("outsider", f"/approvals {verb} {approval_id}")).text()
        answers[verb] = (unknown, _unknown(known, approval_id))
    pressed = await bot.dispatcher.press(
        Click(Identity("console", "outsider"), button(card, "Approve"), request_key="k-out")
    )

    for unknown, known in answers.values():
        assert known == unknown
    assert "acme" not in " ".join(k for _, k in answers.values())
    assert (
        pressed.notice == f"No approval request {approval_id!r}. /approvals lists the pending ones."
    )
    assert bot.code_events(ITEM) == before
    expected = Status.DENIED if decided else Status.PENDING
    assert (await service(bot).load(approval_id)).status is expected


# -- item 14: split requests ---------------------------------------------------------------------


async def test_splitting_a_request_waiting_for_approval_with_again_issues_nothing(
    any_abot: Bot,
) -> None:
    big = await any_abot.say("agent", f"/code days {ITEM} 60")
    check_waiting(big)
    before = any_abot.code_events(ITEM)

    splits = [await any_abot.say("agent", f"/code days {ITEM} 30 --again") for _ in range(4)]

    assert any_abot.code_events(ITEM) == before
    assert all(s.codes == () for s in splits)
    assert "60 issued or waiting, 30 asked" in splits[0].text()


async def test_days_issued_for_an_item_in_24_hours_add_up_to_the_limit(abot: Bot) -> None:
    await abot.say("admin", "/approvals policy days-over 60")

    first = await abot.say("agent", f"/code days {ITEM} 30")
    second = await abot.say("agent", f"/code days {ITEM} 30 --again")
    third = await abot.say("agent", f"/code days {ITEM} 30 --again")
    other_item = await abot.say("agent", f"/code days {OPEN_OPENTOKEN_OEM_ID} 30")

    assert len(first.codes) == len(second.codes) == 1
    assert third.codes == ()
    assert "more than 60 days for this item in 24 hours (60 issued or waiting" in third.text()
    assert len(other_item.codes) == 1  # another item: its own count


async def test_the_same_request_again_without_again_shows_the_code_without_approval(
    abot: Bot,
) -> None:
    first = await abot.say("agent", f"/code days {ITEM} 30")
    again = await abot.say("agent", f"/code days {ITEM} 30")

    assert again.codes == first.codes
    assert again.title is not None
    assert again.title.startswith("Already issued")


async def test_another_persons_days_do_not_count(abot: Bot) -> None:
    await abot.grant("agent2", Role.AGENT)
    await abot.say("agent", f"/code days {ITEM} 30")

    other = await abot.say("agent2", f"/code days {ITEM} 30 --again")

    assert len(other.codes) == 1


async def test_days_the_window_left_behind_no_longer_count(abot: Bot) -> None:
    await abot.say("agent", f"/code days {ITEM} 30")
    later(abot, hours=24, minutes=1)

    next_day = await abot.say("agent", f"/code days {ITEM} 30 --again")

    assert len(next_day.codes) == 1


# -- item 15: a decider is named by platform id, not by display name alone -----------------------


def test_a_person_is_named_with_the_id_last_and_a_name_cannot_fake_it() -> None:
    assert person("telegram:12345", "Dennis") == "Dennis · telegram:12345"
    assert person("telegram:12345", None) == "telegram:12345"
    spoof = person("telegram:12345", "Dennis · slack:UADMA")
    assert spoof.rsplit(" · ", 1)[1] == "telegram:12345"
    assert spoof.count(" · ") == 1


async def test_cards_and_messages_name_a_spoofing_decider_by_platform_id(abot: Bot) -> None:
    team, console = await with_channel(abot)
    await abot.core.grants.grant("telegram", "12345", Role.SUPERVISOR, "acme", "tests")
    spoofer = Identity("telegram", "12345", "Dennis (slack:UADMA)")
    await ask_free_as(abot)
    [(_, card)] = team.posts

    await abot.dispatcher.press(Click(spoofer, button(card, "Approve"), request_key="k-spoof"))

    [(_, final)] = team.cards.values()
    assert "Approved by Dennis (slack:UADMA) · telegram:12345 at" in final.text()
    [delivered] = console.private_to("agent")
    assert "Approved by Dennis (slack:UADMA) · telegram:12345" in delivered.text()
    assert "Requested by: console:agent" in card.text()
    listed = await abot.say("agent", "/approvals")
    assert "by Dennis (slack:UADMA) · telegram:12345" in listed.text()


async def ask_free_as(bot: Bot, user: str = "agent") -> str:
    reply = await bot.say(user, f"/code free {ITEM} paid off")
    return pending_id(reply)
