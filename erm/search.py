"""Finding items by what people know of them: part of an id, a client's name, a phone number.

ERM's ``search`` is read both ways its evidence allows (erm-api.md §2.5, §2.6): on items it may
or may not cover the client, on accounts it may or may not cover ids or phones. So both lists are
asked, and an account counts only if its client's name or phone (or its item's id) visibly
matches: whatever ERM's reading, nothing unrelated is shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from erm.models import AssetAccount, Item, Page

# A search reads at most this many items and as many accounts: one page of each, whatever it finds.
SEARCH_MATCHES = 50
_PHONE_TEXT = re.compile(r"^\+?[\d\s().-]+$")
_NOT_DIGIT = re.compile(r"\D")
# Fewer digits than this is part of an id or an amount more likely than part of a phone number.
_PHONE_MIN_DIGITS = 5
# National numbers have 9 digits in Kenya, Uganda and Tanzania and 10 in Nigeria, country codes
# 1 to 3: the last 9 digits of a whole number never include its country code or trunk 0.
_PHONE_TAIL = 9


@dataclass(frozen=True, slots=True)
class ItemMatches:
    """What a search found: items by OEM item id, each once."""

    items: tuple[Item, ...]
    complete: bool
    """False when ERM had more matches than one search reads (narrow the search)."""


def phone_digits(text: str) -> str | None:
    """The digits to find the phone number ``text`` by, or None if it is not one.

    People type numbers as they know them: ``+254 712 345 678``, ``0712-345-678``,
    ``254712345678``. A whole number is looked for by its last 9 digits, which every one of these
    shares with the number as ERM stores it (whatever prefix it keeps); a shorter run of digits
    is a piece of a number, looked for as typed.
    """
    if not _PHONE_TEXT.match(text):
        return None
    digits = _NOT_DIGIT.sub("", text)
    if len(digits) < _PHONE_MIN_DIGITS:
        return None
    return digits[-_PHONE_TAIL:]


def client_matches(account: AssetAccount, text: str, phone: str | None) -> bool:
    wanted = text.casefold()
    if phone and phone in _NOT_DIGIT.sub("", account.client_phone or ""):
        return True
    item = account.item
    return any(
        wanted in (value or "").casefold()
        for value in (account.client_name, item.oem_item_id, item.seller_item_id)
    )


def with_client(found: Item | None, account: AssetAccount) -> Item:
    """The item of ``account`` with its client: ERM may leave the asset's own account out."""
    item = found or account.item
    return replace(
        item,
        account_id=item.account_id or account.id,
        client_name=item.client_name or account.client_name,
        client_phone=item.client_phone or account.client_phone,
    )


def merged(
    by_id: Page[Item], by_client: Page[AssetAccount], text: str, phone: str | None
) -> ItemMatches:
    """The items of both lists, each once (with its client), by OEM item id."""
    found = {item.id: item for item in by_id.nodes}
    for account in by_client.nodes:
        if client_matches(account, text, phone):
            found[account.item.id] = with_client(found.get(account.item.id), account)
    ordered = sorted(found.values(), key=lambda i: (i.oem_item_id.casefold(), i.id))
    return ItemMatches(tuple(ordered), complete=not (by_id.has_next or by_client.has_next))
