"""Every ErmClient method against the sandbox ERM: in-process, and once over real loopback HTTP."""

from __future__ import annotations

import re

import openpaygo
import pytest
from support import FakeClock

from erm.client import ErmClient
from erm.errors import ErmAuthError, ErmRejectedError
from erm.models import AccountStage, CodeSystem, CodeType, Item, SignIn
from erm.sandbox import (
    ACME,
    FLEET_DEFAULT,
    FLEET_OPEN,
    OPEN_ACP1_OEM_ID,
    OPEN_OPENTOKEN_OEM_ID,
    SUNBRIGHT,
    create_app,
    serve,
)
from erm.sandbox.state import SandboxState
from erm.transport import ClientConfig

ACP1_DIGITS = re.compile(r"^\d{21}$")


@pytest.fixture
async def acme(erm_client: ErmClient) -> SignIn:
    return await erm_client.sign_in_client(ACME.email, ACME.password)


async def open_item(client: ErmClient, acme: SignIn, oem_item_id: str) -> Item:
    page = await client.client_items(
        acme.access_token, acme.distributor_id, oem_item_id=oem_item_id
    )
    assert len(page.nodes) == 1
    return page.nodes[0]


async def test_sign_in_returns_client_id_and_token(
    erm_client: ErmClient, sandbox: SandboxState
) -> None:
    signed = await erm_client.sign_in_client(ACME.email, ACME.password)
    assert signed.distributor_id == sandbox.distributor_by_name("acme").id
    assert signed.access_token.count(".") == 2
    assert ACME.password not in repr(signed)
    assert signed.access_token not in repr(signed)


async def test_sign_in_with_wrong_password_is_auth_error(erm_client: ErmClient) -> None:
    with pytest.raises(ErmAuthError, match="Invalid Credentials"):
        await erm_client.sign_in_client(ACME.email, "not-the-password")


async def test_days_code_for_acp1_item_is_21_digits_and_in_history(
    erm_client: ErmClient, acme: SignIn
) -> None:
    item = await open_item(erm_client, acme, OPEN_ACP1_OEM_ID)
    issued = await erm_client.generate_days_code(acme.access_token, item, 30, "payment 123")
    assert issued.code_type is CodeType.DAYS
    assert ACP1_DIGITS.match(issued.code_dec)
    assert re.fullmatch(r"\*\d{3}( \d{3}){6}#", issued.keypad)
    history = await erm_client.code_history(
        acme.access_token, item.id, acme.distributor_id, first=1
    )
    newest = history.nodes[0]
    assert (newest.code_dec, newest.code_days, newest.description) == (
        issued.code_dec,
        30,
        "payment 123",
    )


async def test_days_code_for_opentoken_item_decodes_with_the_item_secret(
    erm_client: ErmClient, acme: SignIn, sandbox: SandboxState
) -> None:
    item = await open_item(erm_client, acme, OPEN_OPENTOKEN_OEM_ID)
    assert item.code_system is CodeSystem.OPENTOKEN
    seeded = sandbox.item_by_oem_id(OPEN_OPENTOKEN_OEM_ID)
    count_before = seeded.code_generator.token_count
    issued = await erm_client.generate_days_code(acme.access_token, item, 7)
    assert len(issued.code_dec) == 9
    batch = seeded.item_batch
    value, token_type, _, _ = openpaygo.decode_token(
        token=issued.code_dec,
        secret_key=batch.secret_key,
        count=count_before,
        starting_code=int(batch.starting_code or 0),
    )
    assert (value, token_type) == (7, openpaygo.TokenType.ADD_TIME)


@pytest.mark.parametrize("code_type", [CodeType.FREE, CodeType.RESET])
async def test_free_and_reset_codes(
    erm_client: ErmClient, acme: SignIn, code_type: CodeType
) -> None:
    item = await open_item(erm_client, acme, OPEN_ACP1_OEM_ID)
    issued = await erm_client.generate_code(acme.access_token, code_type, item, description="x")
    assert issued.code_type is code_type
    assert ACP1_DIGITS.match(issued.code_dec)


async def test_code_history_pages_newest_first(erm_client: ErmClient, acme: SignIn) -> None:
    item = await open_item(erm_client, acme, OPEN_ACP1_OEM_ID)
    token = acme.access_token
    issued = [await erm_client.generate_days_code(token, item, d) for d in (1, 2, 3, 4, 5)]
    first = await erm_client.code_history(token, item.id, acme.distributor_id, first=2)
    assert first.has_next
    assert [e.code_days for e in first.nodes] == [5, 4]
    second = await erm_client.code_history(
        token, item.id, acme.distributor_id, first=2, after=first.end_cursor
    )
    assert [e.code_days for e in second.nodes] == [3, 2]
    everything = [
        e async for e in erm_client.iter_code_history(token, item.id, acme.distributor_id)
    ]
    assert len(everything) == first.total
    assert [e.code_dec for e in everything[:5]] == [c.code_dec for c in reversed(issued)]
    newest = await erm_client.latest_codes(token, item.id, acme.distributor_id, 3)
    assert [e.code_days for e in newest] == [5, 4, 3]


async def test_item_fleets_and_one_fleet_with_policy(
    erm_client: ErmClient, acme: SignIn, sandbox: SandboxState
) -> None:
    page = await erm_client.item_fleets(acme.access_token, acme.distributor_id)
    names = {f.name for f in page.nodes}
    assert names == {f.fleet_name for f in sandbox.fleets_of("acme")}
    default = next(f for f in page.nodes if f.name == FLEET_DEFAULT)
    assert default.policy.free_codes == 5
    assert default.policy.interval_ms == 60_000
    fleet = await erm_client.fleet(acme.access_token, default.id)
    assert fleet.name == FLEET_DEFAULT
    assert len(fleet.items) == len(sandbox.items_of("acme", fleet=FLEET_DEFAULT))
    open_fleet = next(f for f in page.nodes if f.name == FLEET_OPEN)
    assert open_fleet.policy.interval_ms is None  # the rule is switched off


async def test_client_items_pages_search_and_oem_lookup(
    erm_client: ErmClient, acme: SignIn, sandbox: SandboxState
) -> None:
    token, client_id = acme.access_token, acme.distributor_id
    first = await erm_client.client_items(token, client_id, first=10)
    assert len(first.nodes) == 10
    assert first.total == len(sandbox.items_of("acme"))
    second = await erm_client.client_items(token, client_id, first=10, after=first.end_cursor)
    assert not {i.id for i in first.nodes} & {i.id for i in second.nodes}
    found = await erm_client.client_items(token, client_id, search="pump")
    assert found.nodes
    assert all("PUMP" in i.oem_item_id for i in found.nodes)
    exact = await erm_client.client_items(token, client_id, oem_item_id=OPEN_ACP1_OEM_ID.lower())
    assert [i.oem_item_id for i in exact.nodes] == [OPEN_ACP1_OEM_ID]


async def test_item_has_fleet_firmware_and_client(
    erm_client: ErmClient, acme: SignIn, sandbox: SandboxState
) -> None:
    seeded = sandbox.items_of("acme", with_account=True)[0]
    item = await erm_client.item(acme.access_token, seeded.id)
    assert (item.id, item.oem_item_id) == (seeded.id, seeded.oem_item_id)
    assert item.fleet is not None
    assert item.code_system in (CodeSystem.ACP1, CodeSystem.OPENTOKEN)
    assert item.account_id
    assert item.client_name


async def test_asset_accounts_and_one_account(erm_client: ErmClient, acme: SignIn) -> None:
    page = await erm_client.asset_accounts(acme.access_token, acme.distributor_id, first=50)
    assert page.nodes
    assert page.total is not None
    assert page.total >= len(page.nodes)
    stages = {a.stage for a in page.nodes}
    assert stages <= set(AccountStage)
    account = await erm_client.asset_account(acme.access_token, page.nodes[0].id)
    assert account.id == page.nodes[0].id
    assert account.currency
    assert account.balance is not None
    assert account.item.oem_item_id
    assert account.pay_plan is not None


async def test_another_distributors_item_is_rejected_as_forbidden(
    erm_client: ErmClient, acme: SignIn, sandbox: SandboxState
) -> None:
    foreign = sandbox.items_of(SUNBRIGHT.name)[0]
    with pytest.raises(ErmRejectedError) as caught:
        await erm_client.item(acme.access_token, foreign.id)
    assert caught.value.erm_code == "FORBIDDEN"


async def test_days_out_of_range_is_rejected_by_erm(erm_client: ErmClient, acme: SignIn) -> None:
    item = await open_item(erm_client, acme, OPEN_ACP1_OEM_ID)
    with pytest.raises(ErmRejectedError, match="must not be greater than 1095"):
        await erm_client.generate_days_code(acme.access_token, item, 1096)


async def test_expired_token_is_auth_error(
    erm_client: ErmClient, acme: SignIn, clock: FakeClock
) -> None:
    clock.advance(2 * 3600)
    with pytest.raises(ErmAuthError):
        await erm_client.item_fleets(acme.access_token, acme.distributor_id)


async def test_every_method_over_real_loopback_http(sandbox: SandboxState) -> None:
    async with serve(create_app(sandbox)) as url:
        assert url.startswith("http://127.0.0.1:")
        async with ErmClient(ClientConfig(url=url, total_timeout=5.0)) as client:
            signed = await client.sign_in_client(ACME.email, ACME.password)
            token, client_id = signed.access_token, signed.distributor_id
            items = await client.client_items(token, client_id, oem_item_id=OPEN_ACP1_OEM_ID)
            item = await client.item(token, items.nodes[0].id)
            issued = await client.generate_days_code(token, item, 10)
            free = await client.generate_free_code(token, item)
            reset = await client.generate_reset_code(token, item)
            history = await client.latest_codes(token, item.id, client_id, 3)
            assert [e.code_dec for e in history] == [
                reset.code_dec,
                free.code_dec,
                issued.code_dec,
            ]
            fleets = await client.item_fleets(token, client_id)
            fleet = await client.fleet(token, fleets.nodes[0].id)
            assert fleet.items
            accounts = await client.asset_accounts(token, client_id, first=1)
            account = await client.asset_account(token, accounts.nodes[0].id)
            assert account.id == accounts.nodes[0].id
