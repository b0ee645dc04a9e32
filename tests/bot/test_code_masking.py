"""A code reaches only people who may make codes: viewers see the last 3 digits, never more.

Every command a viewer may type (and the ones they may not) runs after codes were issued; no
reply, stored button or approval card they could see carries a usable code in any form.
Runs on SQLite and PostgreSQL (the duplicate and /resend paths read stored codes).
"""

from __future__ import annotations

import json
import re

from approval_harness import pending_id, with_approvals, with_channel
from bot_harness import Bot

from bot.masking import masked_code, sees_codes
from bot.messages import Click, Identity, Reply
from bot.roles import Role
from erm.models import keypad_format
from erm.sandbox import OPEN_ACP1_OEM_ID
from erm.sandbox.seed import OPEN_OPENTOKEN_OEM_ID

ACP1 = OPEN_ACP1_OEM_ID
TOKEN = OPEN_OPENTOKEN_OEM_ID


def forms(code_dec: str, code_hex: str = "") -> set[str]:
    """Every way a code could be written: digits, keypad form, 3-digit groups, hex."""
    digits = re.sub(r"\D", "", code_dec)
    keypad = keypad_format(digits)
    found = {digits, keypad, keypad.strip("*#")}
    if code_hex and code_hex.strip("-"):
        found.add(code_hex)
    return found


def all_codes(bot: Bot, *items: str) -> set[str]:
    """Every code ERM holds for the items, in every form."""
    found: set[str] = set()
    for oem in items:
        for event in bot.sandbox.item_by_oem_id(oem).code_generator.events:
            if re.sub(r"\D", "", event.code_dec_string):
                found |= forms(event.code_dec_string, event.code_hex_string)
    return found


def leaked(reply: Reply, codes: set[str]) -> list[str]:
    shown = json.dumps(reply.to_dict()) + "\n" + reply.text()
    return sorted(code for code in codes if code in shown)


async def issue_codes(bot: Bot) -> None:
    for text in (f"/code days {ACP1} 30", f"/code days {TOKEN} 7"):
        reply = await bot.say("agent", text)
        assert len(reply.codes) == 1, reply.text()


def test_the_mask_keeps_the_last_three_digits_in_keypad_groups() -> None:
    assert masked_code("*024 413 975 593 119 504 641#") == "••• ••• ••• ••• ••• ••• 641"
    assert masked_code("123456789") == "••• ••• 789"
    assert not sees_codes(Role.VIEWER)
    assert not sees_codes(None)
    assert sees_codes(Role.AGENT)
    assert sees_codes(Role.ADMIN)


async def test_a_viewer_reads_history_with_codes_masked(any_bot: Bot) -> None:
    await issue_codes(any_bot)
    codes = all_codes(any_bot, ACP1, TOKEN)

    for item in (ACP1, TOKEN):
        reply = await any_bot.say("viewer", f"/history {item} 10")

        assert reply.lines, reply.text()
        assert leaked(reply, codes) == []
        newest = any_bot.sandbox.item_by_oem_id(item).code_generator.events[-1]
        assert masked_code(newest.code_dec_string) in reply.lines[0]
        assert "masked" in reply.text()


async def test_agents_and_above_read_history_with_whole_codes(any_bot: Bot) -> None:
    await issue_codes(any_bot)

    for user in ("agent", "supervisor", "admin"):
        reply = await any_bot.say(user, f"/history {ACP1} 10")

        newest = any_bot.sandbox.item_by_oem_id(ACP1).code_generator.events[-1]
        assert keypad_format(newest.code_dec_string) in reply.lines[0]
        assert "masked" not in reply.text()


async def test_the_older_button_pressed_by_a_viewer_shows_masked_codes(any_bot: Bot) -> None:
    for _ in range(3):
        await any_bot.say("agent", f"/code days {ACP1} 1 --again")
    codes = all_codes(any_bot, ACP1)

    first = await any_bot.say("viewer", f"/history {ACP1} 1")
    [older] = [b for b in first.buttons if b.label == "Older"]
    pressed = await any_bot.dispatcher.press(
        Click(Identity("console", "viewer"), older.value, request_key="test:older")
    )

    shown = pressed.card or pressed.reply
    assert shown is not None
    assert shown.lines, shown.text()
    assert leaked(first, codes) == []
    assert leaked(shown, codes) == []


async def test_no_command_a_viewer_types_shows_a_whole_code(any_bot: Bot) -> None:
    await issue_codes(any_bot)
    codes = all_codes(any_bot, ACP1, TOKEN)
    assert codes

    for text in (
        f"/history {ACP1} 50",
        f"/history {TOKEN} 50",
        f"/resend {ACP1}",
        f"/code days {ACP1} 30",  # the duplicate reply ("Already issued") shows the code
        f"/code days {TOKEN} 7",
        f"/account {ACP1}",
        f"/items {ACP1}",
        "/fleet",
        f"/audit {ACP1}",
        "/audit",
        "/approvals",
        "/users",
        "/whoami",
        "/help",
        "/help resend",
    ):
        reply = await any_bot.say("viewer", text)

        assert leaked(reply, codes) == [], text


async def test_a_requester_demoted_to_viewer_gets_no_code_when_approved(any_bot: Bot) -> None:
    bot = with_approvals(any_bot)
    team, console = await with_channel(bot)
    asked = await bot.say("agent", f"/code free {ACP1} paid off")
    approval_id = pending_id(asked)
    await bot.grant("agent", Role.VIEWER)  # demoted while the request waits
    before = bot.code_events(ACP1)

    approved = await bot.say("supervisor", f"/approvals approve {approval_id}")

    assert bot.code_events(ACP1) == before
    assert "not issued" in approved.text()
    codes = all_codes(bot, ACP1)
    for reply in [*console.private_to("agent"), *(card for _, card in team.posts)]:
        assert reply.codes == ()
        assert leaked(reply, codes) == []
    assert (await bot.say("agent", "/approvals")).codes == ()
