"""A database written by release 0.1.0 upgrades in place (``erm-bot db upgrade``), losing nothing.

``release_0_1_0.json`` holds every row that release wrote while it issued days and free codes,
decided and left approvals, made an invite and kept its audit trail (``make_release_fixture.py``
made it by running that release). The test lays those rows into a database at the release's
revisions, on SQLite and on PostgreSQL, runs the installed ``erm-bot db upgrade`` and
``erm-bot audit verify`` as an operator would, then serves the upgraded database with today's bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import Connection, DateTime, Integer, MetaData, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import TOKEN_TTL, FakeClock, fresh_postgres_database, make_service

from bot.approvals.service import ApprovalService
from bot.audit import AuditLog
from bot.commands import COMMANDS
from bot.core import Core, Limits
from bot.dispatch import Dispatcher
from bot.messages import Identity, Reply, Request
from bot.permissions import Permissions
from bot.storage.approvals import ApprovalStore
from bot.storage.base import BOT_MIGRATIONS
from bot.storage.buttons import ButtonStore
from bot.storage.codes import CodeStore
from bot.storage.grants import GrantStore
from bot.storage.invites import InviteStore
from bot.storage.limits import RateLimiter
from bot.storage.requests import RequestStore
from erm import db
from erm.client import ErmClient
from erm.sandbox import OPEN_ACP1_OEM_ID, create_app, seed_state
from erm.sandbox.config import SandboxConfig
from erm.secret_box import SecretBox
from erm.transport import ClientConfig
from erm.vault import TokenVault

FIXTURE = json.loads((Path(__file__).parent / "release_0_1_0.json").read_text())
RELEASE_REVISIONS = ("bot0003", "erm0002")
CONSOLE_SCRIPT = Path(sys.executable).with_name("erm-bot")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def release_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a database as release 0.1.0 left it (its revisions, its rows)."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'erm-bot.db'}"
        else:
            url = await stack.enter_async_context(fresh_postgres_database("upgrade"))
        engine = db.create_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(_lay_release)
        finally:
            await engine.dispose()
        yield url


def _lay_release(connection: Connection) -> None:
    config = db._alembic_config([BOT_MIGRATIONS])
    config.attributes["connection"] = connection
    with connection.begin():
        for revision in RELEASE_REVISIONS:
            command.upgrade(config, revision)
    with connection.begin():
        metadata = MetaData()
        metadata.reflect(connection)
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        assert sorted(versions) == sorted(
            r["version_num"] for r in FIXTURE["tables"]["alembic_version"]
        )
        for table in metadata.sorted_tables:
            rows = FIXTURE["tables"].get(table.name)
            if table.name == "alembic_version" or not rows:
                continue
            stamps = [c.name for c in table.columns if isinstance(c.type, DateTime)]
            # The audit chain hashes its own times, so those stay as the release wrote them.
            moved = timedelta(0) if table.name == "bot_audit_log" else _release_age()
            connection.execute(
                table.insert(),
                [{**row, **{c: _when(row[c], moved) for c in stamps if c in row}} for row in rows],
            )
            if connection.dialect.name == "postgresql":
                for column in table.primary_key.columns:
                    if not isinstance(column.type, Integer):
                        continue
                    sequence = func.pg_get_serial_sequence(table.name, column.name)
                    highest = select(func.max(column)).scalar_subquery()
                    connection.execute(select(func.setval(sequence, highest)))


def _release_age() -> timedelta:
    """How long ago the release stopped writing (its last audit row).

    Rows other than the audit trail move forward by this much, as if the release had stopped a
    moment ago: a pending approval it left expires 24 hours after it was made, and the test must
    not start failing a day after the fixture was recorded.
    """
    stopped = datetime.fromisoformat(FIXTURE["tables"]["bot_audit_log"][-1]["at"])
    return datetime.now(UTC).replace(tzinfo=None) - stopped


def _when(value: str | None, moved: timedelta) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value) + moved


async def erm_bot(url: str, *args: str) -> tuple[int, str]:
    """Run the installed ``erm-bot`` as an operator does; its exit status and all it printed."""
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith("ERM_")}
    environment |= {
        "ERM_BOT_DATABASE_URL": url,
        "ERM_BOT_SECRET_KEYS": ",".join(FIXTURE["secret_keys"]),
        "ERM_API_URL": "http://127.0.0.1:9/graphql",  # nothing here may need ERM
    }
    process = await asyncio.create_subprocess_exec(
        str(CONSOLE_SCRIPT),
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def dump(engine: AsyncEngine) -> str:
    """Every row of every table, as text: what a database dump or backup would show."""
    parts: list[str] = []
    async with engine.connect() as connection:
        metadata = MetaData()
        await connection.run_sync(metadata.reflect)
        for table in metadata.sorted_tables:
            for row in (await connection.execute(select(table))).all():
                parts.append(f"{table.name}: {row}")
    return "\n".join(parts)


@contextlib.asynccontextmanager
async def serve(engine: AsyncEngine) -> AsyncIterator[Dispatcher]:
    """Today's bot on the upgraded database, signing in to a fresh sandbox ERM."""
    clock = FakeClock()
    sandbox = seed_state(0, SandboxConfig(clock=clock, token_ttl_seconds=TOKEN_TTL))
    transport = httpx.ASGITransport(app=create_app(sandbox))
    config = ClientConfig(url="http://sandbox.test/graphql", total_timeout=5.0, retry_backoff=0.0)
    async with ErmClient(config, transport=transport) as client:
        box = SecretBox(FIXTURE["secret_keys"])
        vault = TokenVault(engine, box)
        grants = GrantStore(engine)
        core = Core(
            erm=make_service(client, vault, clock),
            grants=grants,
            codes=CodeStore(engine, box=box),
            requests=RequestStore(engine, box=box),
            rate=RateLimiter(engine),
            audit=AuditLog(engine, box=box),
            permissions=Permissions(grants, vault.names, ()),
            commands=COMMANDS,
            buttons=ButtonStore(engine),
            invites=InviteStore(engine),
            limits=Limits(),
            approvals=ApprovalService(ApprovalStore(engine)),
        )
        yield Dispatcher(core)


async def say(dispatcher: Dispatcher, user: str, line: str) -> Reply:
    identity = Identity("console", user)
    return await dispatcher.handle(Request(identity, line, request_key=f"after:{user}:{line}"))


async def test_a_release_database_upgrades_in_place_and_loses_nothing(
    release_database: str,
) -> None:
    facts = FIXTURE["facts"]
    status, out = await erm_bot(release_database, "db", "upgrade")
    assert status == 0, out
    status, out = await erm_bot(release_database, "audit", "verify")
    assert status == 0, out

    engine = db.create_engine(release_database)
    try:
        # No usable code is left anywhere a dump or backup would show it.
        everything = await dump(engine)
        for code in facts["codes"]:
            assert code not in everything
        for row in FIXTURE["tables"]["bot_issued_codes"]:
            assert row["code_hex"] not in everything
        invite = facts["invite_reply"].rsplit("/start ", 1)[1].split()[0]
        assert invite not in everything

        async with serve(engine) as bot:
            # Grants on both platforms are kept.
            users = (await say(bot, "admin", "/users")).text()
            assert "telegram:4242" in users
            # Issued codes are still shown by /resend, whole, to the person who asked.
            resent = await say(bot, "agent", f"/resend {OPEN_ACP1_OEM_ID}")
            assert [c.digits for c in resent.codes] == [facts["codes"][2]], resent.text()
            # Pending and decided approvals are kept; the pending one can still be decided.
            waiting = (await say(bot, "supervisor", "/approvals")).text()
            assert facts["approvals"]["pending"] in waiting, waiting
            own = (await say(bot, "agent", "/approvals")).text().splitlines()
            for state, approval_id in facts["approvals"].items():
                line = next(line for line in own if line.startswith(approval_id))
                assert state in line, own
            # The stored distributor signs in with its stored password and makes a new code.
            fresh = await say(bot, "agent", f"/code days {OPEN_ACP1_OEM_ID} 1 --again")
            assert len(fresh.codes) == 1, fresh.text()
    finally:
        await engine.dispose()
    # The chain still verifies after rows were rewritten and new ones appended.
    status, out = await erm_bot(release_database, "audit", "verify")
    assert status == 0, out
