"""The links between identities (bot.people), on SQLite and PostgreSQL: codes kept as hashes,
used once, within 10 minutes, never by their maker; roles of a person; unlinking that keeps the
past for the rules that look back; and revision bot0007 up and down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.messages import Identity
from bot.people import OWN_CODE, UNKNOWN_CODE, LinkError, PeopleStore
from bot.roles import Role
from bot.storage.base import BOT_MIGRATIONS, migrate
from bot.storage.grants import GrantStore
from erm import db
from erm.vault import TokenVault

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
SLACK = Identity("slack", "U1")
TELEGRAM = Identity("telegram", "42")
CONSOLE = Identity("console", "ops")
OTHER = Identity("slack", "U9")


@pytest.fixture
async def people(engine: AsyncEngine, vault: TokenVault) -> PeopleStore:
    await migrate(engine)
    for name in ("acme", "beta"):
        await vault.add_distributor(name, f"ops@{name}.example.org", "pw")
    return PeopleStore(engine)


@pytest.fixture
def grants(engine: AsyncEngine, people: PeopleStore) -> GrantStore:
    return GrantStore(engine)


async def link(people: PeopleStore, maker: Identity, joiner: Identity) -> None:
    code = await people.start_link(maker, now=NOW)
    await people.redeem(joiner, code, now=NOW + timedelta(minutes=1))


async def rows(engine: AsyncEngine, sql: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await db.transaction(engine, lambda c: c.execute(text(sql)).all())]


# -- codes --------------------------------------------------------------------------------------


async def test_a_code_links_its_user_to_the_makers_person(people: PeopleStore) -> None:
    code = await people.start_link(SLACK, now=NOW)

    linked = await people.redeem(TELEGRAM, code, now=NOW + timedelta(minutes=9))

    assert (linked.person, linked.maker, linked.identity) == ("slack:U1", "slack:U1", "telegram:42")
    assert linked.identities == ("slack:U1", "telegram:42")
    assert await people.person_of(TELEGRAM) == "slack:U1"
    assert await people.identities("slack:U1") == ["slack:U1", "telegram:42"]


async def test_only_a_hash_of_the_code_is_stored(people: PeopleStore, engine: AsyncEngine) -> None:
    code = await people.start_link(SLACK, now=NOW)

    stored = await rows(engine, "SELECT * FROM bot_link_codes")

    assert len(stored) == 1
    assert not [value for value in stored[0] if code in str(value)]


async def test_a_code_works_once(people: PeopleStore) -> None:
    code = await people.start_link(SLACK, now=NOW)
    await people.redeem(TELEGRAM, code, now=NOW)

    with pytest.raises(LinkError) as refused:
        await people.redeem(CONSOLE, code, now=NOW)

    assert str(refused.value) == UNKNOWN_CODE
    assert await people.person_of(CONSOLE) == "console:ops"


async def test_a_code_expires_after_10_minutes(people: PeopleStore) -> None:
    code = await people.start_link(SLACK, now=NOW)

    with pytest.raises(LinkError) as refused:
        await people.redeem(TELEGRAM, code, now=NOW + timedelta(minutes=10))

    assert str(refused.value) == UNKNOWN_CODE
    assert await people.identities("slack:U1") == ["slack:U1"]


async def test_its_maker_cannot_use_a_code_which_then_still_works(people: PeopleStore) -> None:
    code = await people.start_link(SLACK, now=NOW)

    with pytest.raises(LinkError) as refused:
        await people.redeem(SLACK, code, now=NOW)
    linked = await people.redeem(TELEGRAM, code, now=NOW)

    assert str(refused.value) == OWN_CODE
    assert linked.identities == ("slack:U1", "telegram:42")


async def test_a_new_code_cancels_the_makers_earlier_one(people: PeopleStore) -> None:
    first = await people.start_link(SLACK, now=NOW)
    second = await people.start_link(SLACK, now=NOW)

    with pytest.raises(LinkError):
        await people.redeem(TELEGRAM, first, now=NOW)
    await people.redeem(TELEGRAM, second, now=NOW)


async def test_an_identity_linked_elsewhere_must_be_unlinked_first(people: PeopleStore) -> None:
    await link(people, SLACK, TELEGRAM)
    code = await people.start_link(OTHER, now=NOW)

    with pytest.raises(LinkError) as refused:
        await people.redeem(TELEGRAM, code, now=NOW)

    assert str(refused.value).splitlines() == [
        "telegram:42 is linked to other identities already.",
        "Unlink it first: /unlink telegram:42, then send /link CODE again.",
    ]
    assert await people.person_of(TELEGRAM) == "slack:U1"


async def test_a_third_identity_joins_the_same_person_from_any_of_its_identities(
    people: PeopleStore,
) -> None:
    await link(people, SLACK, TELEGRAM)

    await link(people, TELEGRAM, CONSOLE)

    assert await people.identities("slack:U1") == ["slack:U1", "telegram:42", "console:ops"]


# -- roles --------------------------------------------------------------------------------------


async def test_a_person_has_the_highest_role_of_its_identities_per_distributor(
    people: PeopleStore, grants: GrantStore
) -> None:
    await grants.grant("slack", "U1", Role.AGENT, "acme", "tests")
    await grants.grant("telegram", "42", Role.SUPERVISOR, "acme", "tests")
    await grants.grant("telegram", "42", Role.VIEWER, "beta", "tests")
    assert await people.roles_of(SLACK) == {"acme": Role.AGENT}

    await link(people, TELEGRAM, SLACK)  # from the identity with the higher roles

    both = {"acme": Role.SUPERVISOR, "beta": Role.VIEWER}
    assert await people.roles_of(SLACK) == both
    assert await people.roles_of(TELEGRAM) == both
    known = await people.known(SLACK)
    assert known.person == "telegram:42"
    assert known.user is not None
    assert known.user.default_read


async def test_a_code_never_takes_the_roles_of_whoever_types_it(
    people: PeopleStore, grants: GrantStore
) -> None:
    await grants.grant("telegram", "42", Role.AGENT, "beta", "tests")
    code = await people.start_link(SLACK, now=NOW)

    with pytest.raises(LinkError, match="holds roles that slack:U1 does not"):
        await people.redeem(TELEGRAM, code, now=NOW)

    assert await people.roles_of(SLACK) == {}
    assert await people.person_of(TELEGRAM) == "telegram:42"


async def test_an_unlinked_identity_keeps_only_its_own_roles(
    people: PeopleStore, grants: GrantStore
) -> None:
    await grants.grant("slack", "U1", Role.ADMIN, "acme", "tests")
    await link(people, SLACK, TELEGRAM)

    await people.unlink(TELEGRAM, by="slack:U1", now=NOW + timedelta(hours=1))

    assert await people.roles_of(TELEGRAM) == {}
    assert await people.person_of(TELEGRAM) == "telegram:42"
    assert await people.person_of(SLACK) == "slack:U1"  # alone again: no link left


# -- unlinking ----------------------------------------------------------------------------------


async def test_unlinking_the_identity_a_person_is_keyed_by_moves_the_others_to_a_new_key(
    people: PeopleStore,
) -> None:
    await link(people, SLACK, TELEGRAM)
    await link(people, SLACK, CONSOLE)

    parted = await people.unlink(SLACK, by="slack:U1", now=NOW + timedelta(hours=1))

    assert parted is not None
    assert parted.others == ("telegram:42", "console:ops")
    assert await people.person_of(SLACK) == "slack:U1"
    assert await people.person_of(CONSOLE) == "telegram:42"
    assert await people.identities("telegram:42") == ["telegram:42", "console:ops"]
    assert await people.identities("slack:U1") == ["slack:U1"]


async def test_unlinking_an_identity_linked_to_nobody_changes_nothing(people: PeopleStore) -> None:
    assert await people.unlink(SLACK, by="slack:U1", now=NOW) is None


async def test_identities_unlinked_after_a_moment_are_still_one_person_since_then(
    people: PeopleStore,
) -> None:
    await link(people, SLACK, TELEGRAM)
    asked = NOW + timedelta(minutes=30)
    await people.unlink(TELEGRAM, by="telegram:42", now=NOW + timedelta(hours=1))

    assert await people.same_person(TELEGRAM, SLACK, since=asked)
    assert not await people.same_person(TELEGRAM, SLACK, since=NOW + timedelta(hours=2))
    assert not await people.same_person(TELEGRAM, OTHER, since=asked)


async def test_a_person_keyed_anew_is_still_one_with_the_identity_that_left(
    people: PeopleStore,
) -> None:
    await link(people, SLACK, TELEGRAM)
    await link(people, SLACK, CONSOLE)
    asked = NOW + timedelta(minutes=30)

    await people.unlink(SLACK, by="slack:U1", now=NOW + timedelta(hours=1))

    assert await people.same_person(SLACK, CONSOLE, since=asked)
    assert await people.same_person(TELEGRAM, CONSOLE, since=NOW + timedelta(hours=2))
    assert not await people.same_person(SLACK, CONSOLE, since=NOW + timedelta(hours=2))


async def test_a_link_after_an_unlink_makes_one_current_link_per_identity(
    people: PeopleStore, engine: AsyncEngine
) -> None:
    await link(people, SLACK, TELEGRAM)
    await people.unlink(TELEGRAM, by="telegram:42", now=NOW + timedelta(hours=1))

    code = await people.start_link(OTHER, now=NOW + timedelta(hours=2))
    await people.redeem(TELEGRAM, code, now=NOW + timedelta(hours=2))

    current = await rows(
        engine,
        "SELECT person FROM bot_links WHERE platform = 'telegram' AND unlinked_at IS NULL",
    )
    assert current == [("slack:U9",)]


# -- revision bot0007 ---------------------------------------------------------------------------


def _move(connection: Connection, revision: str, *, down: bool = False) -> None:
    config = db._alembic_config([BOT_MIGRATIONS])
    config.attributes["connection"] = connection
    if connection.in_transaction():
        connection.commit()
    if connection.dialect.name == "sqlite":
        db._sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
    with connection.begin():
        (command.downgrade if down else command.upgrade)(config, revision)


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_bot0007_adds_the_link_tables_and_its_downgrade_drops_them(
    people: PeopleStore, engine: AsyncEngine
) -> None:
    await link(people, SLACK, TELEGRAM)
    mine = {"bot_links", "bot_link_codes"}
    async with engine.connect() as connection:
        assert mine <= await connection.run_sync(_tables)

        await connection.run_sync(_move, "bot0006", down=True)
        assert not mine & await connection.run_sync(_tables)
        assert "bot_grants" in await connection.run_sync(_tables)

        await connection.run_sync(_move, "bot0007")
        assert mine <= await connection.run_sync(_tables)
    assert await people.person_of(TELEGRAM) == "telegram:42"  # the links went with the table
    await link(people, SLACK, TELEGRAM)
    assert await people.person_of(TELEGRAM) == "slack:U1"
