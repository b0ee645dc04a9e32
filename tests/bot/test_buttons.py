"""Buttons, the stale-message guard and invites: state kept server-side, decided once."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

from bot_harness import Bot

from bot.dispatch import BUTTON_TTL
from bot.messages import Click, Identity, Reply, Request
from erm.sandbox.seed import OPEN_ACP1_OEM_ID

OPAQUE_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")


def click(user: str, reply: Reply, label: str, key: str) -> Click:
    button = next(b for b in reply.buttons if b.label == label)
    return Click(Identity("console", user), button.value, request_key=key)


async def stale_code(bot: Bot, user: str = "agent", minutes: int = 60) -> Reply:
    sent = datetime.now(UTC) - timedelta(minutes=minutes)
    request = Request(
        Identity("console", user),
        f"/code days {OPEN_ACP1_OEM_ID} 7",
        request_key=f"stale:{user}:{minutes}",
        sent_at=sent,
    )
    return await bot.dispatcher.handle(request)


async def test_buttons_carry_short_opaque_ids_not_the_command(bot: Bot) -> None:
    reply = await bot.say("viewer", "/items")

    assert [b.label for b in reply.buttons] == ["Next page"]
    assert OPAQUE_ID.match(reply.buttons[0].value)
    assert "/items" not in reply.buttons[0].value


async def test_next_page_replaces_the_owners_card(bot: Bot) -> None:
    first = await bot.say("viewer", "/items")

    pressed = await bot.dispatcher.press(click("viewer", first, "Next page", "c1"))

    assert pressed.card is not None
    assert pressed.reply is None
    assert "Page 2 of" in pressed.card.text()


async def test_someone_elses_button_runs_with_their_own_permissions(bot: Bot) -> None:
    first = await bot.say("viewer", "/items")

    pressed = await bot.dispatcher.press(click("stranger", first, "Next page", "c2"))

    assert pressed.card is None
    assert pressed.reply is not None
    assert "don't have access" in pressed.reply.text()


async def test_unknown_and_expired_buttons_say_so(bot: Bot) -> None:
    first = await bot.say("viewer", "/items")
    unknown = Click(Identity("console", "viewer"), "nope", request_key="c3")
    assert "expired" in ((await bot.dispatcher.press(unknown)).notice or "")

    later = datetime.now(UTC) + BUTTON_TTL + timedelta(minutes=1)
    bot.core.clock = lambda: later
    pressed = await bot.dispatcher.press(click("viewer", first, "Next page", "c4"))

    assert "expired" in (pressed.notice or "")


async def test_history_pages_with_an_older_button(bot: Bot) -> None:
    for days in (1, 2, 3):
        await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} {days} --again")
    first = await bot.say("viewer", f"/history {OPEN_ACP1_OEM_ID} 2")

    pressed = await bot.dispatcher.press(click("viewer", first, "Older", "h1"))

    assert first.confidential
    assert pressed.card is not None
    assert pressed.card.title is not None
    assert pressed.card.title.startswith("3-4 codes")


async def test_a_stale_code_command_asks_first_and_issues_nothing(bot: Bot) -> None:
    before = bot.code_events(OPEN_ACP1_OEM_ID)

    reply = await stale_code(bot)

    assert [b.label for b in reply.buttons] == ["Confirm", "Cancel"]
    assert "60 minutes ago" in (reply.title or "")
    assert reply.codes == ()
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before


async def test_a_recent_message_runs_at_once(bot: Bot) -> None:
    reply = await stale_code(bot, minutes=2)

    assert len(reply.codes) == 1


async def test_confirm_issues_once_and_a_second_tap_is_told(bot: Bot) -> None:
    before = bot.code_events(OPEN_ACP1_OEM_ID)
    card = await stale_code(bot)

    first = await bot.dispatcher.press(click("agent", card, "Confirm", "k1"))
    second = await bot.dispatcher.press(click("agent", card, "Confirm", "k2"))

    assert first.reply is not None
    assert len(first.reply.codes) == 1
    assert first.card is not None
    assert first.card.buttons == ()
    assert "Already confirmed" in (second.notice or "")
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before + 1


async def test_simultaneous_confirms_issue_one_code(bot: Bot) -> None:
    before = bot.code_events(OPEN_ACP1_OEM_ID)
    card = await stale_code(bot)

    results = await asyncio.gather(
        *(bot.dispatcher.press(click("agent", card, "Confirm", f"p{i}")) for i in range(5))
    )

    assert sum(1 for r in results if r.reply and r.reply.codes) == 1
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before + 1


async def test_only_the_sender_may_confirm(bot: Bot) -> None:
    card = await stale_code(bot)

    pressed = await bot.dispatcher.press(click("admin", card, "Confirm", "o1"))
    after = await bot.dispatcher.press(click("agent", card, "Cancel", "o2"))

    assert "Only the person" in (pressed.notice or "")
    assert after.card is not None
    assert "Cancelled" in (after.card.title or "")


async def test_cancel_then_confirm_is_refused(bot: Bot) -> None:
    before = bot.code_events(OPEN_ACP1_OEM_ID)
    card = await stale_code(bot)

    await bot.dispatcher.press(click("agent", card, "Cancel", "x1"))
    pressed = await bot.dispatcher.press(click("agent", card, "Confirm", "x2"))

    assert "Already cancelled" in (pressed.notice or "")
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before


async def test_a_redelivered_stale_command_shows_the_same_card(bot: Bot) -> None:
    first = await stale_code(bot)
    again = await stale_code(bot)

    assert again.buttons == first.buttons


# -- invites ------------------------------------------------------------------------------------


async def invite_code(bot: Bot, role: str = "agent") -> str:
    reply = await bot.say("admin", f"/invite {role} acme")
    return next(f.value for f in reply.fields if f.label == "Invite code")


async def test_an_invite_grants_its_role_once(bot: Bot) -> None:
    code = await invite_code(bot)

    joined = await bot.say("newcomer", f"/start {code}")
    again = await bot.say("other", f"/start {code}")

    assert "now agent at acme" in (joined.title or "")
    assert "unknown, used already or expired" in again.text()
    whoami = await bot.say("newcomer", "/whoami")
    assert "agent at acme" in whoami.text()


async def test_invite_codes_are_case_insensitive_and_confidential(bot: Bot) -> None:
    reply = await bot.say("admin", "/invite viewer")
    code = next(f.value for f in reply.fields if f.label == "Invite code")

    joined = await bot.say("newcomer", f"/start {code.lower()}")

    assert reply.private_only
    assert "now viewer at acme" in (joined.title or "")


async def test_an_expired_invite_is_refused(bot: Bot) -> None:
    code = await invite_code(bot)
    later = datetime.now(UTC) + timedelta(hours=25)
    bot.core.clock = lambda: later

    reply = await bot.say("newcomer", f"/start {code}")

    assert "expired" in reply.text()


async def test_only_admins_invite(bot: Bot) -> None:
    reply = await bot.say("supervisor", "/invite agent acme")

    assert "needs the admin role" in reply.text()


async def test_invite_shows_deep_links_of_the_platforms(bot: Bot) -> None:
    bot.core.deep_links["telegram"] = "https://t.me/erm_test_bot?start={code}"

    reply = await bot.say("admin", "/invite agent")
    code = next(f.value for f in reply.fields if f.label == "Invite code")

    assert f"https://t.me/erm_test_bot?start={code}" in reply.text()


async def test_start_without_a_code_tells_a_stranger_their_id(bot: Bot) -> None:
    reply = await bot.say("stranger", "/start")

    assert "console:stranger" in reply.text()
