"""Revision bot0008: platform names are the application's to check, not the database's.

On SQLite and PostgreSQL: after the upgrade a grant, a user row, a link and an approval chat of a
platform the old CHECK constraints did not list are stored; the downgrade puts the constraints
back (refusing such rows again) and keeps the rows it allows; the upgrade after it keeps them too.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.messages import Identity
from bot.people import PeopleStore
from bot.roles import Role
from bot.storage.approvals import ApprovalStore
from bot.storage.base import migrate
from bot.storage.grants import GrantStore
from erm import db
from erm.errors import UnknownDistributorError
from erm.vault import TokenVault
from tests.bot.test_people_store import NOW, _move

TABLES = ("bot_grants", "bot_users", "bot_links", "bot_approval_channels")


@pytest.fixture
async def grants(engine: AsyncEngine, vault: TokenVault) -> GrantStore:
    await migrate(engine)
    await vault.add_distributor("acme", "ops@acme.example.org", "pw")
    return GrantStore(engine)


def _checks(connection: Connection) -> dict[str, list[str]]:
    """The platform CHECK constraints of each table (other checks, on roles, stay)."""
    found = inspect(connection)
    checks = {t: found.get_check_constraints(t) for t in TABLES}
    return {
        t: [str(c["name"]) for c in cs if "platform" in str(c["sqltext"])]
        for t, cs in checks.items()
    }


async def _count(engine: AsyncEngine, table: str) -> int:
    query = text(f"SELECT count(*) FROM {table}")  # noqa: S608 (table: one of this module's names)
    return int(await db.transaction(engine, lambda c: c.scalar(query)))


async def test_a_new_platform_needs_no_migration(grants: GrantStore, engine: AsyncEngine) -> None:
    newcomer = Identity("pager", "7")
    await grants.grant("pager", "7", Role.AGENT, "acme", "tests")
    await grants.set_default_distributor("pager", "7", "acme")
    people = PeopleStore(engine)
    code = await people.start_link(newcomer, now=NOW)
    await people.redeem(Identity("slack", "U1"), code, now=NOW)
    approvals = ApprovalStore(engine)
    await approvals.set_channel("acme", "pager", "room-1", by="tests", now=NOW)

    assert await grants.grants_of("pager", "7") == {"acme": Role.AGENT}
    assert [c.platform for c in await approvals.channels("acme")] == ["pager"]
    async with engine.connect() as connection:
        assert not any((await connection.run_sync(_checks)).values())


async def test_the_downgrade_puts_the_checks_back_and_keeps_the_rows(
    grants: GrantStore, engine: AsyncEngine
) -> None:
    await grants.grant("telegram", "42", Role.AGENT, "acme", "tests")
    await ApprovalStore(engine).set_channel("acme", "slack", "C1", by="tests", now=NOW)
    async with engine.connect() as connection:
        await connection.run_sync(_move, "bot0007", down=True)
        checks = await connection.run_sync(_checks)
    assert all(len(names) == 1 for names in checks.values()), checks
    assert await _count(engine, "bot_grants") == 1
    assert await _count(engine, "bot_approval_channels") == 1
    # The constraint refuses the row; the store reads any integrity error of a grant as a
    # distributor that is not configured (acme is: telegram:42's grant above was stored).
    with pytest.raises(UnknownDistributorError):
        await GrantStore(engine).grant("pager", "7", Role.AGENT, "acme", "tests")

    async with engine.connect() as connection:
        await connection.run_sync(_move, "bot0008")
        assert not any((await connection.run_sync(_checks)).values())
    assert await _count(engine, "bot_grants") == 1
    await grants.grant("pager", "7", Role.AGENT, "acme", "tests")
