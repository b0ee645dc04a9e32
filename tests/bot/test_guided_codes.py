"""Guided codes (issue 16, item 1): ``/code ITEM`` offers the common codes as buttons, ``/code``
alone the person's recent items; a 30-day code for a recent item is two taps, no typing."""

from __future__ import annotations

from approval_harness import pending_id, with_approvals, with_channel
from bot_harness import Bot

from adapters.console import render
from bot.messages import Click, Identity, Reply
from bot.roles import Role
from erm.sandbox import ACME, OPEN_ACP1_OEM_ID, SUNBRIGHT


def labels(reply: Reply) -> list[str]:
    return [b.label for b in reply.buttons]


def typed(reply: Reply) -> dict[str, str | None]:
    return {b.label: b.typed for b in reply.buttons}


async def tap(bot: Bot, user: str, reply: Reply, label: str, key: str) -> Reply:
    """Press the button labelled ``label`` as ``user``; the reply it brings."""
    button = next(b for b in reply.buttons if b.label == label)
    pressed = await bot.dispatcher.press(Click(Identity("console", user), button.value, key))
    answer = pressed.card or pressed.reply
    assert answer is not None, pressed
    return answer


async def test_code_alone_offers_recent_items_and_two_taps_make_a_30_day_code(bot: Bot) -> None:
    first = await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} 3")
    assert first.codes
    before = bot.code_events(OPEN_ACP1_OEM_ID)

    menu = await bot.say("agent", "/code")
    assert labels(menu) == [OPEN_ACP1_OEM_ID]
    item_menu = await tap(bot, "agent", menu, OPEN_ACP1_OEM_ID, "tap-1")
    assert item_menu.title == f"Which code for {OPEN_ACP1_OEM_ID}?"
    code = await tap(bot, "agent", item_menu, "30 days", "tap-2")

    assert code.codes, code.text()
    assert code.title is not None
    assert code.title.startswith("30-day code")
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before + 1


async def test_code_item_offers_7_30_the_last_count_and_free_reset_for_supervisors(
    bot: Bot,
) -> None:
    await bot.say("supervisor", f"/code days {OPEN_ACP1_OEM_ID} 90")
    before = bot.code_events(OPEN_ACP1_OEM_ID)

    as_supervisor = await bot.say("supervisor", f"/code {OPEN_ACP1_OEM_ID}")
    as_agent = await bot.say("agent", f"/code {OPEN_ACP1_OEM_ID}")

    assert labels(as_supervisor) == ["7 days", "30 days", "90 days (last)", "Free", "Reset"]
    # Without an approval flow agents may not ask for free or reset codes: not offered.
    assert labels(as_agent) == ["7 days", "30 days", "90 days (last)"]
    assert typed(as_agent)["30 days"] == f"/code days {OPEN_ACP1_OEM_ID} 30"
    assert not as_agent.codes  # a menu makes no code
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before


async def test_the_console_shows_what_to_type_for_each_button(bot: Bot) -> None:
    menu = await bot.say("supervisor", f"/code {OPEN_ACP1_OEM_ID}")
    shown = render(menu, color=False)

    assert f"[30 days: /code days {OPEN_ACP1_OEM_ID} 30]" in shown
    assert f"[Free: /code free {OPEN_ACP1_OEM_ID}]" in shown
    assert all(b.value not in shown for b in menu.buttons)  # no internal id


async def test_a_person_with_two_distributors_gets_buttons_pinned_to_one(
    multi_bot: Bot,
) -> None:
    await multi_bot.grant("agent", Role.AGENT, SUNBRIGHT.name)

    menu = await multi_bot.say("agent", f"/code {OPEN_ACP1_OEM_ID} --dist {ACME.name}")

    assert all((b.typed or "").endswith(f"--dist {ACME.name}") for b in menu.buttons), typed(menu)


async def test_code_alone_without_history_says_what_to_type(bot: Bot) -> None:
    reply = await bot.say("agent", "/code")

    assert reply.buttons == ()
    assert "/code ITEM" in reply.text()
    assert "/items" in reply.text()


async def test_code_item_and_days_without_a_type_is_refused_with_the_command(bot: Bot) -> None:
    before = bot.code_events(OPEN_ACP1_OEM_ID)
    reply = await bot.say("agent", f"/code {OPEN_ACP1_OEM_ID} 30")

    assert reply.text().endswith(f"/code days {OPEN_ACP1_OEM_ID} 30")
    assert not reply.codes
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before


async def test_a_typo_of_a_code_type_is_still_answered_as_a_typo(bot: Bot) -> None:
    before = bot.code_events(OPEN_ACP1_OEM_ID)
    reply = await bot.say("agent", f"/code day {OPEN_ACP1_OEM_ID} 30")

    assert reply.text().endswith(f"/code days {OPEN_ACP1_OEM_ID} 30")
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before


async def test_viewers_get_no_code_menu(bot: Bot) -> None:
    reply = await bot.say("viewer", f"/code {OPEN_ACP1_OEM_ID}")

    assert reply.buttons == ()
    assert "agent" in reply.text()


async def test_with_approvals_agents_are_offered_free_and_reset_which_go_to_approval(
    bot: Bot,
) -> None:
    abot = with_approvals(bot)
    await with_channel(abot)
    before = abot.code_events(OPEN_ACP1_OEM_ID)

    menu = await abot.say("agent", f"/code {OPEN_ACP1_OEM_ID}")
    asked = await tap(abot, "agent", menu, "Free", "tap-free")

    assert labels(menu) == ["7 days", "30 days", "Free", "Reset"]
    assert not asked.codes
    assert pending_id(asked)
    assert abot.code_events(OPEN_ACP1_OEM_ID) == before
