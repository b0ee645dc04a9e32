"""ErmService against the sandbox: sessions, item lookup, code generation and reconciliation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import TOKEN_TTL, CountingTransport, FakeClock, TestDatabase, make_service

from erm.client import ErmClient
from erm.errors import (
    ErmAuthError,
    ErmRejectedError,
    InvalidInputError,
    ItemNotFoundError,
    UnknownDistributorError,
    VaultError,
)
from erm.models import CodeType, SignInMethod
from erm.reconcile import CodeOutcomePendingError, Verdict, code_description
from erm.sandbox import (
    ACME,
    ACME_SERVICER,
    ACME_STAFF,
    FLEET_ANGAZA,
    FLEET_STRICT,
    OPEN_ACP1_OEM_ID,
    SUNBRIGHT,
)
from erm.sandbox.seed import DemoCredentials
from erm.sandbox.state import SandboxState
from erm.secret_box import SecretBox
from erm.service import ErmService
from erm.transport import ClientConfig
from erm.vault import TokenVault

DAYS = CodeType.DAYS


def new_events(sandbox: SandboxState, oem_item_id: str, before: int) -> int:
    return len(sandbox.item_by_oem_id(oem_item_id).code_generator.events) - before


def event_count(sandbox: SandboxState, oem_item_id: str) -> int:
    return len(sandbox.item_by_oem_id(oem_item_id).code_generator.events)


# -- sessions ----------------------------------------------------------------------------------


async def test_signs_in_lazily_once_and_reuses_the_token(
    service: ErmService, erm_transport: CountingTransport
) -> None:
    assert service.sign_ins == 0
    await service.item_fleets(ACME.name)
    await service.client_items(ACME.name)
    assert service.sign_ins == 1
    assert erm_transport.calls["SignInClient"] == 1


async def test_stored_token_survives_a_restart(
    service: ErmService, erm_client: ErmClient, acme_vault: TokenVault, clock: FakeClock
) -> None:
    await service.item_fleets(ACME.name)
    restarted = make_service(erm_client, acme_vault, clock)
    await restarted.item_fleets(ACME.name)
    assert restarted.sign_ins == 0


async def test_signs_in_again_shortly_before_the_token_expires(
    service: ErmService, clock: FakeClock, erm_transport: CountingTransport
) -> None:
    await service.item_fleets(ACME.name)
    clock.advance(TOKEN_TTL - 300)
    await service.item_fleets(ACME.name)
    assert service.sign_ins == 1
    clock.advance(200)  # 100 s left, inside the 120 s margin
    await service.item_fleets(ACME.name)
    assert service.sign_ins == 2
    assert erm_transport.calls["SignInClient"] == 2


async def test_concurrent_callers_trigger_one_sign_in(
    service: ErmService, erm_transport: CountingTransport
) -> None:
    await asyncio.gather(*(service.client_items(ACME.name) for _ in range(20)))
    assert erm_transport.calls["SignInClient"] == 1
    assert erm_transport.calls["GetAllClientItems"] == 20


async def test_unauthenticated_causes_one_fresh_sign_in_and_one_retry(
    service: ErmService, sandbox: SandboxState, erm_transport: CountingTransport
) -> None:
    await service.item_fleets(ACME.name)
    sandbox.revoke_tokens()
    results = await asyncio.gather(*(service.item_fleets(ACME.name) for _ in range(10)))
    assert all(results)
    assert erm_transport.calls["SignInClient"] == 2


async def test_token_refused_even_after_fresh_sign_in_is_a_clean_auth_error(
    service: ErmService, sandbox: SandboxState, erm_transport: CountingTransport
) -> None:
    sandbox.config.token_ttl_seconds = -60  # ERM hands out tokens that are already expired
    with pytest.raises(ErmAuthError):
        await service.item_fleets(ACME.name)
    assert erm_transport.calls["SignInClient"] == 2
    assert erm_transport.calls["GetItemFleetsForClient"] == 2


async def test_wrong_stored_password_names_the_refusal(
    erm_client: ErmClient, sqlite_engine: AsyncEngine, secret_keys: list[str], clock: FakeClock
) -> None:
    vault = TokenVault(sqlite_engine, SecretBox(secret_keys))
    await vault.add_distributor(ACME.name, ACME.email, "outdated-password")
    with pytest.raises(ErmAuthError, match="Invalid Credentials") as caught:
        await make_service(erm_client, vault, clock).item_fleets(ACME.name)
    assert "outdated-password" not in str(caught.value)


async def test_unknown_distributor(service: ErmService) -> None:
    with pytest.raises(UnknownDistributorError):
        await service.item_fleets("nobody")


async def test_undecryptable_credentials_name_the_distributor(
    erm_client: ErmClient, acme_vault: TokenVault, sqlite_engine: AsyncEngine, clock: FakeClock
) -> None:
    wrong_keys = TokenVault(sqlite_engine, SecretBox([SecretBox.generate_key()]))
    with pytest.raises(VaultError, match=ACME.name) as caught:
        await make_service(erm_client, wrong_keys, clock).item_fleets(ACME.name)
    assert ACME.password not in str(caught.value)


async def test_add_distributor_checks_credentials_before_storing(
    erm_client: ErmClient, sqlite_engine: AsyncEngine, secret_keys: list[str], clock: FakeClock
) -> None:
    vault = TokenVault(sqlite_engine, SecretBox(secret_keys))
    service = make_service(erm_client, vault, clock)
    with pytest.raises(ErmAuthError):
        await service.add_distributor(SUNBRIGHT.name, SUNBRIGHT.email, "wrong")
    assert await vault.names() == []
    signed = await service.add_distributor(SUNBRIGHT.name, SUNBRIGHT.email, SUNBRIGHT.password)
    assert (await vault.credentials(SUNBRIGHT.name)).client_id == signed.distributor_id
    await service.item_fleets(SUNBRIGHT.name)
    assert service.sign_ins == 1  # the token of the check is stored and used


@pytest.mark.parametrize(
    ("login", "method"),
    [(ACME_SERVICER, SignInMethod.CLIENT), (ACME_STAFF, SignInMethod.USER)],
    ids=["servicer", "staff"],
)
async def test_account_acting_for_a_distributor_queries_with_the_tokens_distributor_id(
    erm_client: ErmClient,
    sqlite_engine: AsyncEngine,
    secret_keys: list[str],
    clock: FakeClock,
    sandbox: SandboxState,
    login: DemoCredentials,
    method: SignInMethod,
) -> None:
    vault = TokenVault(sqlite_engine, SecretBox(secret_keys))
    service = make_service(erm_client, vault, clock)
    signed = await service.add_distributor("acme", login.email, login.password, sign_in=method)
    acme_id = sandbox.distributor_by_name("acme").id
    assert signed.account_id != acme_id
    assert signed.distributor_id == acme_id
    item, events = await service.code_history("acme", OPEN_ACP1_OEM_ID, 3)
    assert item.oem_item_id == OPEN_ACP1_OEM_ID
    assert len(await service.item_fleets("acme")) > 0
    service.forget_sessions()  # a restart: the stored token and id are used, not the account's
    assert (await service.code_history("acme", OPEN_ACP1_OEM_ID, 1))[1][0] == events[0]


async def test_database_holds_no_plaintext_password_or_token(
    database: TestDatabase,
    engine: AsyncEngine,
    erm_client: ErmClient,
    secret_keys: list[str],
    clock: FakeClock,
) -> None:
    vault = TokenVault(engine, SecretBox(secret_keys))
    service = make_service(erm_client, vault, clock)
    signed = await service.add_distributor(ACME.name, ACME.email, ACME.password)
    secrets_used = [ACME.password, signed.access_token, *signed.access_token.split(".")]
    if database.path is not None:
        await engine.dispose()
        dump = database.path.read_bytes()
        for wal in database.path.parent.glob(database.path.name + "-*"):
            dump += wal.read_bytes()
        text = dump.decode("latin-1")
    else:
        async with engine.connect() as connection:
            rows = await connection.exec_driver_sql("SELECT * FROM erm_distributors")
            text = repr(rows.all())
    assert ACME.email in text  # the dump is readable: the check below is meaningful
    leaked = [secret for secret in secrets_used if secret in text]
    assert leaked == []


# -- items -------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", [OPEN_ACP1_OEM_ID, OPEN_ACP1_OEM_ID.lower(), "  TEST2503000001 "])
async def test_resolves_an_oem_item_id_whatever_the_case_and_spaces(
    service: ErmService, sandbox: SandboxState, typed: str
) -> None:
    item = await service.resolve_item(ACME.name, typed)
    assert item.id == sandbox.item_by_oem_id(OPEN_ACP1_OEM_ID).id


async def test_resolves_a_seller_item_id_and_an_erm_id(
    service: ErmService, sandbox: SandboxState
) -> None:
    seeded = next(
        i
        for i in sandbox.items_of(ACME.name, fleet=FLEET_ANGAZA)
        if i.seller_item_id != i.oem_item_id
    )
    by_seller = await service.resolve_item(ACME.name, seeded.seller_item_id.lower())
    assert by_seller.id == seeded.id
    by_id = await service.resolve_item(ACME.name, seeded.id.upper())
    assert by_id.oem_item_id == seeded.oem_item_id


async def test_resolved_items_are_cached(
    service: ErmService, erm_transport: CountingTransport
) -> None:
    first = await service.resolve_item(ACME.name, OPEN_ACP1_OEM_ID)
    before = erm_transport.total
    again = await service.resolve_item(ACME.name, OPEN_ACP1_OEM_ID.lower())
    by_id = await service.resolve_item(ACME.name, first.id)
    assert again == first == by_id
    assert erm_transport.total == before


async def test_unknown_item_says_what_was_tried(service: ErmService) -> None:
    with pytest.raises(ItemNotFoundError, match="OEM item id and as a seller item id"):
        await service.resolve_item(ACME.name, "NOPE2501000001")


async def test_another_distributors_item_is_not_found(
    service: ErmService, sandbox: SandboxState
) -> None:
    foreign = sandbox.items_of(SUNBRIGHT.name)[0]
    with pytest.raises(ItemNotFoundError):
        await service.resolve_item(ACME.name, foreign.id)
    with pytest.raises(ItemNotFoundError):
        await service.resolve_item(ACME.name, foreign.oem_item_id)


# -- codes -------------------------------------------------------------------------------------


async def test_days_code_carries_the_note_and_a_reference(
    service: ErmService, sandbox: SandboxState
) -> None:
    issued = await service.generate_code(
        ACME.name, DAYS, OPEN_ACP1_OEM_ID, days=30, note="cash 500", reference="r1"
    )
    assert (issued.days, issued.reconciled) == (30, False)
    assert issued.item.oem_item_id == OPEN_ACP1_OEM_ID
    newest = sandbox.item_by_oem_id(OPEN_ACP1_OEM_ID).code_generator.events[-1]
    assert newest.code_dec_string == issued.code_dec
    assert newest.description == code_description("cash 500", "r1") == "cash 500 [erm-bot r1]"


async def test_erm_refusal_keeps_erm_message(
    service: ErmService, sandbox: SandboxState, clock: FakeClock
) -> None:
    strict = sandbox.items_of(ACME.name, fleet=FLEET_STRICT)[0].oem_item_id
    await service.generate_code(ACME.name, CodeType.FREE, strict)
    with pytest.raises(ErmRejectedError, match="interval not elapsed"):
        await service.generate_code(ACME.name, CodeType.FREE, strict)
    clock.advance(3600)
    with pytest.raises(ErmRejectedError, match="Free code limit reached"):
        await service.generate_code(ACME.name, CodeType.FREE, strict)


BAD_ITEMS = [
    "",
    "   ",
    "X" * 65,
    "\u0422\u0415\u0421\u0422-2503",  # Cyrillic look-alikes of TEST
    '") { __schema { types { name } } }',
    "a b",
]
BAD_DAYS: list[object] = [0, 1096, -5, "abc", "30", 2.5, True, None]


@pytest.mark.parametrize("item_ref", BAD_ITEMS)
async def test_bad_item_id_is_refused_before_anything_is_sent(
    service: ErmService, erm_transport: CountingTransport, item_ref: str
) -> None:
    with pytest.raises(InvalidInputError):
        await service.generate_code(ACME.name, DAYS, item_ref, days=30)
    assert erm_transport.total == 0


@pytest.mark.parametrize("days", BAD_DAYS)
async def test_bad_days_are_refused_before_anything_is_sent(
    service: ErmService, erm_transport: CountingTransport, days: object
) -> None:
    with pytest.raises(InvalidInputError, match="days"):
        await service.generate_code(ACME.name, DAYS, OPEN_ACP1_OEM_ID, days=days)  # type: ignore[arg-type]
    assert erm_transport.total == 0


async def test_free_code_takes_no_days_and_notes_have_a_limit(
    service: ErmService, erm_transport: CountingTransport
) -> None:
    with pytest.raises(InvalidInputError):
        await service.generate_code(ACME.name, CodeType.FREE, OPEN_ACP1_OEM_ID, days=3)
    with pytest.raises(InvalidInputError, match="note"):
        await service.generate_code(ACME.name, DAYS, OPEN_ACP1_OEM_ID, days=3, note="n" * 201)
    with pytest.raises(InvalidInputError):
        await service.generate_code(ACME.name, CodeType.SYNC, OPEN_ACP1_OEM_ID)
    assert erm_transport.total == 0


@pytest.fixture
async def impatient_service(
    erm_transport: CountingTransport, acme_vault: TokenVault, clock: FakeClock
) -> AsyncIterator[ErmService]:
    """A service whose ERM calls give up after 0.3 s, so a hanging answer is lost quickly."""
    config = ClientConfig(url="http://sandbox.test/graphql", total_timeout=0.3, retry_backoff=0)
    client = ErmClient(config, transport=erm_transport)
    service = make_service(client, acme_vault, clock)
    await service.resolve_item(ACME.name, OPEN_ACP1_OEM_ID)  # sign in and cache the item first
    yield service
    await client.aclose()


@pytest.mark.parametrize("fault", ["hang_after_mutation_next", "drop_after_mutation_next"])
async def test_lost_answer_is_reconciled_to_the_one_code_erm_created(
    impatient_service: ErmService,
    sandbox: SandboxState,
    erm_transport: CountingTransport,
    fault: str,
) -> None:
    sandbox.faults.hang_seconds = 2.0
    setattr(sandbox.faults, fault, 1)
    before = event_count(sandbox, OPEN_ACP1_OEM_ID)
    issued = await impatient_service.generate_code(ACME.name, DAYS, OPEN_ACP1_OEM_ID, days=7)
    assert issued.reconciled
    assert new_events(sandbox, OPEN_ACP1_OEM_ID, before) == 1
    created = sandbox.item_by_oem_id(OPEN_ACP1_OEM_ID).code_generator.events[-1]
    assert (issued.code_dec, issued.days) == (created.code_dec_string, 7)
    assert erm_transport.calls["GenerateDaysCode"] == 1


async def test_lost_request_that_created_nothing_settles_as_nothing_issued_after_the_window(
    impatient_service: ErmService, sandbox: SandboxState, erm_transport: CountingTransport
) -> None:
    sandbox.faults.drop_next = 1  # the connection breaks before ERM runs the mutation
    before = event_count(sandbox, OPEN_ACP1_OEM_ID)
    with pytest.raises(CodeOutcomePendingError) as caught:
        await impatient_service.generate_code(ACME.name, DAYS, OPEN_ACP1_OEM_ID, days=7)
    assert caught.value.settlement.verdict is Verdict.NONE  # not final: the window is not over
    settled = await impatient_service.settle(caught.value.pending)
    assert (settled.verdict, settled.code) == (Verdict.NONE, None)
    assert new_events(sandbox, OPEN_ACP1_OEM_ID, before) == 0
    assert erm_transport.calls["GenerateDaysCode"] == 1


async def test_code_committed_after_the_timeout_is_found_not_reported_absent(
    impatient_service: ErmService, sandbox: SandboxState, clock: FakeClock
) -> None:
    sandbox.faults.drop_after_mutation_next = 1
    sandbox.faults.commit_delay_seconds = 4.0  # ERM's history shows the code 4 s later
    with pytest.raises(CodeOutcomePendingError) as caught:
        await impatient_service.generate_code(ACME.name, DAYS, OPEN_ACP1_OEM_ID, days=7)
    clock.advance(5)
    settled = await impatient_service.settle(caught.value.pending)
    created = sandbox.item_by_oem_id(OPEN_ACP1_OEM_ID).code_generator.events[-1]
    assert settled.verdict is Verdict.ISSUED
    assert settled.code is not None
    assert settled.code.code_dec == created.code_dec_string


@pytest.mark.parametrize("mode", ["truncate", "drop"])
async def test_code_whose_description_erm_did_not_keep_is_the_likely_answer(
    impatient_service: ErmService, sandbox: SandboxState, mode: str
) -> None:
    sandbox.faults.description_mode = mode
    sandbox.faults.description_max_chars = 12
    sandbox.faults.drop_after_mutation_next = 1
    issued = await impatient_service.generate_code(
        ACME.name, DAYS, OPEN_ACP1_OEM_ID, days=7, note="cash 500 from the client"
    )
    created = sandbox.item_by_oem_id(OPEN_ACP1_OEM_ID).code_generator.events[-1]
    assert (issued.reconciled, issued.likely) == (True, True)
    assert issued.code_dec == created.code_dec_string


@pytest.mark.parametrize("odd", ["bad_enum", "data_and_errors", "no_digits", "wrong_type"])
async def test_odd_answer_to_a_code_request_is_reconciled_never_shown_or_retried(
    impatient_service: ErmService,
    sandbox: SandboxState,
    erm_transport: CountingTransport,
    odd: str,
) -> None:
    sandbox.faults.odd_answer = odd
    sandbox.faults.odd_answer_next = 1
    issued = await impatient_service.generate_code(ACME.name, DAYS, OPEN_ACP1_OEM_ID, days=7)
    created = sandbox.item_by_oem_id(OPEN_ACP1_OEM_ID).code_generator.events[-1]
    assert (issued.reconciled, issued.likely) == (True, False)
    assert issued.code_dec == created.code_dec_string
    assert erm_transport.calls["GenerateDaysCode"] == 1


class GoneAfterMutation(httpx.AsyncBaseTransport):
    """ERM disappears right after it received a code mutation."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.gone = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.gone:
            raise httpx.ConnectError("connection refused")
        if b"mutation GenerateDaysCode" in request.content:
            self.gone = True
            await self.inner.handle_async_request(request)
            raise httpx.ReadError("connection reset")
        return await self.inner.handle_async_request(request)


async def test_unverifiable_outcome_stays_unreadable_never_nothing_issued(
    erm_transport: CountingTransport,
    acme_vault: TokenVault,
    clock: FakeClock,
    sandbox: SandboxState,
) -> None:
    config = ClientConfig(url="http://sandbox.test/graphql", retry_backoff=0, query_attempts=1)
    async with ErmClient(config, transport=GoneAfterMutation(erm_transport)) as client:
        service = make_service(client, acme_vault, clock)
        before = event_count(sandbox, OPEN_ACP1_OEM_ID)
        with pytest.raises(CodeOutcomePendingError) as caught:
            await service.generate_code(ACME.name, DAYS, OPEN_ACP1_OEM_ID, days=7)
        settled = await service.settle(caught.value.pending)
    assert settled.verdict is Verdict.UNREADABLE
    assert new_events(sandbox, OPEN_ACP1_OEM_ID, before) == 1
    assert erm_transport.calls["GenerateDaysCode"] == 1


# -- lookups -----------------------------------------------------------------------------------


async def test_code_history_newest_first_and_bounded(service: ErmService) -> None:
    for days in (1, 2, 3):
        await service.generate_code(ACME.name, DAYS, OPEN_ACP1_OEM_ID, days=days)
    item, events = await service.code_history(ACME.name, OPEN_ACP1_OEM_ID, 2)
    assert item.oem_item_id == OPEN_ACP1_OEM_ID
    assert [e.code_days for e in events] == [3, 2]
    for count in (0, 51, -1):
        with pytest.raises(InvalidInputError):
            await service.code_history(ACME.name, OPEN_ACP1_OEM_ID, count)


async def test_fleet_by_name_prefix_or_unknown(service: ErmService) -> None:
    fleet = await service.fleet(ACME.name, FLEET_STRICT.upper())
    assert fleet.name == FLEET_STRICT
    assert fleet.items
    assert fleet.policy.free_codes == 1
    with pytest.raises(InvalidInputError, match="several fleets match"):
        await service.fleet(ACME.name, "acme")
    with pytest.raises(InvalidInputError, match="no fleet is named"):
        await service.fleet(ACME.name, "Mars")


async def test_asset_account_by_item_or_account_id(
    service: ErmService, sandbox: SandboxState
) -> None:
    seeded = sandbox.items_of(ACME.name, with_account=True)[0]
    by_item = await service.asset_account(ACME.name, seeded.oem_item_id)
    assert by_item.item.id == seeded.id
    by_id = await service.asset_account(ACME.name, by_item.id)
    assert by_id.id == by_item.id
    no_account = sandbox.items_of(ACME.name, with_account=False)[0]
    with pytest.raises(InvalidInputError, match="no asset account"):
        await service.asset_account(ACME.name, no_account.oem_item_id)


async def test_item_and_account_pages(service: ErmService) -> None:
    items = await service.client_items(ACME.name, page_size=10)
    assert len(items.nodes) == 10
    assert items.has_next
    more = await service.client_items(ACME.name, page_size=10, after=items.end_cursor)
    assert more.nodes[0] not in items.nodes
    accounts = await service.asset_accounts(ACME.name, page_size=5)
    assert len(accounts.nodes) == 5


async def test_a_cursor_that_never_advances_stops_the_walk_after_one_repeat(
    service: ErmService, sandbox: SandboxState, erm_transport: CountingTransport
) -> None:
    sandbox.faults.stuck_cursor = True
    fleets = await service.item_fleets(ACME.name)
    history = await service.code_history(ACME.name, OPEN_ACP1_OEM_ID, 50)
    assert fleets  # what was read is kept
    assert erm_transport.calls["GetItemFleetsForClient"] == 2  # the second page repeated it
    assert len(history[1]) <= 50
    assert erm_transport.calls["GetAllCodeEventsForSpecificItemByDistributor"] <= 2


async def test_a_page_longer_than_asked_is_cut_and_continues_after_its_last_node(
    service: ErmService, sandbox: SandboxState
) -> None:
    sandbox.faults.ignore_first = True
    page = await service.client_items(ACME.name, page_size=10)
    assert len(page.nodes) == 10
    assert page.has_next
    sandbox.faults.ignore_first = False
    more = await service.client_items(ACME.name, page_size=10, after=page.end_cursor)
    assert more.nodes[0] not in page.nodes
