"""The bot's storage: grants, request claims, item locks, issued codes, rate limits, migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.audit  # noqa: F401  (registers the audit table on BotBase.metadata)
import erm.vault  # noqa: F401  (registers the vault table on Base.metadata)
from bot.errors import BusyError, UsageError
from bot.people import LinkRow  # noqa: F401  (registers the link tables on BotBase.metadata)
from bot.roles import Role
from bot.storage.base import BOT_MIGRATIONS, BotBase, is_current, migrate
from bot.storage.code_records import IssuedCodeRecord
from bot.storage.codes import CodeStore
from bot.storage.grants import GrantStore
from bot.storage.held import HeldMessageRow  # noqa: F401  (registers bot_held_messages)
from bot.storage.limits import RateLimiter
from bot.storage.locks import LockBusyError
from bot.storage.requests import ClaimStatus, RequestStore
from erm.db import Base
from erm.errors import UnknownDistributorError
from erm.secret_box import SecretBox
from erm.vault import TokenVault

if TYPE_CHECKING:
    from support import TestDatabase

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def bot_engine(engine: AsyncEngine) -> AsyncEngine:
    """The test database with the bot's tables too."""
    await migrate(engine)
    return engine


@pytest.fixture
async def second_engine(
    database: TestDatabase, bot_engine: AsyncEngine
) -> AsyncIterator[AsyncEngine]:
    """Another engine on the same database, as a second bot process would have."""
    engine = database.create_engine()
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def distributors(bot_engine: AsyncEngine, vault: TokenVault) -> list[str]:
    for name in ("acme", "beta"):
        await vault.add_distributor(name, f"ops@{name}.example.org", "pw")
    return ["acme", "beta"]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def grants(bot_engine: AsyncEngine, distributors: list[str], clock: Clock) -> GrantStore:
    return GrantStore(bot_engine, clock=clock)


@pytest.fixture
def requests(bot_engine: AsyncEngine, secret_box: SecretBox) -> RequestStore:
    return RequestStore(bot_engine, box=secret_box)


@pytest.fixture
def codes(bot_engine: AsyncEngine, clock: Clock, secret_box: SecretBox) -> CodeStore:
    return CodeStore(bot_engine, box=secret_box, clock=clock, poll_interval=0.01)


@pytest.fixture
def limiter(bot_engine: AsyncEngine) -> RateLimiter:
    return RateLimiter(bot_engine)


# -- migrations ---------------------------------------------------------------------------------


async def test_migrations_match_the_models(bot_engine: AsyncEngine) -> None:
    def differences(sync: Connection) -> list[object]:
        context = MigrationContext.configure(sync, opts={"compare_type": True})
        metadata: list[MetaData] = [Base.metadata, BotBase.metadata]
        return list(compare_metadata(context, metadata))  # type: ignore[arg-type]

    async with bot_engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_is_current_only_after_migrate(engine: AsyncEngine) -> None:
    assert await is_current(engine) is False  # erm's tables only

    await migrate(engine)

    assert await is_current(engine) is True


async def test_migrate_from_two_processes_at_once_and_again(database: TestDatabase) -> None:
    first, second = database.create_engine(), database.create_engine()
    try:
        await asyncio.gather(migrate(first), migrate(second))
        await migrate(first)

        assert await is_current(second) is True
        async with first.connect() as connection:
            result = await connection.execute(text("SELECT version_num FROM alembic_version"))
            # Two branch heads: bot's depends on erm0001, and erm0002 came after it.
            assert sorted(result.scalars()) == ["bot0010", "erm0002"]
    finally:
        await first.dispose()
        await second.dispose()


def test_bot_migrations_is_the_versions_directory() -> None:
    assert (BOT_MIGRATIONS / "bot0001_core.py").is_file()


# -- grants -------------------------------------------------------------------------------------


async def test_grant_gives_a_role_at_one_distributor(grants: GrantStore) -> None:
    await grants.grant("slack", "U1", Role.AGENT, "acme", "slack:UADMIN")

    assert await grants.grants_of("slack", "U1") == {"acme": Role.AGENT}
    assert await grants.grants_of("telegram", "U1") == {}


async def test_grant_again_replaces_the_role(grants: GrantStore, clock: Clock) -> None:
    await grants.grant("slack", "U1", Role.AGENT, "acme", "slack:UADMIN")
    clock.advance(60)
    await grants.grant("slack", "U1", Role.SUPERVISOR, "ACME ", "telegram:42")

    [grant] = await grants.users()
    assert (grant.distributor, grant.role, grant.granted_by) == (
        "acme",
        Role.SUPERVISOR,
        "telegram:42",
    )
    assert grant.granted_at == T0 + timedelta(seconds=60)


async def test_grant_keeps_one_role_per_distributor(grants: GrantStore) -> None:
    await grants.grant("slack", "U1", Role.AGENT, "acme", "x")
    await grants.grant("slack", "U1", Role.ADMIN, "beta", "x")

    assert await grants.grants_of("slack", "U1") == {"acme": Role.AGENT, "beta": Role.ADMIN}


async def test_grant_at_an_unknown_distributor_is_refused(grants: GrantStore) -> None:
    with pytest.raises(UnknownDistributorError, match="'nope'"):
        await grants.grant("slack", "U1", Role.AGENT, "nope", "x")
    assert await grants.users() == []


@pytest.mark.parametrize(
    ("platform", "user_id"), [("Disc ord", "U1"), ("", "U1"), ("slack", " "), ("slack", "U" * 65)]
)
async def test_grant_to_a_malformed_identity_is_a_usage_error(
    grants: GrantStore, platform: str, user_id: str
) -> None:
    with pytest.raises(UsageError):
        await grants.grant(platform, user_id, Role.AGENT, "acme", "x")


async def test_revoke_one_distributor_or_all(grants: GrantStore) -> None:
    for distributor in ("acme", "beta"):
        await grants.grant("slack", "U1", Role.AGENT, distributor, "x")
        await grants.grant("slack", "U2", Role.AGENT, distributor, "x")

    assert await grants.revoke("slack", "U1", "beta") == 1
    assert await grants.grants_of("slack", "U1") == {"acme": Role.AGENT}
    assert await grants.revoke("slack", "U2") == 2
    assert await grants.grants_of("slack", "U2") == {}
    assert await grants.revoke("slack", "U2") == 0


async def test_holders_are_users_with_at_least_the_role_highest_first(grants: GrantStore) -> None:
    await grants.grant("slack", "U1", Role.AGENT, "acme", "x")
    await grants.grant("telegram", "7", Role.SUPERVISOR, "acme", "x")
    await grants.grant("slack", "U3", Role.ADMIN, "acme", "x")
    await grants.grant("slack", "U4", Role.ADMIN, "beta", "x")

    holders = await grants.holders("acme", Role.SUPERVISOR)

    assert [(g.platform, g.user_id, g.role) for g in holders] == [
        ("slack", "U3", Role.ADMIN),
        ("telegram", "7", Role.SUPERVISOR),
    ]


async def test_users_lists_every_grant_in_order(grants: GrantStore) -> None:
    await grants.grant("telegram", "7", Role.VIEWER, "acme", "x")
    await grants.grant("slack", "U2", Role.AGENT, "beta", "x")
    await grants.grant("slack", "U2", Role.AGENT, "acme", "x")

    assert [(g.platform, g.user_id, g.distributor) for g in await grants.users()] == [
        ("slack", "U2", "acme"),
        ("slack", "U2", "beta"),
        ("telegram", "7", "acme"),
    ]


async def test_default_distributor_is_set_read_and_cleared(grants: GrantStore) -> None:
    assert await grants.default_distributor("slack", "U1") is None

    await grants.set_default_distributor("slack", "U1", "beta")
    assert await grants.default_distributor("slack", "U1") == "beta"

    await grants.set_default_distributor("slack", "U1", None)
    assert await grants.default_distributor("slack", "U1") is None


async def test_default_distributor_must_be_configured(grants: GrantStore) -> None:
    with pytest.raises(UnknownDistributorError):
        await grants.set_default_distributor("slack", "U1", "nope")


async def test_display_name_is_remembered_beside_the_default(grants: GrantStore) -> None:
    await grants.set_default_distributor("slack", "U1", "acme")
    await grants.set_display_name("slack", "U1", "  Ada   Lovelace ")

    assert await grants.display_name("slack", "U1") == "Ada Lovelace"
    assert await grants.default_distributor("slack", "U1") == "acme"
    assert await grants.display_name("slack", "U2") is None


async def test_removing_a_distributor_removes_its_grants_and_defaults(
    grants: GrantStore, vault: TokenVault
) -> None:
    await grants.grant("slack", "U1", Role.AGENT, "acme", "x")
    await grants.grant("slack", "U1", Role.AGENT, "beta", "x")
    await grants.set_default_distributor("slack", "U1", "acme")

    await vault.remove_distributor("acme")

    assert await grants.grants_of("slack", "U1") == {"beta": Role.AGENT}
    assert await grants.default_distributor("slack", "U1") is None


# -- request claims -----------------------------------------------------------------------------


async def test_first_claim_is_new(requests: RequestStore) -> None:
    claim = await requests.claim("slack:trigger:1", "fp", now=T0)

    assert claim.status is ClaimStatus.NEW
    assert claim.claimed_at == T0


async def test_claim_after_finish_is_done_with_the_reply(requests: RequestStore) -> None:
    reply = {"title": "Code", "codes": [{"keypad": "*123#"}], "ok": True}
    await requests.claim("k", "fp", now=T0)
    assert await requests.finish("k", reply, now=T0) is True

    claim = await requests.claim("k", "fp", now=T0 + timedelta(seconds=5))

    assert claim.status is ClaimStatus.DONE
    assert claim.reply == reply


async def test_claim_while_running_is_running_and_stale_only_after_a_while(
    requests: RequestStore,
) -> None:
    await requests.claim("k", "fp", now=T0)

    soon = await requests.claim("k", "fp", now=T0 + timedelta(minutes=1))
    late = await requests.claim("k", "fp", now=T0 + timedelta(minutes=6))

    assert (soon.status, soon.stale) == (ClaimStatus.RUNNING, False)
    assert (late.status, late.stale) == (ClaimStatus.RUNNING, True)
    assert late.claimed_at == T0


async def test_claim_with_another_fingerprint_is_a_mismatch(requests: RequestStore) -> None:
    await requests.claim("k", "fp-1", now=T0)
    await requests.finish("k", {"title": "x"}, now=T0)

    claim = await requests.claim("k", "fp-2", now=T0)

    assert claim.status is ClaimStatus.MISMATCH
    assert claim.reply is None


async def test_abandoned_claim_can_be_claimed_again(requests: RequestStore) -> None:
    await requests.claim("k", "fp", now=T0)

    assert await requests.abandon("k") is True
    assert (await requests.claim("k", "fp", now=T0)).status is ClaimStatus.NEW


async def test_abandon_keeps_a_done_claim(requests: RequestStore) -> None:
    await requests.claim("k", "fp", now=T0)
    await requests.finish("k", {"title": "x"}, now=T0)

    assert await requests.abandon("k") is False
    assert (await requests.claim("k", "fp", now=T0)).status is ClaimStatus.DONE


async def test_finish_without_a_running_claim_reports_false(requests: RequestStore) -> None:
    assert await requests.finish("never-claimed", {"title": "x"}, now=T0) is False


async def test_purge_forgets_claims_older_than_the_cutoff(requests: RequestStore) -> None:
    await requests.claim("old", "fp", now=T0)
    await requests.claim("new", "fp", now=T0 + timedelta(hours=25))

    assert await requests.purge(T0 + timedelta(hours=1)) == 1
    assert (await requests.claim("old", "fp", now=T0)).status is ClaimStatus.NEW
    assert (await requests.claim("new", "fp", now=T0)).status is ClaimStatus.RUNNING


async def test_ten_concurrent_claims_of_one_key_give_exactly_one_new(
    bot_engine: AsyncEngine, second_engine: AsyncEngine, secret_box: SecretBox
) -> None:
    stores = [RequestStore(bot_engine, box=secret_box), RequestStore(second_engine, box=secret_box)]

    claims = await asyncio.gather(
        *(stores[i % 2].claim("telegram:update:99", "fp", now=T0) for i in range(10))
    )

    statuses = sorted(claim.status for claim in claims)
    assert statuses == [ClaimStatus.NEW] + [ClaimStatus.RUNNING] * 9


# -- item locks ---------------------------------------------------------------------------------


async def test_two_holders_of_one_item_take_turns(
    bot_engine: AsyncEngine, second_engine: AsyncEngine, secret_box: SecretBox
) -> None:
    first, second = (
        CodeStore(bot_engine, box=secret_box, poll_interval=0.01),
        CodeStore(second_engine, box=secret_box, poll_interval=0.01),
    )
    events: list[str] = []
    first_inside = asyncio.Event()

    async def hold_first() -> None:
        async with first.item_lock("acme", "item-1", "request-a"):
            events.append("a in")
            first_inside.set()
            await asyncio.sleep(0.2)
            events.append("a out")

    async def hold_second() -> None:
        await first_inside.wait()
        async with second.item_lock("acme", "item-1", "request-b", wait=5):
            events.append("b in")
        events.append("b out")

    await asyncio.gather(hold_first(), hold_second())

    assert events == ["a in", "a out", "b in", "b out"]


async def test_locks_of_different_items_do_not_wait(codes: CodeStore) -> None:
    async with (
        codes.item_lock("acme", "item-1", "a"),
        codes.item_lock("acme", "item-2", "b", wait=0),
    ):
        pass


async def test_busy_lock_raises_after_the_wait(codes: CodeStore) -> None:
    loop = asyncio.get_running_loop()
    async with codes.item_lock("acme", "item-1", "request-a"):
        started = loop.time()
        with pytest.raises(LockBusyError) as caught:
            async with codes.item_lock("acme", "item-1", "request-b", wait=0.15):
                pytest.fail("entered a held lock")
        waited = loop.time() - started

    assert waited >= 0.15
    assert isinstance(caught.value, BusyError)  # shown to the user as is
    assert "still in progress" in str(caught.value)
    assert (caught.value.holder, caught.value.since) == ("request-a", T0)


async def test_expired_lock_is_taken_over(codes: CodeStore, clock: Clock) -> None:
    crashed = codes.item_lock("acme", "item-1", "crashed", ttl=60)
    await crashed.__aenter__()  # its process "dies": never released
    clock.advance(61)

    async with codes.item_lock("acme", "item-1", "next", wait=0) as lock:
        assert lock.holder == "next"
        # The old holder waking up and releasing must not free the new holder's lock.
        await crashed.__aexit__(None, None, None)
        with pytest.raises(LockBusyError):
            async with codes.item_lock("acme", "item-1", "third", wait=0):
                pytest.fail("entered a held lock")


async def test_lock_is_released_when_the_body_fails(codes: CodeStore) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with codes.item_lock("acme", "item-1", "a"):
            raise RuntimeError("boom")

    async with codes.item_lock("acme", "item-1", "b", wait=0):
        pass


# -- issued codes -------------------------------------------------------------------------------


def issued(**changes: object) -> IssuedCodeRecord:
    record = IssuedCodeRecord(
        distributor="acme",
        item_id="65f0c0ffee0000000000000a",
        item_label="TEST2503000017",
        client_name="Wanjiru",
        code_type="DAYSCODE",
        days=30,
        code_dec="024413975593119504641",
        code_hex="0a1b2c3d",
        issued_by_platform="slack",
        issued_by_user="U1",
        issued_by_name="Ada",
        request_key="slack:trigger:1",
        note="cash 500",
        reconciled=False,
        issued_at=T0,
        approval_id=None,
    )
    return replace(record, **changes)  # type: ignore[arg-type]


async def test_record_issue_then_last_issue_reads_it_back(codes: CodeStore) -> None:
    record = issued()

    row_id = await codes.record_issue(record)

    assert await codes.last_issue("acme", record.item_id) == replace(record, id=row_id)
    assert await codes.last_issue("acme", "other-item") is None


async def test_last_issue_is_the_newest_of_any_type(codes: CodeStore) -> None:
    await codes.record_issue(issued())
    newest = await codes.record_issue(
        issued(code_type="FREECODE", days=None, issued_at=T0 + timedelta(minutes=1))
    )
    await codes.record_issue(issued(distributor="beta", issued_at=T0 + timedelta(minutes=2)))

    last = await codes.last_issue("acme", issued().item_id)

    assert last is not None
    assert (last.id, last.code_type, last.days) == (newest, "FREECODE", None)


async def test_recent_issue_matches_type_days_and_time(codes: CodeStore) -> None:
    item = issued().item_id
    thirty = await codes.record_issue(issued(issued_at=T0))
    await codes.record_issue(issued(days=7, issued_at=T0 + timedelta(minutes=1)))
    free = await codes.record_issue(issued(code_type="FREECODE", days=None, issued_at=T0))

    found = await codes.recent_issue("acme", item, "DAYSCODE", 30, since=T0 - timedelta(minutes=10))
    free_found = await codes.recent_issue("acme", item, "FREECODE", None, since=T0)
    too_old = await codes.recent_issue(
        "acme", item, "DAYSCODE", 30, since=T0 + timedelta(seconds=1)
    )
    other_days = await codes.recent_issue("acme", item, "DAYSCODE", 14, since=T0)

    assert found is not None
    assert found.id == thirty
    assert free_found is not None
    assert free_found.id == free
    assert (too_old, other_days) == (None, None)


async def test_count_issued_by_counts_the_user_since_a_time(codes: CodeStore) -> None:
    for minutes in (0, 10, 20):
        await codes.record_issue(issued(issued_at=T0 + timedelta(minutes=minutes)))
    await codes.record_issue(issued(issued_by_user="U2"))

    assert await codes.count_issued_by("slack", "U1", T0 + timedelta(minutes=5)) == 2
    assert await codes.count_issued_by("slack", "U1", T0) == 3
    assert await codes.count_issued_by("telegram", "U1", T0) == 0


async def test_issued_code_record_keeps_the_code_out_of_its_repr() -> None:
    text_form = repr(issued())
    assert "024413975593119504641" not in text_form
    assert "0a1b2c3d" not in text_form


async def test_record_issue_refuses_a_naive_time(codes: CodeStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await codes.record_issue(issued(issued_at=datetime(2025, 6, 1)))


# -- rate limits --------------------------------------------------------------------------------


async def test_hits_are_counted_up_to_the_limit_then_refused(limiter: RateLimiter) -> None:
    now = T0 + timedelta(seconds=10)

    decisions = [await limiter.hit("codes:user", "slack:U1", 3, 60, now=now) for _ in range(5)]

    assert [(d.allowed, d.count) for d in decisions] == [
        (True, 1),
        (True, 2),
        (True, 3),
        (False, 3),
        (False, 3),
    ]
    assert decisions[0].retry_after == 0
    assert decisions[3].retry_after == pytest.approx(50.0)


async def test_next_window_starts_from_zero(limiter: RateLimiter) -> None:
    for _ in range(2):
        await limiter.hit("s", "k", 2, 60, now=T0 + timedelta(seconds=59))

    blocked = await limiter.hit("s", "k", 2, 60, now=T0 + timedelta(seconds=59.5))
    fresh = await limiter.hit("s", "k", 2, 60, now=T0 + timedelta(seconds=60))

    assert not blocked.allowed
    assert blocked.retry_after == pytest.approx(0.5)
    assert (fresh.allowed, fresh.count) == (True, 1)


async def test_keys_and_scopes_are_counted_apart(limiter: RateLimiter) -> None:
    await limiter.hit("s", "k", 1, 60, now=T0)

    assert (await limiter.hit("s", "other", 1, 60, now=T0)).allowed
    assert (await limiter.hit("t", "k", 1, 60, now=T0)).allowed
    assert not (await limiter.hit("s", "k", 1, 60, now=T0)).allowed


async def test_concurrent_hits_never_exceed_the_limit(
    bot_engine: AsyncEngine, second_engine: AsyncEngine
) -> None:
    limiters = [RateLimiter(bot_engine), RateLimiter(second_engine)]

    decisions = await asyncio.gather(
        *(limiters[i % 2].hit("codes:dist", "acme", 5, 3600, now=T0) for i in range(20))
    )

    assert sum(d.allowed for d in decisions) == 5
    assert sorted(d.count for d in decisions if d.allowed) == [1, 2, 3, 4, 5]


async def test_purge_forgets_old_windows(limiter: RateLimiter) -> None:
    await limiter.hit("s", "k", 1, 60, now=T0)
    await limiter.hit("s", "k", 1, 60, now=T0 + timedelta(minutes=5))

    assert await limiter.purge(T0 + timedelta(minutes=1)) == 1
    assert not (await limiter.hit("s", "k", 1, 60, now=T0 + timedelta(minutes=5))).allowed


async def test_a_limit_below_one_is_refused(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError, match="limit"):
        await limiter.hit("s", "k", 0, 60, now=T0)
