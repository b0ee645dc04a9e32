"""Finding items by client: the sandbox's account search, phone numbers as people type them, and
the service's merge of ERM's two searches under every reading of what ERM's ``search`` covers."""

from __future__ import annotations

from typing import Any

import pytest
from support import CountingTransport

from erm.sandbox import ACME
from erm.sandbox.model import Item
from erm.sandbox.state import Paging, SandboxState
from erm.search import phone_digits
from erm.service import ErmService


def accounted(sandbox: SandboxState) -> list[Item]:
    return [i for i in sandbox.items_of(ACME.name, with_account=True) if i.asset_account]


def set_client(item: Item, name: str | None = None, phone: str | None = None) -> None:
    account = item.asset_account
    assert account is not None
    contact = account.credit.owner.contact
    assert contact is not None
    if name is not None:
        account.credit.owner.name = name
        account.user.name = name
    if phone is not None:
        contact.phone = phone


# -- phone numbers as typed -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("+254 712 345 678", "712345678"),
        ("+254-712-345-678", "712345678"),
        ("00254 712 345678", "712345678"),
        ("0712 345 678", "712345678"),
        ("(0712) 345-678", "712345678"),
        ("+234 803 000 0200", "030000200"),
        ("0803 000 0200", "030000200"),
        ("345 678", "345678"),
    ],
)
def test_a_phone_number_is_looked_for_by_the_digits_every_form_shares(
    typed: str, digits: str
) -> None:
    assert phone_digits(typed) == digits


@pytest.mark.parametrize("typed", ["Grace Wanjiku", "SHSA2409", "1234", "+254", "12-34", ""])
def test_names_ids_and_short_numbers_are_not_phone_numbers(typed: str) -> None:
    assert phone_digits(typed) is None


# -- the sandbox's account search -----------------------------------------------------------------


def test_sandbox_account_search_covers_the_clients_phone_as_a_substring(
    sandbox: SandboxState,
) -> None:
    item = accounted(sandbox)[5]
    set_client(item, phone="+254799000111")
    distributor = sandbox.distributor_by_name(ACME.name)

    found = sandbox.accounts_for_client(distributor, distributor.id, "799000111", Paging(first=50))

    assert [e["node"].asset.oem_item_id for e in found["page"]["edges"]] == [item.oem_item_id]


def test_sandbox_account_search_covers_the_clients_name_in_any_case(
    sandbox: SandboxState,
) -> None:
    item = accounted(sandbox)[6]
    set_client(item, name="Wangari Maathai")
    distributor = sandbox.distributor_by_name(ACME.name)

    found = sandbox.accounts_for_client(distributor, distributor.id, "ngari MAA", Paging(first=50))

    assert [e["node"].asset.oem_item_id for e in found["page"]["edges"]] == [item.oem_item_id]


# -- the service's merge --------------------------------------------------------------------------


async def test_find_items_by_phone_gives_the_item_with_its_client(
    service: ErmService, sandbox: SandboxState, erm_transport: CountingTransport
) -> None:
    item = accounted(sandbox)[7]
    set_client(item, name="Baraka Oduya", phone="+254733444555")
    await service.client_id(ACME.name)  # sign in first: only the search is counted
    before = erm_transport.calls.copy()

    found = await service.find_items(ACME.name, "0733-444-555")

    assert [(i.oem_item_id, i.client_name) for i in found.items] == [
        (item.oem_item_id, "Baraka Oduya")
    ]
    assert found.complete
    spent = erm_transport.calls - before
    assert spent == {"GetAllClientItems": 1, "GetAllAssetAccountsForClient": 1}


async def test_find_items_reads_one_page_of_each_and_says_when_there_was_more(
    service: ErmService,
) -> None:
    found = await service.find_items(ACME.name, "solar", limit=5)

    assert not found.complete
    ids = [i.oem_item_id for i in found.items]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids)) <= 10


async def test_find_items_when_erm_ignores_the_account_search_shows_only_real_matches(
    service: ErmService, sandbox: SandboxState, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One reading of ERM: the account list does not narrow by ``search`` at all.
    unfiltered = sandbox.accounts_for_client

    def ignoring_search(distributor: Any, client_id: str, _search: Any, paging: Paging) -> Any:
        return unfiltered(distributor, client_id, None, paging)

    monkeypatch.setattr(sandbox, "accounts_for_client", ignoring_search)
    distributor = sandbox.distributor_by_name(ACME.name)
    listed = unfiltered(distributor, distributor.id, None, Paging(first=1))
    first = listed["page"]["edges"][0]["node"].asset  # within the one page a search reads
    set_client(first, name="Odhiambo Kefa")

    found = await service.find_items(ACME.name, "odhiambo")

    assert [i.oem_item_id for i in found.items] == [first.oem_item_id]


async def test_find_items_when_erm_item_search_covers_clients_lists_each_item_once(
    service: ErmService, sandbox: SandboxState, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The other reading: ERM's item search already finds items by their client's name.
    named = accounted(sandbox)[:3]
    for item in named:
        set_client(item, name="Njambi Karanja")
    items_search = sandbox.client_items

    def by_client_too(distributor: Any, client_id: str, paging: Paging, **kw: Any) -> Any:
        if kw.get("search") == "Njambi":
            nodes = [{"cursor": i.id, "node": i} for i in named]
            info: dict[str, Any] = {"hasNextPage": False, "hasPreviousPage": False}
            info |= {"startCursor": None, "endCursor": None}
            return {"page": {"edges": nodes, "pageInfo": info}, "pageData": None}
        return items_search(distributor, client_id, paging, **kw)

    monkeypatch.setattr(sandbox, "client_items", by_client_too)

    found = await service.find_items(ACME.name, "Njambi")

    assert [i.oem_item_id for i in found.items] == sorted(i.oem_item_id for i in named)
    assert {i.client_name for i in found.items} == {"Njambi Karanja"}
