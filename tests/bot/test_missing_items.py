"""An unknown item (issue 16, item 3): the refusal names the distributor searched, shows how to
find the item, and gives the exact --dist command when another of the person's distributors has
it. Nothing is issued."""

from __future__ import annotations

from bot_harness import Bot

from bot.roles import Role
from erm.sandbox import ACME, OPEN_ACP1_OEM_ID, SUNBRIGHT

SUNBRIGHT_ITEM = "SHSC2407000001"  # fleet Lagos, sunbright's (erm/sandbox/seed.py)


async def test_an_unknown_item_names_the_distributor_and_how_to_find_it(bot: Bot) -> None:
    reply = await bot.say("agent", "/history TEST2503999999")

    assert reply.title == f"No item TEST2503999999 at {ACME.name}."
    assert reply.lines == ("Find it by part of its id: /items TEST2503",)


async def test_an_item_of_another_distributor_gets_the_dist_command(multi_bot: Bot) -> None:
    await multi_bot.grant("agent", Role.AGENT, SUNBRIGHT.name)
    await multi_bot.say("agent", f"/use {ACME.name}")
    before = multi_bot.sandbox.item_by_oem_id(SUNBRIGHT_ITEM).code_generator.events[:]

    reply = await multi_bot.say("agent", f"/code days {SUNBRIGHT_ITEM} 7 —dist {ACME.name}")

    assert reply.title == f"No item {SUNBRIGHT_ITEM} at {ACME.name}."
    assert reply.lines == (
        f"It is at {SUNBRIGHT.name}. Type:",
        f"/code days {SUNBRIGHT_ITEM} 7 --dist {SUNBRIGHT.name}",
    )
    assert multi_bot.sandbox.item_by_oem_id(SUNBRIGHT_ITEM).code_generator.events == before
    again = await multi_bot.say("agent", reply.lines[-1])
    assert again.codes


async def test_an_item_no_distributor_of_the_person_has_is_not_looked_for_elsewhere(
    multi_bot: Bot,
) -> None:
    # The agent has no role at sunbright: its items are not theirs to hear of.
    reply = await multi_bot.say("agent", f"/history {SUNBRIGHT_ITEM}")

    assert reply.title == f"No item {SUNBRIGHT_ITEM} at {ACME.name}."
    assert SUNBRIGHT.name not in reply.text()


async def test_a_known_item_is_unaffected(bot: Bot) -> None:
    reply = await bot.say("agent", f"/history {OPEN_ACP1_OEM_ID} 1")

    assert "No item" not in reply.text()
