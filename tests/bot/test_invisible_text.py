"""Bidi controls and zero-width characters never enter a display name, a note or a reason
(issue 14, item 15): a right-to-left override makes a name read as another one on a card."""

from __future__ import annotations

import pytest
from bot_harness import Bot

from bot.commands import COMMANDS
from bot.messages import Identity, visible
from bot.parse import parse
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
INVISIBLE = [
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
    "\u200e",
    "\u200f",
    "\u061c",
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",
]


@pytest.mark.parametrize("char", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_visible_strips_each_invisible_character(char: str) -> None:
    assert visible(f"Den{char}nis") == "Dennis"


def test_a_display_name_loses_its_overrides() -> None:
    spoof = "Dennis \u202e)AMDAU:kcals(\u202c \u200b"
    assert Identity("telegram", "42", spoof).name == "Dennis )AMDAU:kcals("


def test_a_name_of_only_invisible_characters_is_no_name() -> None:
    identity = Identity("telegram", "42", "\u200b\u202e\ufeff")
    assert identity.name is None
    assert identity.label == "telegram:42"


def test_a_note_loses_its_overrides() -> None:
    parsed = parse(f"/code days {ITEM} 30 cash \u202e005\u202c from\u200b Jane", COMMANDS)
    assert parsed.args["note"] == "cash 005 from Jane"


def test_a_deny_reason_loses_its_overrides() -> None:
    parsed = parse("/approvals deny A7K2Q9 not \u2067paid\u2069\u200f", COMMANDS)
    assert parsed.args["reason"] == "not paid"


def test_an_item_id_pasted_with_a_zero_width_space_still_reads() -> None:
    parsed = parse(f"/history \u200b{ITEM}\u2060", COMMANDS)
    assert parsed.args["item"] == ITEM


async def test_the_note_sent_to_erm_and_shown_has_no_overrides(bot: Bot) -> None:
    reply = await bot.say("agent", f"/code days {ITEM} 30 paid \u202eEVIF\u202c")
    assert reply.codes
    [note] = [f.value for f in reply.fields if f.label == "Note"]
    assert note == "paid EVIF"
    last = bot.sandbox.item_by_oem_id(ITEM).code_generator.events[-1]
    assert last.description is None or "\u202e" not in last.description
