"""Crash recovery with real processes: ``erm-bot run`` killed with SIGKILL, then started again, and
nobody types anything: the new process finds the work the dead one left, settles it against
ERM's history, and tells the requester privately, once.

- a code whose mutation ERM ran while the bot waited for the answer (held by the sandbox);
- the same, restarted while the dead request's item lock still runs (a quick restart);
- a supervisor's approval won, the approved code's mutation held by ERM when the process dies;
- a restart with nothing left in flight: no message, no audit row.

The leases of a dead process run out with time (its item lock 2 minutes after the last renewal,
an approved run's lease 15 minutes after the decision). Instead of waiting that long, a test ends
them in the database (:func:`end_leases`): that is all those minutes would change for these rows.
Runs on SQLite and PostgreSQL (a database of its own: a process is configured by URL alone).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from approvals_rig import SlackSide
from fakes.slack import shown
from fault_rig import free_port, settings_of, start_bot, stop_bot, wait_until
from fault_world import ITEM, World, bot_world
from sqlalchemy import update

from adapters.housekeeping import RECOVERY_RETRY_SECONDS
from adapters.runtime import open_runtime
from bot.audit import AuditLog, AuditRecord
from bot.roles import Role
from bot.storage.approval_tables import ApprovalRow
from bot.storage.approvals import ApprovalStore
from bot.storage.locks import ItemLockRow
from erm.sandbox import ACME

AGENT = "U1"
SUPERVISOR = "U5"
APPROVALS = "C9"  # acme's approval channel
LOCK_LEFT = 6.0  # seconds the dead request's item lock still runs after a quick restart
FOUND = "ERM's history shows this code for your request"


@pytest.fixture
async def world(
    process_database: str, tmp_path: Path, secret_keys: list[str]
) -> AsyncIterator[World]:
    async with bot_world(
        process_database,
        tmp_path,
        secret_keys,
        grants=((AGENT, Role.AGENT), (SUPERVISOR, Role.SUPERVISOR)),
        approval_channel=APPROVALS,
        env={"ERM_BOT_APPROVAL_SWEEP_SECONDS": "1"},
    ) as world:
        yield world


async def end_leases(world: World, *, lock_left: float = 0.0) -> None:
    """The leases the dead process held run out, as the minutes of a longer outage would make
    them: every item lock expires in ``lock_left`` seconds, every approved run's lease now."""
    now = datetime.now(UTC)
    async with open_runtime(settings_of(world.env)) as runtime, runtime.engine.begin() as db:
        await db.execute(update(ItemLockRow).values(expires_at=now + timedelta(seconds=lock_left)))
        await db.execute(
            update(ApprovalRow).where(ApprovalRow.run_until.is_not(None)).values(run_until=now)
        )


async def audit_rows(world: World, limit: int = 50) -> list[AuditRecord]:
    """The audit trail, oldest first."""
    async with open_runtime(settings_of(world.env)) as runtime:
        return (await AuditLog(runtime.engine).recent(limit=limit))[::-1]


def has_code(record: AuditRecord, forms: tuple[str, ...]) -> bool:
    values = " ".join(str(getattr(record, f.name)) for f in fields(record))
    return any(form in values for form in forms)


async def pending_approval(world: World) -> str:
    async with open_runtime(settings_of(world.env)) as runtime:
        [approval] = await ApprovalStore(runtime.engine).pending([ACME.name], now=datetime.now(UTC))
    return approval.id


async def wait_executed(world: World, approval_id: str, within: float = 20.0) -> None:
    """Until the approved request has a result (bounded)."""
    async with open_runtime(settings_of(world.env)) as runtime:
        store = ApprovalStore(runtime.engine)
        try:
            async with asyncio.timeout(within):
                while True:
                    approval = await store.get(approval_id)
                    if approval is not None and approval.executed_at is not None:
                        return
                    await asyncio.sleep(0.2)  # written by another process: nothing to wait on
        except TimeoutError:
            raise AssertionError(f"no result for approval {approval_id} in {within:g} s") from None


async def kill_while_erm_holds_the_answer(world: World, port: int, send: str) -> None:
    """Start ``erm-bot run``; ``send`` a slash command as the agent; SIGKILL once ERM made it."""
    before = world.code_events()
    world.hang_next_mutation()
    bot = await start_bot(world.env, port, world.cwd, log=world.log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
            await SlackSide(world.slack, None, http).command(AGENT, "/code", send, channel="D1")
        await wait_until(lambda: world.code_events() == before + 1, 20.0, "ERM makes the code")
    finally:
        await stop_bot(bot)
    assert bot.returncode == -9


async def test_a_code_erm_made_before_the_kill_is_recorded_and_told_after_restart_unasked(
    world: World,
) -> None:
    before = world.code_events()
    await kill_while_erm_holds_the_answer(world, free_port(), f"days {ITEM} 7")
    code = world.newest_code()
    await end_leases(world)
    calls_before = len(world.slack.calls)

    port = free_port()
    bot = await start_bot(world.env, port, world.cwd, log=world.log)
    try:
        await world.slack.wait_calls(
            lambda c: c.method == "chat.postMessage" and c.channel == AGENT, within=20.0
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
            slack = SlackSide(world.slack, None, http)
            resent = shown(await slack.ask(AGENT, "/resend", ITEM, channel="D1"))
    finally:
        await stop_bot(bot)

    [told] = world.dms(AGENT, after=calls_before)
    assert code in shown(told)
    assert FOUND in shown(told)
    assert code in resent
    assert world.code_events() == before + 1
    recovered = [r for r in await audit_rows(world) if r.detail.startswith("recovered")]
    assert [(r.command, r.outcome, r.user_id) for r in recovered] == [("code days", "ok", AGENT)]
    assert (recovered[0].erm_code_event or "").startswith("fp:")
    assert not any(has_code(r, world.code_forms()) for r in await audit_rows(world))


async def test_a_restart_before_the_dead_requests_lock_expires_recovers_it_once_it_does(
    world: World,
) -> None:
    """The usual restart is quicker than the dead request's lock (2 minutes): the first sweep at
    start finds it held and must come back when it expires, not at the next round 10 minutes
    later."""
    before = world.code_events()
    await kill_while_erm_holds_the_answer(world, free_port(), f"days {ITEM} 7")
    code = world.newest_code()
    expired = time.monotonic() + LOCK_LEFT  # at the latest: end_leases reads its clock after
    await end_leases(world, lock_left=LOCK_LEFT)  # as if the restart took 114 s of its 120
    calls_before = len(world.slack.calls)

    bot = await start_bot(world.env, free_port(), world.cwd, log=world.log)
    try:
        await world.slack.wait_calls(
            lambda c: c.method == "chat.postMessage" and c.channel == AGENT, within=30.0
        )
    finally:
        await stop_bot(bot)

    [told] = world.dms(AGENT, after=calls_before)
    assert code in shown(told)
    # Not before the lock ran out (its holder might have been alive), and soon after.
    assert expired <= told.at < expired + RECOVERY_RETRY_SECONDS + 5.0
    assert world.code_events() == before + 1


async def test_an_approval_won_whose_code_erm_held_when_killed_is_settled_once_after_restart(
    world: World,
) -> None:
    port = free_port()
    bot = await start_bot(world.env, port, world.cwd, log=world.log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
            slack = SlackSide(world.slack, None, http)
            asked = shown(await slack.ask(AGENT, "/code", f"free {ITEM} paid off", channel="D1"))
            assert "Waiting for a supervisor" in asked, asked
            await slack.wait_cards(channel=APPROVALS)
            approval_id = await pending_approval(world)
            before = world.code_events()
            world.hang_next_mutation()
            await slack.command(
                SUPERVISOR, "/approvals", f"approve {approval_id}", channel=APPROVALS
            )
            await wait_until(lambda: world.code_events() == before + 1, 20.0, "ERM makes it")
    finally:
        await stop_bot(bot)
    assert bot.returncode == -9
    code = world.newest_code()
    await end_leases(world)  # the lock's 2 minutes and the approved run's 15 have passed
    calls_before = len(world.slack.calls)

    port = free_port()
    bot = await start_bot(world.env, port, world.cwd, log=world.log)
    try:
        await world.slack.wait_calls(
            lambda c: c.method == "chat.postMessage" and c.channel == AGENT, within=20.0
        )
        await wait_executed(world, approval_id)
        await asyncio.sleep(3.0)  # three more approval sweeps: none may tell again
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
            slack = SlackSide(world.slack, None, http)
            resent = shown(await slack.ask(AGENT, "/resend", ITEM, channel="D1"))
    finally:
        await stop_bot(bot)

    told = [shown(c) for c in world.dms(AGENT, after=calls_before)]
    assert len(told) == 1, told
    assert code in told[0]
    assert code in resent
    assert world.code_events() == before + 1
    async with open_runtime(settings_of(world.env)) as runtime:
        approval = await ApprovalStore(runtime.engine).get(approval_id)
    assert approval is not None
    assert approval.result == "code issued"
    recovered = [r for r in await audit_rows(world) if r.detail.startswith("recovered")]
    assert [(r.outcome, r.user_id, r.approval_id) for r in recovered] == [
        ("ok", AGENT, approval_id)
    ]
    assert not any(has_code(r, world.code_forms()) for r in await audit_rows(world))


async def test_a_restart_with_nothing_in_flight_sends_nothing_and_audits_nothing(
    world: World,
) -> None:
    port = free_port()
    bot = await start_bot(world.env, port, world.cwd, log=world.log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
            slack = SlackSide(world.slack, None, http)
            made = shown(await slack.ask(AGENT, "/code", f"days {ITEM} 7", channel="D1"))
            asked = shown(await slack.ask(AGENT, "/code", f"free {ITEM} paid off", channel="D1"))
            await slack.wait_cards(channel=APPROVALS)
    finally:
        await stop_bot(bot)  # SIGKILL, with nothing in flight
    assert world.newest_code() in made
    assert "Waiting for a supervisor" in asked
    await end_leases(world)
    calls_before = len(world.slack.calls)
    audited = len(await audit_rows(world))
    before = world.code_events()

    bot = await start_bot(world.env, free_port(), world.cwd, log=world.log)
    try:
        await asyncio.sleep(3.0)  # the sweeps at start and three approval sweeps after
    finally:
        await stop_bot(bot)

    assert [c.method for c in world.slack.calls[calls_before:]] == ["auth.test"]  # no message
    assert len(await audit_rows(world)) == audited
    assert world.code_events() == before
