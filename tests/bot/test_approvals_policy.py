"""Which code requests need approval, and the /approvals commands that set it up."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from approval_harness import check_waiting, pending_id, service, with_approvals, with_channel
from bot_harness import Bot
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.approvals.policy import apply_setting
from bot.core import Limits
from bot.errors import UsageError
from bot.messages import Identity, Request, Tone
from bot.roles import Role
from bot.storage.approval_tables import Policy
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
BotFactory = Callable[..., Awaitable[Any]]  # tests/bot/conftest.py's make_bot


@pytest.fixture
async def abot(make_bot: BotFactory, bot_engine: AsyncEngine) -> Bot:
    """The bot on SQLite with its approval flow (console viewer/agent/supervisor/admin)."""
    return with_approvals(await make_bot(bot_engine))


async def set_policy(bot: Bot, setting: str, value: str) -> None:
    reply = await bot.say("admin", f"/approvals policy {setting} {value}")
    assert reply.tone is Tone.OK, reply.text()


def test_the_default_policy_is_the_issues_one() -> None:
    assert Policy() == Policy(
        free=True, reset=True, days_over=30, daily_count=10, supervisors=False
    )


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("free", "off", Policy(free=False)),
        ("RESET", "Off", Policy(reset=False)),
        ("days-over", "60", Policy(days_over=60)),
        ("days-over", "off", Policy(days_over=None)),
        ("daily-count", "3", Policy(daily_count=3)),
        ("daily-count", "off", Policy(daily_count=None)),
        ("supervisors", "on", Policy(supervisors=True)),
    ],
)
def test_one_setting_changes_and_the_others_stay(
    setting: str, value: str, expected: Policy
) -> None:
    assert apply_setting(Policy(), setting, value) == expected


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("free", "maybe"),
        ("days-over", "0"),
        ("days-over", "2000"),
        ("colour", "on"),
        ("free", None),
    ],
)
def test_a_bad_setting_is_refused_with_what_to_type(setting: str, value: str | None) -> None:
    with pytest.raises(UsageError):
        apply_setting(Policy(), setting, value)


async def test_an_agents_free_code_waits_for_approval_and_nothing_is_issued(abot: Bot) -> None:
    before = abot.code_events(ITEM)

    reply = await abot.say("agent", f"/code free {ITEM} paid off")

    assert abot.code_events(ITEM) == before
    check_waiting(reply)
    assert reply.codes == ()
    assert reply.private_only  # a Telegram group never sees it; the requester does, privately
    approval = await service(abot).store.get(pending_id(reply))
    assert approval is not None
    assert approval.status.value == "pending"
    assert approval.needs == "free codes need approval"
    assert approval.note == "paid off"
    assert approval.command_text == f"/code free {ITEM} paid off"


async def test_an_agents_reset_code_waits_for_approval(abot: Bot) -> None:
    reply = await abot.say("agent", f"/code reset {ITEM}")

    check_waiting(reply)


async def test_a_supervisors_free_code_is_issued_directly(abot: Bot) -> None:
    before = abot.code_events(ITEM)

    reply = await abot.say("supervisor", f"/code free {ITEM}")

    assert abot.code_events(ITEM) == before + 1
    assert len(reply.codes) == 1


async def test_supervisors_on_makes_supervisors_ask_too(abot: Bot) -> None:
    await set_policy(abot, "supervisors", "on")

    reply = await abot.say("supervisor", f"/code free {ITEM}")

    check_waiting(reply)


async def test_free_off_leaves_free_codes_to_supervisors(abot: Bot) -> None:
    await set_policy(abot, "free", "off")
    before = abot.code_events(ITEM)

    refused = await abot.say("agent", f"/code free {ITEM}")
    direct = await abot.say("supervisor", f"/code free {ITEM}")

    assert refused.tone is Tone.WARNING
    assert "for supervisors" in refused.text()
    assert len(direct.codes) == 1
    assert abot.code_events(ITEM) == before + 1


async def test_days_over_the_limit_need_approval_and_up_to_it_do_not(abot: Bot) -> None:
    at_limit = await abot.say("agent", f"/code days {ITEM} 30")
    over = await abot.say("agent", f"/code days {ITEM} 31")

    assert len(at_limit.codes) == 1
    assert over.codes == ()
    assert "more than 30 days" in over.text()


async def test_an_agent_who_issued_many_codes_today_needs_approval(abot: Bot) -> None:
    await set_policy(abot, "daily-count", "2")
    first = await abot.say("agent", f"/code days {ITEM} 1")
    second = await abot.say("agent", f"/code days {ITEM} 2")

    third = await abot.say("agent", f"/code days {ITEM} 3")

    assert len(first.codes) == len(second.codes) == 1
    assert third.codes == ()
    assert "issued 2 codes in the last 24 hours" in third.text()


async def test_a_request_over_the_quota_goes_to_approval_instead_of_refused(
    make_bot: BotFactory, bot_engine: AsyncEngine
) -> None:
    bot = with_approvals(await make_bot(bot_engine, limits=Limits(codes_per_user_hour=1)))
    await bot.say("agent", f"/code days {ITEM} 1")
    before = bot.code_events(ITEM)

    reply = await bot.say("agent", f"/code days {ITEM} 2")

    assert bot.code_events(ITEM) == before
    assert reply.tone is Tone.INFO
    assert "quota of 1 codes per hour" in reply.text()


async def test_the_same_request_sent_twice_is_one_approval(abot: Bot) -> None:
    first = await abot.say("agent", f"/code free {ITEM}")
    again = await abot.say("agent", f"/code free {ITEM}")

    assert check_waiting(again, again=True) == check_waiting(first)


async def test_an_agent_cannot_pile_up_pending_requests(abot: Bot) -> None:
    for days in range(31, 41):
        assert (await abot.say("agent", f"/code days {ITEM} {days}")).tone is Tone.INFO

    refused = await abot.say("agent", f"/code days {ITEM} 41")

    assert refused.tone is Tone.WARNING
    assert "requests waiting for approval already" in refused.text()


async def test_everyone_sees_the_policy_and_only_admins_change_it(abot: Bot) -> None:
    shown = await abot.say("agent", "/approvals policy")
    refused = await abot.say("supervisor", "/approvals policy days-over 90")
    changed = await abot.say("admin", "/approvals policy days-over 90")

    assert "need approval above 30 days" in shown.text()
    assert refused.tone is Tone.WARNING
    assert "admin" in refused.text()
    assert "need approval above 90 days" in changed.text()
    assert (await service(abot).store.policy("acme")).days_over == 90


async def test_approvals_here_is_refused_in_a_private_chat(abot: Bot) -> None:
    reply = await abot.say("supervisor", "/approvals here")

    assert reply.tone is Tone.WARNING
    assert "not in a private chat" in reply.text()


async def test_approvals_here_in_a_group_makes_it_the_platforms_approval_chat(abot: Bot) -> None:
    request = Request(
        Identity("telegram", "31"),
        "/approvals here",
        request_key="here-1",
        chat_id="-1001",
        private_chat=False,
    )
    await abot.core.grants.grant("telegram", "31", Role.SUPERVISOR, "acme", "tests")

    reply = await abot.dispatcher.handle(request)

    assert reply.tone is Tone.OK, reply.text()
    channels = await service(abot).store.channels("acme")
    assert [(c.platform, c.chat_id) for c in channels] == [("telegram", "-1001")]


async def test_bare_approvals_lists_what_waits_for_supervisors_and_agents_own(abot: Bot) -> None:
    pending = pending_id(await abot.say("agent", f"/code free {ITEM}"))

    for_supervisor = await abot.say("supervisor", "/approvals")
    for_agent = await abot.say("agent", "/approvals")
    for_viewer = await abot.say("viewer", "/approvals")

    assert pending in for_supervisor.text()
    assert "/approvals approve ID" in for_supervisor.text()
    assert pending in for_agent.text()
    assert "Your requests" in for_agent.text()
    assert for_viewer.tone is Tone.WARNING  # viewers cannot ask for codes


async def test_no_approval_chat_is_logged_not_told_to_the_requester(
    abot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.approvals"):
        reply = await abot.say("agent", f"/code free {ITEM}")

    check_waiting(reply)
    assert "chat" not in reply.text().lower()
    assert "channel" not in reply.text().lower()
    assert "acme has no approval chat" in caplog.text


async def test_a_pending_request_posted_to_the_channel_says_nothing_about_channels(
    abot: Bot,
) -> None:
    team, _ = await with_channel(abot)

    reply = await abot.say("agent", f"/code free {ITEM}")

    check_waiting(reply)
    assert "channel" not in reply.text().lower()
    assert len(team.posts) == 1


async def test_without_an_approval_flow_agents_cannot_issue_free_codes(bot: Bot) -> None:
    before = bot.code_events(ITEM)

    reply = await bot.say("agent", f"/code free {ITEM}")

    assert reply.tone is Tone.WARNING
    assert "needs the supervisor role" in reply.text()
    assert bot.code_events(ITEM) == before


async def test_over_the_quota_agents_still_cannot_ask_for_free_codes_when_free_is_off(
    make_bot: BotFactory, bot_engine: AsyncEngine
) -> None:
    bot = with_approvals(await make_bot(bot_engine, limits=Limits(codes_per_user_hour=1)))
    await bot.say("admin", "/approvals policy free off")
    await bot.say("agent", f"/code days {ITEM} 1")

    reply = await bot.say("agent", f"/code free {ITEM}")

    assert reply.tone is Tone.WARNING
    assert "for supervisors" in reply.text()


async def test_a_supervisor_over_the_quota_goes_to_approval_too(
    make_bot: BotFactory, bot_engine: AsyncEngine
) -> None:
    bot = with_approvals(await make_bot(bot_engine, limits=Limits(codes_per_user_hour=1)))
    await bot.say("supervisor", f"/code days {ITEM} 1")

    reply = await bot.say("supervisor", f"/code free {ITEM}")

    assert reply.codes == ()
    assert "quota" in reply.text()


async def test_approvals_here_off_stops_the_chat_and_here_elsewhere_replaces_it(
    abot: Bot,
) -> None:
    await abot.core.grants.grant("telegram", "31", Role.SUPERVISOR, "acme", "tests")

    def in_group(text: str, chat: str, key: str) -> Request:
        return Request(
            Identity("telegram", "31"), text, request_key=key, chat_id=chat, private_chat=False
        )

    await abot.dispatcher.handle(in_group("/approvals here", "-1001", "h1"))
    moved = await abot.dispatcher.handle(in_group("/approvals here", "-1002", "h2"))
    stale = await abot.dispatcher.handle(in_group("/approvals here off", "-1001", "h3"))
    stopped = await abot.dispatcher.handle(in_group("/approvals here off", "-1002", "h4"))

    assert "replaces the previous telegram approval chat (-1001)" in moved.text()
    assert "not an approval channel" in stale.text()
    assert "no longer gets" in stopped.text()
    assert await service(abot).store.channels("acme") == []
