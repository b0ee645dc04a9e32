"""Finding things from a phone: items by client name or phone, fleets by part of a name, pages
that keep what was asked, and one wording for a fleet's rules."""

from __future__ import annotations

import re

import pytest
from bot_harness import Bot

from bot.messages import Click, Identity, Reply, Tone
from erm.sandbox import ACME
from erm.sandbox.model import Item
from erm.sandbox.seed import (
    FLEET_DEFAULT,
    FLEET_KANO,
    FLEET_OPEN,
    FLEET_STRICT,
    OPEN_ACP1_OEM_ID,
)

ITEM_LINE = re.compile(r"^([A-Z]{4}\d{10})\b")


def listed(reply: Reply) -> list[str]:
    """The OEM item ids of an /items reply, in the order shown."""
    return [m.group(1) for line in reply.lines if (m := ITEM_LINE.match(line))]


def owned_by(bot: Bot, wanted: str) -> list[str]:
    """OEM ids of acme's items whose client's name contains ``wanted`` (any case), sorted."""
    return sorted(
        i.oem_item_id
        for i in bot.sandbox.items_of(ACME.name, with_account=True)
        if i.asset_account is not None
        and wanted.casefold() in i.asset_account.credit.owner.name.casefold()
    )


def client_of(item: Item, name: str) -> None:
    """Rename the client of ``item`` in the sandbox (owner and user are one person there)."""
    assert item.asset_account is not None
    item.asset_account.credit.owner.name = name
    item.asset_account.user.name = name


def click(user: str, reply: Reply, label: str, key: str) -> Click:
    button = next(b for b in reply.buttons if b.label == label)
    return Click(Identity("console", user), button.value, request_key=key)


# -- /items finds clients -------------------------------------------------------------------------


async def test_items_finds_a_client_by_part_of_the_name_in_any_case(bot: Bot) -> None:
    item = bot.sandbox.items_of(ACME.name, with_account=True)[3]
    client_of(item, "Wairimu Otieno")

    reply = await bot.say("viewer", "/items wairimu OTIENO")

    assert listed(reply) == [item.oem_item_id]
    assert "Wairimu Otieno" in reply.lines[0]
    assert reply.confidential


async def test_items_by_a_common_name_lists_every_client_of_that_name(bot: Bot) -> None:
    first = bot.sandbox.items_of(ACME.name, with_account=True)[0]
    assert first.asset_account is not None
    surname = first.asset_account.credit.owner.name.split()[-1]
    expected = owned_by(bot, surname)
    assert 1 < len(expected) <= 10  # one page, so the whole answer is on it

    reply = await bot.say("viewer", f"/items {surname.lower()}")

    assert listed(reply) == expected


@pytest.mark.parametrize(
    "typed",
    ["+254 788 184 015", "+254-788-184-015", "0788 184 015", "254788184015", "(0788) 184-015"],
)
async def test_items_finds_a_client_by_phone_however_it_is_typed(bot: Bot, typed: str) -> None:
    item = next(
        i
        for i in bot.sandbox.items_of(ACME.name, with_account=True)
        if i.asset_account and i.asset_account.credit.owner.contact
    )
    contact = item.asset_account.credit.owner.contact if item.asset_account else None
    assert contact is not None
    contact.phone = "+254788184015"

    reply = await bot.say("viewer", f"/items {typed}")

    assert listed(reply) == [item.oem_item_id], reply.text()


async def test_items_by_a_piece_of_a_phone_number(bot: Bot) -> None:
    items = bot.sandbox.items_of(ACME.name, with_account=True)[:2]
    for item, phone in zip(items, ("+254700123987", "+254711123987"), strict=True):
        assert item.asset_account is not None
        assert item.asset_account.credit.owner.contact is not None
        item.asset_account.credit.owner.contact.phone = phone

    reply = await bot.say("viewer", "/items 123 987")

    assert listed(reply) == sorted(i.oem_item_id for i in items)


async def test_items_merges_id_and_client_matches_once_each_by_item_id(bot: Bot) -> None:
    pumps = sorted(
        i.oem_item_id for i in bot.sandbox.items_of(ACME.name) if "PUMP" in i.oem_item_id
    )
    lamp = next(
        i for i in bot.sandbox.items_of(ACME.name, with_account=True) if "LAMP" in i.oem_item_id
    )
    pump = next(
        i for i in bot.sandbox.items_of(ACME.name, with_account=True) if "PUMP" in i.oem_item_id
    )
    client_of(lamp, "Grace Pumphrey")  # a client match only
    client_of(pump, "Pumpuni Moyo")  # an id match and a client match: listed once
    before = bot.transport.calls.copy()

    first = await bot.say("viewer", "/items pump")
    pages = [first, await bot.say("viewer", "/items pump --page 2")]
    pages.append(await bot.say("viewer", "/items pump --page 3"))

    assert "Page 1 of 3 (21 items), by item id." in first.notes
    assert listed(first)[0] == lamp.oem_item_id  # LAMP… sorts before PUMP…
    everything = [oem for page in pages for oem in listed(page)]
    assert everything == sorted([lamp.oem_item_id, *pumps])
    assert "Grace Pumphrey" in first.lines[0]
    # Two ERM lists a search, whichever page: bounded, and counted as two lookups.
    spent = bot.transport.calls - before
    assert spent["GetAllClientItems"] == 3
    assert spent["GetAllAssetAccountsForClient"] == 3


async def test_items_with_no_match_says_what_can_be_searched(bot: Bot) -> None:
    reply = await bot.say("viewer", "/items Nobody Atall")

    assert reply.tone is Tone.INFO
    assert reply.title == "No item or client matches 'Nobody Atall'."
    assert "All items: /items" in reply.lines


# -- /fleet by part of a name ---------------------------------------------------------------------


async def test_fleet_by_part_of_a_name_shows_that_fleet(bot: Bot) -> None:
    reply = await bot.say("viewer", "/fleet nairobi")

    assert reply.title == f"Fleet {FLEET_DEFAULT}"


async def test_fleet_matching_several_lists_the_exact_commands(bot: Bot) -> None:
    reply = await bot.say("viewer", "/fleet acme")

    acme_fleets = [
        f.fleet_name for f in bot.sandbox.fleets.values() if f.distributor.name == "acme"
    ]
    assert reply.tone is Tone.INFO
    assert reply.title == f"{len(acme_fleets)} fleets have 'acme' in their name. Type one of:"
    assert sorted(reply.lines) == sorted(f'/fleet "{name}"' for name in acme_fleets)
    chosen = await bot.say("viewer", f'/fleet "{FLEET_STRICT}"')
    assert chosen.title == f"Fleet {FLEET_STRICT}"


async def test_fleet_matching_none_says_so_and_how_to_list_all(bot: Bot) -> None:
    reply = await bot.say("viewer", "/fleet mars")

    assert reply.title == "No fleet of acme has 'mars' in its name."
    assert reply.lines == ("All fleets: /fleet",)
    assert FLEET_KANO not in reply.text()  # another distributor's fleet is never named


async def test_fleet_list_and_detail_state_an_unlimited_rule_alike(bot: Bot) -> None:
    listing = await bot.say("viewer", "/fleet")
    detail = await bot.say("viewer", f'/fleet "{FLEET_OPEN}"')

    [line] = [line for line in listing.lines if line.startswith(f"{FLEET_OPEN}:")]
    assert "free codes no limit, reset codes no limit" in line
    assert "off" not in listing.text()
    fields = {f.label: f.value for f in detail.fields}
    assert fields["Free codes per item"] == "no limit"
    assert fields["Reset codes per item"] == "no limit"
    [strict] = [line for line in listing.lines if line.startswith(f"{FLEET_STRICT}:")]
    assert "free codes 1, reset codes 1" in strict


# -- pages keep their context ---------------------------------------------------------------------


async def test_items_next_page_keeps_a_quoted_search_and_the_distributor(bot: Bot) -> None:
    first = await bot.say("viewer", '/items "solar home" --dist acme')

    assert "Next page: /items 'solar home' --page 2 --dist acme" in first.notes
    pressed = await bot.dispatcher.press(click("viewer", first, "Next page", "f1"))
    typed = await bot.say("viewer", "/items 'solar home' --page 2 --dist acme")

    assert pressed.card is not None
    assert pressed.card.title == "Items of acme matching 'solar home'"
    assert typed.title == pressed.card.title
    assert listed(typed) == listed(pressed.card)
    assert set(listed(typed)).isdisjoint(listed(first))
    assert "Next page: /items 'solar home' --page 3 --dist acme" in typed.notes


async def test_items_next_page_without_search_keeps_the_distributor(bot: Bot) -> None:
    first = await bot.say("viewer", "/items --dist acme")

    assert "Next page: /items --page 2 --dist acme" in first.notes


async def test_items_next_page_of_one_distributor_needs_no_dist(bot: Bot) -> None:
    first = await bot.say("viewer", "/items SHSA")

    assert "Next page: /items SHSA --page 2" in first.notes


async def test_history_older_keeps_the_count_and_the_distributor(bot: Bot) -> None:
    for days in (1, 2, 3):
        await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} {days} --again")

    first = await bot.say("viewer", f"/history {OPEN_ACP1_OEM_ID} 2 --dist acme")

    older = f"/history {OPEN_ACP1_OEM_ID} 2 --page 2 --dist acme"
    assert f"Older: {older}" in first.notes
    pressed = await bot.dispatcher.press(click("viewer", first, "Older", "h2"))
    assert pressed.card is not None
    assert pressed.card.title == (await bot.say("viewer", older)).title
