"""Replies read on small screens (issue 16, item 2): /help fits a phone screen for every role, help
lines carry no markup, a code reply says the item and the days once, in plain grammar, and an
agent's pending-approval reply is short: as the console, Telegram and Slack receive them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from approval_harness import pending_id, with_approvals, with_channel
from bot_harness import ROLES, Bot

from adapters.console import render as console_render
from adapters.slack.render import fallback_text as slack_fallback_text
from adapters.telegram.render import render as telegram_render
from bot.commands import COMMANDS
from bot.messages import Reply
from bot.roles import Role
from erm.sandbox import OPEN_ACP1_OEM_ID

HELP_BYTES = 600


@pytest.mark.parametrize("role", ROLES, ids=[r.label for r in ROLES])
async def test_help_fits_a_phone_screen_and_says_how_to_learn_more(bot: Bot, role: Role) -> None:
    reply = await bot.say(role.label, "/help")
    text = reply.text()

    assert len(text.encode()) <= HELP_BYTES, len(text.encode())
    assert "/help NAME" in text
    assert "/code" in text if role >= Role.AGENT else "/code" not in text
    assert "`" not in text


def test_no_help_line_carries_markup() -> None:
    # The same lines make chat apps' command menus.
    assert [c.name for c in COMMANDS if "`" in c.help or "<" in c.help] == []


async def test_help_on_a_plural_finds_the_commands(bot: Bot) -> None:
    reply = await bot.say("admin", "/help codes")

    assert reply.title == "/code"
    assert [line for line in reply.lines if line.startswith("/code ")] == [
        "/code [item]",
        "/code days <item> <days> [note] [--again]",
        "/code free <item> [note] [--again]",
        "/code reset <item> [note] [--again]",
    ]


async def test_a_code_reply_names_the_item_and_the_days_once(bot: Bot) -> None:
    reply = await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} 1")
    text = reply.text()

    assert reply.title is not None
    assert reply.title.startswith(f"1-day code for {OPEN_ACP1_OEM_ID}")
    assert text.count(OPEN_ACP1_OEM_ID) == 1
    assert "1 days" not in text


async def test_a_repeated_code_says_what_the_title_does_not(bot: Bot) -> None:
    await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} 1")
    again = await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} 1")

    assert again.title is not None
    assert again.title.startswith("Already issued")
    fields = {f.label: f.value for f in again.fields}
    assert fields["Item"] == OPEN_ACP1_OEM_ID
    assert fields["Code"] == "1 day"


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        (f"/code day {OPEN_ACP1_OEM_ID} 30 cash", f"/code days {OPEN_ACP1_OEM_ID} 30 cash"),
        (f"/code fre {OPEN_ACP1_OEM_ID}", f"/code free {OPEN_ACP1_OEM_ID}"),
        ("/approvals aprove ABC234", "/approvals approve ABC234"),
    ],
)
async def test_a_mistyped_subcommand_gets_the_command_meant_and_nothing_runs(
    bot: Bot, typed: str, meant: str
) -> None:
    before = bot.code_events(OPEN_ACP1_OEM_ID)

    reply = await bot.say("admin", typed)

    assert reply.text().splitlines()[-1] == meant  # ready to copy and send
    assert "Did you mean" in reply.text()
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before  # a code cannot be taken back


# What each platform receives as the message's text: the console's screen, Telegram's HTML,
# Slack's text (its blocks carry the same words, laid out).
PLATFORM_VIEWS: dict[str, Callable[[Reply], str]] = {
    "console": lambda reply: console_render(reply, color=False),
    "telegram": lambda reply: "\n".join(telegram_render(reply)),
    "slack": slack_fallback_text,
}
PENDING_BYTES = 200


@pytest.mark.parametrize("platform", PLATFORM_VIEWS)
@pytest.mark.parametrize("role", ROLES, ids=[r.label for r in ROLES])
async def test_help_fits_on_every_platform(bot: Bot, role: Role, platform: str) -> None:
    shown = PLATFORM_VIEWS[platform](await bot.say(role.label, "/help"))

    assert len(shown.encode()) <= HELP_BYTES, shown
    assert "`" not in shown


@pytest.mark.parametrize("platform", PLATFORM_VIEWS)
async def test_an_agents_pending_reply_fits_on_every_platform(bot: Bot, platform: str) -> None:
    abot = with_approvals(bot)
    await with_channel(abot)

    first = await abot.say("agent", f"/code free {OPEN_ACP1_OEM_ID} plan paid off")
    again = await abot.say("agent", f"/code free {OPEN_ACP1_OEM_ID} plan paid off")

    for reply in (first, again):
        shown = PLATFORM_VIEWS[platform](reply)
        assert len(shown.encode()) <= PENDING_BYTES, f"{len(shown.encode())} bytes:\n{shown}"
        assert shown.count(pending_id(reply)) == 1


@pytest.mark.parametrize("platform", PLATFORM_VIEWS)
async def test_a_code_reply_names_the_item_once_on_every_platform(bot: Bot, platform: str) -> None:
    shown = PLATFORM_VIEWS[platform](await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} 1"))

    assert shown.count(OPEN_ACP1_OEM_ID) == 1
    assert "1 days" not in shown
    assert len(shown.encode()) <= 200, shown
