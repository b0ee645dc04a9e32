"""Write ``release_0_1_0.json``: a database as release 0.1.0 left it, for the upgrade test.

Run against a checkout of that release (its code writes the rows, so they are exactly what
production databases hold), from the repository root of that checkout::

    PYTHONPATH=. python tests/upgrade/make_release_fixture.py OUT.json

It drives the bot over the in-process sandbox on a fresh SQLite file: grants on two platforms, a
default distributor, days and free codes, approvals left pending, approved and denied, an invite,
and the audit rows all of that wrote. Then it dumps every table (rows as JSON, datetimes ISO).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).parents[1]), str(Path(__file__).parents[1] / "bot")]

import httpx  # noqa: E402
from approval_harness import pending_id, with_approvals, with_channel  # noqa: E402
from bot.cards import ButtonStore, InviteStore  # noqa: E402
from bot.store import CodeStore, GrantStore, RateLimiter, RequestStore, migrate  # noqa: E402
from bot_harness import ROLES, Bot, RejectionRecorder  # noqa: E402
from sqlalchemy import MetaData, select  # noqa: E402
from support import TOKEN_TTL, CountingTransport, FakeClock, make_service  # noqa: E402

from bot.audit import AuditLog  # noqa: E402
from bot.commands import COMMANDS  # noqa: E402
from bot.dispatch import Core, Dispatcher, Limits  # noqa: E402
from bot.permissions import Permissions  # noqa: E402
from bot.roles import Role  # noqa: E402
from erm.client import ClientConfig, ErmClient  # noqa: E402
from erm.db import create_engine  # noqa: E402
from erm.sandbox import ACME, OPEN_ACP1_OEM_ID, OPEN_OPENTOKEN_OEM_ID, create_app, seed_state  # noqa: E402
from erm.sandbox.state import SandboxConfig  # noqa: E402
from erm.vault import SecretBox, TokenVault  # noqa: E402

KEY = SecretBox.generate_key()


async def build(path: Path, client: ErmClient, clock: FakeClock, sandbox: Any) -> Bot:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    vault = TokenVault(engine, SecretBox([KEY]))
    service = make_service(client, vault, clock)
    await service.add_distributor(ACME.name, ACME.email, ACME.password)
    grants = GrantStore(engine)
    core = Core(
        erm=service,
        grants=grants,
        codes=CodeStore(engine),
        requests=RequestStore(engine),
        rate=RateLimiter(engine),
        audit=AuditLog(engine),
        permissions=Permissions(grants, vault.names, ()),
        commands=COMMANDS,
        buttons=ButtonStore(engine),
        invites=InviteStore(engine),
        limits=Limits(),
    )
    for role in ROLES:
        await grants.grant("console", role.label, role, ACME.name, "setup")
    await grants.grant("telegram", "4242", Role.AGENT, ACME.name, "console:admin")
    counting = CountingTransport(httpx.ASGITransport(app=create_app(sandbox)))
    return Bot(core, Dispatcher(core), sandbox, counting, RejectionRecorder(counting), engine)


async def scenario(bot: Bot) -> dict[str, Any]:
    await with_channel(bot)
    item = OPEN_ACP1_OEM_ID
    await bot.say("agent", "/use acme")
    days = await bot.say("agent", f"/code days {item} 7 cash 500")
    assert days.codes, days.text()
    free = await bot.say("supervisor", f"/code free {OPEN_OPENTOKEN_OEM_ID} paid off")
    assert free.codes, free.text()
    approved = pending_id(await bot.say("agent", f"/code free {item} second"))
    await bot.say("supervisor", f"/approvals approve {approved}")
    denied = pending_id(await bot.say("agent", f"/code reset {item} broken"))
    await bot.say("supervisor", f"/approvals deny {denied} no reason given")
    pending = pending_id(await bot.say("agent", f"/code free {item} third"))
    invite = await bot.say("admin", "/invite agent")
    resent = await bot.say("agent", f"/resend {item}")
    return {
        "codes": [c.digits for reply in (days, free, resent) for c in reply.codes],
        "approvals": {"approved": approved, "denied": denied, "pending": pending},
        "invite_reply": invite.text(),
    }


def plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        clock = FakeClock()
        sandbox = seed_state(0, SandboxConfig(clock=clock, token_ttl_seconds=TOKEN_TTL))
        transport = httpx.ASGITransport(app=create_app(sandbox))
        config = ClientConfig(url="http://sandbox.test/graphql", total_timeout=5.0)
        async with ErmClient(config, transport=transport) as client:
            bot = await with_approvals_bot(Path(tmp) / "bot.db", client, clock, sandbox)
            facts = await scenario(bot)
            tables: dict[str, list[dict[str, Any]]] = {}
            async with bot.engine.connect() as connection:
                metadata = MetaData()
                await connection.run_sync(metadata.reflect)
                for name in sorted(metadata.tables):
                    table = metadata.tables[name]
                    rows = (await connection.execute(select(table))).mappings().all()
                    tables[name] = [{k: plain(v) for k, v in row.items()} for row in rows]
            await bot.engine.dispose()
    return {"secret_keys": [KEY], "facts": facts, "tables": tables}


async def with_approvals_bot(path: Path, client: ErmClient, clock: FakeClock, sandbox: Any) -> Bot:
    return with_approvals(await build(path, client, clock, sandbox))


if __name__ == "__main__":
    dump = asyncio.run(main())
    Path(sys.argv[1]).write_text(json.dumps(dump, indent=1) + "\n")
