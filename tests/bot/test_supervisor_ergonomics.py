"""Field ergonomics for supervisors and admins: /audit shows who was let in, a requester sees why
a request was denied, admin commands honour /use and --dist, days typed as 30d or 2w, and a short
pending reply."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from approval_harness import (
    MAX_PENDING_BYTES,
    check_waiting,
    service,
    with_approvals,
    with_channel,
)
from bot_harness import Bot, BotFactory
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.approvals.cards import pending_reply
from bot.approvals.policy import apply_setting
from bot.audit import AuditEntry
from bot.errors import UsageError
from bot.messages import Identity, Tone
from bot.registry import parse_days
from bot.roles import Role
from bot.storage.approval_tables import Policy
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID


@pytest.fixture
async def abot(make_bot: BotFactory, bot_engine: AsyncEngine) -> Bot:
    return with_approvals(await make_bot(bot_engine))


async def roles_of(bot: Bot, user: str) -> dict[str, Role]:
    return await bot.core.permissions.roles(Identity("console", user))


def invite_code(text: str) -> str:
    match = re.search(r"/start (\S+)", text)
    assert match, text
    return match.group(1)


def audit_lines(text: str) -> list[str]:
    return text.splitlines()[1:]


# -- 1. /audit shows grants, revokes, invites and redemptions; /audit N is a count -----------------


async def test_audit_shows_the_distributors_grants_revokes_invites_and_redemptions(
    bot: Bot,
) -> None:
    await bot.say("admin", "/grant console:newbie viewer")
    await bot.say("admin", "/revoke console:newbie")
    code = invite_code((await bot.say("admin", "/invite agent")).text())
    joined = await bot.say("newcomer", f"/start {code}")
    assert joined.title == "Welcome! You are now agent at acme."

    text = (await bot.say("admin", "/audit 20")).text()

    assert "console:admin /grant user=console:newbie role=viewer → ok" in text
    assert "console:admin /revoke user=console:newbie → ok" in text
    assert "console:admin /invite role=agent → ok" in text
    assert "console:newcomer /start code=(given) → ok" in text
    assert code not in text


async def test_a_redemption_shows_in_the_audit_of_the_new_user(bot: Bot) -> None:
    code = invite_code((await bot.say("admin", "/invite viewer")).text())
    await bot.say("newcomer", f"/start {code}")

    text = (await bot.say("admin", "/audit console:newcomer")).text()

    assert "/start code=(given) → ok" in text


async def test_audit_does_not_show_another_distributors_grants(multi_bot: Bot) -> None:
    await multi_bot.grant("sunadmin", Role.ADMIN, "sunbright")
    await multi_bot.say("sunadmin", "/grant console:newbie agent")
    code = invite_code((await multi_bot.say("sunadmin", "/invite viewer")).text())
    await multi_bot.say("newcomer", f"/start {code}")
    await multi_bot.say("sunadmin", "/revoke console:newbie")

    at_acme = (await multi_bot.say("admin", "/audit 50")).text()
    at_sunbright = (await multi_bot.say("sunadmin", "/audit 50")).text()

    for command in ("/grant", "/invite", "/start", "/revoke"):
        assert command not in at_acme
        assert command in at_sunbright


async def test_audit_shows_grant_rows_written_before_they_named_their_distributor(
    bot: Bot,
) -> None:
    def old(command: str, detail: str) -> AuditEntry:
        at = datetime(2026, 11, 1, tzinfo=UTC)
        return AuditEntry(
            at=at, platform="console", user_id="admin", command=command, outcome="ok", detail=detail
        )

    for entry in (
        old("grant", "granted agent at acme to console:old1"),
        old("revoke", "revoked console:old2 at acme"),
        old("invite", "invite for viewer at acme"),
        old("start", "joined as viewer at acme"),
        old("grant", "granted agent at sunbright to console:theirs1"),
        old("revoke", "revoked console:theirs2 at acme at sunbright"),
        old("invite", "invite for viewer at acme2"),
        old("grant", "granted agent at acme_ to console:theirs3"),
    ):
        await bot.audit.append(entry)

    records = await bot.audit.recent(distributor="acme", limit=50)

    details = {r.detail for r in records}
    assert details == {
        "granted agent at acme to console:old1",
        "revoked console:old2 at acme",
        "invite for viewer at acme",
        "joined as viewer at acme",
    }
    assert await bot.audit.recent(distributor="acm_") == []  # "_" is no wildcard


async def test_a_lone_number_is_the_count(bot: Bot) -> None:
    for _ in range(15):
        await bot.audit.append(
            AuditEntry(
                at=bot.core.clock(),
                platform="console",
                user_id="agent",
                command="history",
                outcome="ok",
                distributor="acme",
            )
        )

    reply = await bot.say("admin", "/audit 12")

    assert reply.title == "Audit of acme (12 newest)", reply.text()
    assert len(audit_lines(reply.text())) == 12
    default = await bot.say("admin", "/audit")
    assert default.title == "Audit of acme (10 newest)"


async def test_audit_with_a_subject_and_a_count_keeps_working(bot: Bot) -> None:
    for _ in range(3):
        await bot.say("agent", f"/history {ITEM} 1")

    by_item = await bot.say("admin", f"/audit {ITEM} 2")
    by_user = await bot.say("admin", "/audit console:agent 3")

    assert by_item.title == "Audit of acme (2 newest)", by_item.text()
    assert all("/history" in line for line in audit_lines(by_item.text()))
    assert by_user.title == "Audit of acme (3 newest)", by_user.text()
    assert all("console:agent" in line for line in audit_lines(by_user.text()))


@pytest.mark.parametrize("typed", ["0", "51", "٣٠"])
async def test_a_lone_number_out_of_range_is_refused_as_a_count(bot: Bot, typed: str) -> None:
    reply = await bot.say("admin", f"/audit {typed}")

    assert reply.tone is Tone.WARNING
    assert "count" in reply.text()
    assert "incident" not in reply.text()


# -- 2. a requester sees who denied their request, and why -----------------------------------------


async def test_a_requester_sees_the_deny_reason_and_who_denied(abot: Bot) -> None:
    await with_channel(abot)
    approval_id = check_waiting(await abot.say("agent", f"/code free {ITEM}"))
    await abot.say("supervisor", f"/approvals deny {approval_id} balance not paid")

    mine = await abot.say("agent", "/approvals")

    [line] = [line for line in mine.lines if line.startswith(approval_id)]
    assert "denied by console:supervisor" in line
    assert line.endswith("reason: balance not paid")


async def test_a_denial_without_a_reason_says_so(abot: Bot) -> None:
    await with_channel(abot)
    approval_id = check_waiting(await abot.say("agent", f"/code free {ITEM}"))
    await abot.say("supervisor", f"/approvals deny {approval_id}")

    mine = await abot.say("agent", "/approvals")

    [line] = [line for line in mine.lines if line.startswith(approval_id)]
    assert "denied by console:supervisor" in line
    assert line.endswith("no reason given")


# -- 3. /grant, /revoke and /invite honour /use and --dist -----------------------------------------


@pytest.fixture
async def boss(multi_bot: Bot) -> Bot:
    """``boss`` is admin of acme and sunbright; ``mixed`` is admin of acme, agent at sunbright."""
    await multi_bot.grant("boss", Role.ADMIN, "acme")
    await multi_bot.grant("boss", Role.ADMIN, "sunbright")
    await multi_bot.grant("mixed", Role.ADMIN, "acme")
    await multi_bot.grant("mixed", Role.AGENT, "sunbright")
    return multi_bot


async def test_an_admin_of_several_distributors_is_asked_to_name_one(boss: Bot) -> None:
    reply = await boss.say("boss", "/grant console:newbie agent")

    assert reply.tone is Tone.WARNING
    assert "--dist NAME" in reply.text()
    assert "/use NAME" in reply.text()
    assert await roles_of(boss, "newbie") == {}


async def test_grant_revoke_and_invite_use_the_default_distributor(boss: Bot) -> None:
    await boss.say("boss", "/use sunbright")

    granted = await boss.say("boss", "/grant console:newbie agent")
    assert granted.title == "console:newbie is now agent at sunbright."
    assert await roles_of(boss, "newbie") == {"sunbright": Role.AGENT}
    invited = await boss.say("boss", "/invite viewer")
    assert invited.title == "Invite: viewer at sunbright"
    revoked = await boss.say("boss", "/revoke console:newbie")
    assert revoked.title == "console:newbie no longer has a role at sunbright."
    assert await roles_of(boss, "newbie") == {}


async def test_grant_revoke_and_invite_take_dist(boss: Bot) -> None:
    await boss.say("boss", "/use sunbright")

    granted = await boss.say("boss", "/grant console:newbie agent --dist acme")
    assert granted.title == "console:newbie is now agent at acme."
    assert await roles_of(boss, "newbie") == {"acme": Role.AGENT}
    invited = await boss.say("boss", "/invite viewer --dist acme")
    assert invited.title == "Invite: viewer at acme"
    revoked = await boss.say("boss", "/revoke console:newbie --dist acme")
    assert revoked.title == "console:newbie no longer has a role at acme."


async def test_a_distributor_named_as_an_argument_still_wins_over_the_default(boss: Bot) -> None:
    await boss.say("boss", "/use sunbright")

    granted = await boss.say("boss", "/grant console:newbie agent acme")

    assert granted.title == "console:newbie is now agent at acme."


async def test_two_different_distributors_named_are_refused(boss: Bot) -> None:
    reply = await boss.say("boss", "/grant console:newbie agent acme --dist sunbright")

    assert reply.tone is Tone.WARNING
    assert "name one" in reply.text()
    assert await roles_of(boss, "newbie") == {}


@pytest.mark.parametrize(
    "text",
    [
        "/grant console:newbie agent --dist sunbright",
        "/invite agent --dist sunbright",
        "/revoke console:agent --dist sunbright",
    ],
)
async def test_an_admin_elsewhere_cannot_act_at_a_distributor_named_by_dist(
    boss: Bot, text: str
) -> None:
    await boss.grant("agent", Role.AGENT, "sunbright")

    reply = await boss.say("mixed", text)

    assert reply.tone is Tone.WARNING
    assert "not an admin of distributor 'sunbright'" in reply.text()
    assert "You are admin of acme" in reply.text()
    assert (await roles_of(boss, "newbie")).get("sunbright") is None
    assert (await roles_of(boss, "agent")).get("sunbright") is Role.AGENT


async def test_an_admin_elsewhere_cannot_act_at_their_default_distributor(boss: Bot) -> None:
    await boss.say("mixed", "/use sunbright")

    reply = await boss.say("mixed", "/grant console:newbie agent")

    assert reply.tone is Tone.WARNING
    assert "'sunbright' (your default, set with /use)" in reply.text()
    assert await roles_of(boss, "newbie") == {}
    granted = await boss.say("mixed", "/grant console:newbie agent --dist acme")
    assert granted.title == "console:newbie is now agent at acme."


async def test_dist_is_in_the_usage_of_the_admin_commands(bot: Bot) -> None:
    usages = {c.name: c.usage for c in bot.core.commands}

    for name in ("grant", "revoke", "invite"):
        assert usages[name].endswith("[--dist]"), usages[name]


# -- 4. days as /code days reads them, in the approval policy too ----------------------------------


@pytest.mark.parametrize(
    ("typed", "days"), [("30d", 30), ("2w", 14), ("30 days", 30), ("4 weeks", 28), ("45", 45)]
)
def test_policy_days_over_reads_days_like_code_days(typed: str, days: int) -> None:
    assert apply_setting(Policy(), "days-over", typed).days_over == days == parse_days(typed)


def test_policy_days_over_in_months_says_what_to_type() -> None:
    with pytest.raises(UsageError, match="Type: /approvals policy days-over 30"):
        apply_setting(Policy(), "days-over", "1 month")


def test_policy_daily_count_is_a_count_not_days() -> None:
    with pytest.raises(UsageError, match="daily-count"):
        apply_setting(Policy(), "daily-count", "2w")


@pytest.mark.parametrize(("typed", "days"), [("2w", 14), ("30 days", 30)])
async def test_an_admin_sets_days_over_in_weeks_or_days_in_chat(
    abot: Bot, typed: str, days: int
) -> None:
    reply = await abot.say("admin", f"/approvals policy days-over {typed}")

    assert reply.tone is Tone.OK, reply.text()
    assert (await service(abot).store.policy("acme")).days_over == days


# -- 5. the requester's pending reply: short, for them ---------------------------------------------


def _for_supervisors(text: str) -> list[str]:
    advice = ("/approvals here", "/approvals approve", "channel", "chat", "sees it")
    return [words for words in advice if words in text.lower()]


async def test_the_pending_reply_is_short_and_for_the_requester(abot: Bot) -> None:
    reply = await abot.say("agent", f"/code days {ITEM} 60")  # no approval chat set

    approval_id = check_waiting(reply)
    text = reply.text()
    assert len(text.encode()) <= MAX_PENDING_BYTES
    assert f"/approvals cancel {approval_id}" in text
    assert "more than 30 days" in text  # why, when it fits
    assert _for_supervisors(text) == []
    # No chat got it: the one thing the agent can do is tell a supervisor.
    assert "Tell a supervisor: it waits in their /approvals." in reply.lines


async def test_a_posted_request_says_the_code_will_come(abot: Bot) -> None:
    await with_channel(abot)

    reply = await abot.say("agent", f"/code days {ITEM} 60")

    check_waiting(reply)
    assert "Once approved, the code comes to you privately." in reply.lines


async def test_the_repeated_pending_reply_is_short_too(abot: Bot) -> None:
    first = await abot.say("agent", f"/code days {ITEM} 60")
    again = await abot.say("agent", f"/code days {ITEM} 60")

    approval_id = check_waiting(again, again=True)
    assert approval_id == check_waiting(first)
    assert len(again.text().encode()) <= MAX_PENDING_BYTES
    assert f"/approvals cancel {approval_id}" in again.text()
    assert _for_supervisors(again.text()) == []


@pytest.mark.parametrize("again", [False, True])
async def test_a_long_item_and_reason_still_fit_and_keep_the_essentials(
    abot: Bot, again: bool
) -> None:
    reply = await abot.say("agent", f"/code free {ITEM}")
    stored = await service(abot).store.get(check_waiting(reply))
    assert stored is not None
    long = replace(
        stored,
        item_label="Ü" * 64 + " (" + "S" * 64 + ")",
        needs="more than 30 days for this item in 24 hours (1000 issued or waiting, 1095 asked)",
    )

    shown = pending_reply(long, again=again)

    text = shown.text()
    assert len(text.encode()) <= MAX_PENDING_BYTES, text
    assert "supervisor" in text
    assert text.count(stored.id) == 1
    assert text.endswith(f"/approvals cancel {stored.id}")
