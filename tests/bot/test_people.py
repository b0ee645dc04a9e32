"""One person, several chat identities (issue 14, item 15), through the dispatcher.

``/link`` on one app and ``/link CODE`` on another make one person: roles, quotas, fair turns and
the approval rules count the person, and no identity of a requester may decide their request, not
even one unlinked since. The code is shown once, privately, works once within 10 minutes, and both
identities are told. Console identities play one app, "telegram" ids the other.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from approval_harness import (
    CHANNEL,
    RecordingNotifier,
    check_waiting,
    service,
    with_approvals,
    with_channel,
)
from bot_harness import Bot, BotFactory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.core import Limits
from bot.fairness import Turns
from bot.messages import Click, Identity, Reply, Request, Tone
from bot.roles import Role
from bot.storage.approval_tables import NewApproval, Status
from erm import db
from erm.models import CodeType
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
PHONE = Identity("telegram", "42")  # the same person's other chat app
_keys = itertools.count()


async def say_as(bot: Bot, identity: Identity, text_: str, key: str | None = None) -> Reply:
    request = Request(identity, text_, request_key=key or f"people:{next(_keys)}")
    return await bot.dispatcher.handle(request)


def code_of(reply: Reply) -> str:
    return next(f.value for f in reply.fields if f.label == "Link code")


def notified(bot: Bot) -> tuple[RecordingNotifier, RecordingNotifier]:
    """Private messages to console users and to telegram users, recorded."""
    console, phone = RecordingNotifier(), RecordingNotifier()
    bot.core.notifiers["console"] = console
    bot.core.notifiers["telegram"] = phone
    return console, phone


async def link(bot: Bot, user: str, other: Identity = PHONE) -> Reply:
    """``console:user`` makes a code, ``other`` uses it."""
    code = code_of(await bot.say(user, "/link"))
    return await say_as(bot, other, f"/link {code}")


def later(bot: Bot, **delta: float) -> None:
    clock = bot.core.clock
    bot.core.clock = lambda: clock() + timedelta(**delta)


def frozen(bot: Bot) -> None:
    now = datetime.now(UTC)
    bot.core.clock = lambda: now


async def stored(bot: Bot, sql: str) -> list[str]:
    rows = await db.transaction(bot.engine, lambda c: c.execute(text(sql)).all())
    return [str(value) for row in rows for value in row]


# -- the link -----------------------------------------------------------------------------------


async def test_link_shows_a_code_privately_with_what_to_type_on_the_other_app(bot: Bot) -> None:
    reply = await bot.say("agent", "/link")
    code = code_of(reply)

    assert reply.confidential
    assert reply.title == "Link another chat app to this one"
    assert reply.lines == (
        f"Send on your other chat app: /link {code}, valid 10 min.",
        "It works once. Give it to no one: it shares your roles.",
    )


async def test_a_code_used_on_the_other_app_links_both_and_tells_both(bot: Bot) -> None:
    console, _ = notified(bot)

    reply = await link(bot, "agent")

    assert reply.title == "Linked: console:agent and telegram:42"
    assert reply.lines == (
        "You joined console:agent: one person now, with the same roles, limits and approvals.",
        "Not you? Unlink it: /unlink telegram:42 (you or an admin).",
    )
    assert reply.confidential
    [told] = console.private_to("agent")
    assert told.title == "Linked: console:agent and telegram:42"
    assert told.lines == (
        "telegram:42 used the link code you made.",
        "Not you? Unlink it: /unlink telegram:42 (you or an admin).",
    )


async def test_the_other_identity_not_reachable_is_named_in_the_reply(bot: Bot) -> None:
    reply = await link(bot, "agent")  # no notifier for the console: nobody can be told

    assert reply.lines[-1] == "console:agent could not be told; tell them yourself."


async def test_whoami_shows_the_links_on_both_apps(bot: Bot) -> None:
    await link(bot, "agent")

    here = await bot.say("agent", "/whoami")
    there = await say_as(bot, PHONE, "/whoami")

    assert "Linked with: telegram:42" in here.text()
    assert "Linked with: console:agent" in there.text()
    assert "Roles: agent at acme" in there.text()


async def test_a_retried_link_shows_no_code_and_nothing_stored_holds_it(any_bot: Bot) -> None:
    first = await any_bot.say("agent", "/link", key="link-1")
    code = code_of(first)

    again = await any_bot.say("agent", "/link", key="link-1")
    await say_as(any_bot, PHONE, f"/link {code}")

    assert code not in again.text()
    assert again.text().splitlines() == [
        "Link code made",
        "Its code was shown once, in the first answer, and is not kept.",
        "Lost it? Make a new one: /link",
    ]
    everything = await stored(any_bot, "SELECT reply FROM bot_requests WHERE reply IS NOT NULL")
    everything += await stored(any_bot, "SELECT arguments, detail FROM bot_audit_log")
    everything += await stored(any_bot, "SELECT * FROM bot_link_codes")
    assert not [value for value in everything if code in value]


async def test_link_and_its_use_are_audited_without_the_code(bot: Bot) -> None:
    await link(bot, "agent")

    rows = [r for r in await bot.core.audit.recent(limit=10) if r.command == "link"]

    details = sorted(r.detail for r in rows)
    assert details == [
        "link code made",
        "linked telegram:42 to console:agent (person console:agent)",
    ]
    assert {r.outcome for r in rows} == {"ok"}


async def test_an_expired_code_is_refused_with_what_to_do(bot: Bot) -> None:
    code = code_of(await bot.say("agent", "/link"))
    later(bot, minutes=10, seconds=1)

    reply = await say_as(bot, PHONE, f"/link {code}")

    assert reply.tone is Tone.WARNING
    assert reply.text().splitlines() == [
        "That link code is unknown, used already or expired.",
        "On your other chat app send /link for a new one, then send /link CODE here.",
    ]
    assert (await say_as(bot, PHONE, "/whoami")).text().startswith("You don't have access")


async def test_a_used_code_links_no_one_else(bot: Bot) -> None:
    code = code_of(await bot.say("admin", "/link"))
    await say_as(bot, PHONE, f"/link {code}")

    thief = await say_as(bot, Identity("telegram", "666"), f"/link {code}")

    assert thief.title == "That link code is unknown, used already or expired."
    refused = await say_as(bot, Identity("telegram", "666"), "/users")
    assert refused.text().startswith("You don't have access")


async def test_ones_own_code_is_refused_and_says_where_to_send_it(bot: Bot) -> None:
    code = code_of(await bot.say("agent", "/link"))

    reply = await bot.say("agent", f"/link {code}")

    assert reply.text().splitlines() == [
        "That code is for your other chat app: it links another identity to this one.",
        "Send it there: /link CODE",
    ]


async def test_guessing_codes_is_slowed_per_identity(
    make_bot: BotFactory, bot_engine: AsyncEngine
) -> None:
    bot = await make_bot(bot_engine, limits=Limits(invite_attempts_per_user_hour=3))
    frozen(bot)
    code = code_of(await bot.say("agent", "/link"))
    guesses = [await say_as(bot, PHONE, f"/link GUESS{n}XXXXX") for n in range(3)]

    blocked = await say_as(bot, PHONE, f"/link {code}")  # even the right code, this hour

    assert all(g.title and g.title.startswith("That link code is unknown") for g in guesses)
    assert blocked.title == "Too many link codes tried: 3 an hour."
    assert blocked.lines[0].startswith("Try again in ")
    assert blocked.lines[0].endswith(
        ": /link CODE, with the code exactly as your other app shows it."
    )
    other = await say_as(bot, Identity("telegram", "43"), f"/link {code}")
    assert other.title == "Linked: console:agent and telegram:43"


# -- one person for the rules -------------------------------------------------------------------


async def test_a_linked_identity_has_the_roles_of_its_person(bot: Bot) -> None:
    await link(bot, "agent")

    reply = await say_as(bot, PHONE, f"/code days {ITEM} 3")

    assert len(reply.codes) == 1


async def test_roles_are_the_highest_of_both_identities(bot: Bot) -> None:
    await bot.core.grants.grant("telegram", "42", Role.SUPERVISOR, "acme", "tests")
    code = code_of(await say_as(bot, PHONE, "/link"))
    linked = await bot.say("viewer", f"/link {code}")

    reply = await bot.say("viewer", "/whoami")

    assert (linked.title or "").startswith("Linked"), linked.text()
    assert "Roles: supervisor at acme" in reply.text()


async def test_a_code_cannot_take_the_roles_of_whoever_types_it(bot: Bot) -> None:
    """Someone talked into typing a stranger's code keeps their roles to themselves."""
    code = code_of(await say_as(bot, PHONE, "/link"))  # telegram:42 holds no role

    refused = await bot.say("supervisor", f"/link {code}")

    assert "Link the other way: send /link here" in refused.text()
    assert "have access" in (await say_as(bot, PHONE, "/whoami")).text()
    assert "linked" not in (await bot.say("supervisor", "/whoami")).text().lower()


async def test_quotas_count_both_identities_together(
    make_bot: BotFactory, bot_engine: AsyncEngine
) -> None:
    bot = await make_bot(bot_engine, limits=Limits(lookups_per_user_minute=2))
    frozen(bot)
    await link(bot, "viewer")
    assert (await bot.say("viewer", f"/history {ITEM}")).tone is Tone.OK
    assert (await say_as(bot, PHONE, f"/history {ITEM}")).tone is Tone.OK

    refused = await say_as(bot, PHONE, f"/history {ITEM}")

    assert refused.title is not None
    assert refused.title.startswith("Slow down: you reached 2 lookups per minute.")
    assert (await bot.say("agent", f"/history {ITEM}")).tone is Tone.OK  # another person


async def test_days_split_across_two_identities_still_need_approval(any_bot: Bot) -> None:
    abot = with_approvals(any_bot)
    await abot.say("admin", "/approvals policy days-over 60")
    await link(abot, "agent")

    first = await abot.say("agent", f"/code days {ITEM} 30")
    second = await say_as(abot, PHONE, f"/code days {ITEM} 30 --again")
    third = await say_as(abot, PHONE, f"/code days {ITEM} 30 --again")

    assert len(first.codes) == len(second.codes) == 1
    assert third.codes == ()
    assert "more than 60 days for this item in 24 hours (60 issued or waiting" in third.text()


async def test_the_daily_count_counts_both_identities(bot: Bot) -> None:
    abot = with_approvals(bot)
    await abot.say("admin", "/approvals policy daily-count 2")
    await link(abot, "agent")

    await abot.say("agent", f"/code days {ITEM} 1")
    await say_as(abot, PHONE, f"/code days {ITEM} 2 --again")
    third = await abot.say("agent", f"/code days {ITEM} 3 --again")

    assert third.codes == ()
    assert "the requester issued 2 codes in the last 24 hours" in third.text()


def _turn_taken(turns: Turns, who: str) -> asyncio.Task[None]:
    async def take() -> None:
        async with turns.turn(who):
            pass

    return asyncio.ensure_future(take())


async def test_fair_turns_are_shared_by_a_persons_identities() -> None:
    turns = Turns(total=4, per_person=1)
    turns.learn("telegram:42", "console:agent")
    release = asyncio.Event()

    async def hold() -> None:
        async with turns.turn("console:agent"):
            await release.wait()

    holder = asyncio.ensure_future(hold())
    await asyncio.sleep(0)
    phone = _turn_taken(turns, "telegram:42")
    stranger = _turn_taken(turns, "telegram:43")
    await asyncio.sleep(0.01)

    assert stranger.done()
    assert not phone.done()
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, phone), 1)


async def test_the_dispatcher_learns_whose_turns_an_identity_takes(bot: Bot) -> None:
    await link(bot, "agent")

    await say_as(bot, PHONE, "/whoami")

    assert bot.dispatcher._turns._people == {"telegram:42": "console:agent"}


# -- self-approval ------------------------------------------------------------------------------


async def _supervisor_with_a_phone_asks(bot: Bot) -> str:
    """console:agent, linked to telegram:42 (a supervisor there), asks for a free code."""
    await bot.say("admin", "/approvals policy supervisors on")
    await bot.core.grants.grant("telegram", "42", Role.SUPERVISOR, "acme", "tests")
    # Linked from the phone, which holds the higher role (a code brings roles, never takes).
    code = code_of(await say_as(bot, PHONE, "/link"))
    assert (
        await bot.say("agent", f"/link {code}")
    ).title == "Linked: telegram:42 and console:agent"
    reply = await bot.say("agent", f"/code free {ITEM} paid off")
    return check_waiting(reply)


async def test_a_request_cannot_be_approved_from_the_requesters_other_identity(bot: Bot) -> None:
    abot = with_approvals(bot)
    approval_id = await _supervisor_with_a_phone_asks(abot)

    refused = await say_as(abot, PHONE, f"/approvals approve {approval_id}")

    assert refused.tone is Tone.WARNING
    assert refused.text() == (
        "You asked for this yourself, as console:agent (linked to you): "
        "another supervisor or admin must decide it."
    )
    assert (await service(abot).load(approval_id)).status is Status.PENDING
    audit = [r.detail for r in await abot.core.audit.recent(limit=20)]
    assert "self-approval: telegram:42 is linked to console:agent" in audit


async def test_the_approve_button_refuses_the_requesters_other_identity(bot: Bot) -> None:
    abot = with_approvals(bot)
    team, _ = await with_channel(abot)
    approval_id = await _supervisor_with_a_phone_asks(abot)
    [(chat, card)] = team.posts
    approve = next(b.value for b in card.buttons if b.label == "Approve")

    pressed = await abot.dispatcher.press(Click(PHONE, approve, request_key="press-1"))

    assert chat == CHANNEL
    assert pressed.notice is not None
    assert pressed.notice.startswith("You asked for this yourself, as console:agent")
    assert (await service(abot).load(approval_id)).status is Status.PENDING


async def test_unlinking_does_not_let_the_other_identity_approve_an_earlier_request(
    bot: Bot,
) -> None:
    abot = with_approvals(bot)
    approval_id = await _supervisor_with_a_phone_asks(abot)
    unlinked = await say_as(abot, PHONE, "/unlink telegram:42")
    assert unlinked.title == "Unlinked telegram:42."

    refused = await say_as(abot, PHONE, f"/approvals approve {approval_id}")

    assert "You asked for this yourself" in refused.text()
    assert (await service(abot).load(approval_id)).status is Status.PENDING
    approved = await abot.say("supervisor", f"/approvals approve {approval_id}")
    assert approved.text().startswith(f"Approved {approval_id}")


async def test_the_decision_itself_refuses_an_identity_linked_after_the_check(
    any_bot: Bot,
) -> None:
    abot = with_approvals(any_bot)
    store = service(abot).store
    new = NewApproval(
        distributor="acme",
        requester=Identity("console", "agent"),
        requester_chat=None,
        origin_chat=None,
        code_type=CodeType.FREE,
        item_id="item-1",
        item_label="item-1",
        client_name=None,
        days=None,
        note=None,
        command_text="/code free item-1",
        needs="free codes need approval",
        context={},
        request_key=None,
    )
    approval, _ = await store.create(new, now=abot.core.clock(), ttl=timedelta(hours=24))
    await link(abot, "agent")  # after any check the approver passed

    decided = await store.decide(
        approval.id, Status.APPROVED, by=PHONE, now=abot.core.clock() + timedelta(seconds=1)
    )

    assert decided is False
    assert await service(abot).load(approval.id) == approval  # still pending, unchanged


# -- unlinking ----------------------------------------------------------------------------------


async def test_an_admin_unlink_removes_the_roles_the_link_gave(bot: Bot) -> None:
    _, phone = notified(bot)
    await link(bot, "agent")

    reply = await bot.say("admin", "/unlink telegram:42")

    assert reply.title == "Unlinked telegram:42."
    assert reply.lines == ("It was linked to console:agent; it has only its own roles now.",)
    refused = await say_as(bot, PHONE, f"/history {ITEM}")
    assert refused.text().startswith("You don't have access to erm-bot yet.")
    [told] = phone.private_to("42")
    assert told.lines[0] == "console:admin unlinked it; it has only its own roles and limits now."
    rows = [r for r in await bot.core.audit.recent(limit=5) if r.command == "unlink"]
    assert [r.detail for r in rows] == ["unlinked telegram:42 from console:agent"]


async def test_a_person_unlinks_their_own_identity_from_either_app(bot: Bot) -> None:
    await link(bot, "agent")

    reply = await bot.say("agent", "/unlink telegram:42")

    assert reply.title == "Unlinked telegram:42."
    assert "Linked with" not in (await bot.say("agent", "/whoami")).text()


@pytest.mark.parametrize("user", ["viewer", "supervisor"])
async def test_someone_elses_identity_is_unlinked_only_by_an_admin(bot: Bot, user: str) -> None:
    await link(bot, "agent")

    refused = await bot.say(user, "/unlink telegram:42")

    assert refused.tone is Tone.WARNING
    assert refused.text().splitlines() == [
        "telegram:42 is not one of your identities (/whoami lists yours).",
        "Only an admin where it has a role can unlink it: ask them to send /unlink telegram:42",
    ]
    assert "Linked with: telegram:42" in (await bot.say("agent", "/whoami")).text()


async def test_unlinking_an_identity_linked_to_nobody_says_so(bot: Bot) -> None:
    reply = await bot.say("agent", "/unlink console:agent")

    assert reply.text().splitlines() == [
        "console:agent is not linked to another identity.",
        "/whoami lists yours.",
    ]
