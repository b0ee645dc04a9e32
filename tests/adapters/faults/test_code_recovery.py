"""Crash recovery: a code request cut off after its mutation left the process is finished by the
next process, from its durable intent, against ERM's history.

The "crash" is the request's task cancelled at the exact moment ERM got the mutation (what a
drain timeout on SIGTERM does; nothing in memory survives it), the "restart" a new core over the
same database and ERM, with Slack started on it as ``erm-bot run`` would. Every test checks how
many codes ERM holds (never one more than was asked for), what the requester was told privately,
``/resend`` and the audit trail. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack, shown
from fault_rig import MUTATIONS, FaultStack, fault_stack
from support import TestDatabase

from adapters.housekeeping import Housekeeping
from adapters.platform import Attached
from adapters.slack.app import SlackAdapter
from adapters.slack.config import SlackConfig
from bot.dispatch import Dispatcher
from bot.intents import Intent
from bot.messages import Identity, Reply, Request
from bot.recovery import sweep
from bot.roles import Role
from erm.models import CodeType, keypad_format
from erm.sandbox import ACME, OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
AGENT = "U0123ABCD"
_keys = itertools.count()


@pytest.fixture
async def stack(database: TestDatabase, secret_keys: list[str]) -> AsyncIterator[FaultStack]:
    async with fault_stack(
        database.url, secret_keys, connect_args=database.connect_args
    ) as running:
        await running.grant(f"slack:{AGENT}", Role.AGENT)
        yield running


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def ask(text: str) -> Request:
    return Request(Identity("slack", AGENT, "Ann"), text, request_key=f"recovery:{next(_keys)}")


async def crash_while_issuing(stack: FaultStack, *, erm_gets_it: bool) -> None:
    """``/code days ITEM 7`` whose task is cancelled when the mutation reaches ERM: after ERM
    made the code (``erm_gets_it``) or before ERM ran it (its connection dropped unexecuted)."""
    faults = stack.sandbox.faults
    task: asyncio.Task[Reply] | None = None

    async def cut_off(operation: str) -> None:
        if operation in MUTATIONS and task is not None:
            if not erm_gets_it:
                faults.drop_next = 1  # this very request: dropped before it is executed
            task.cancel()

    if erm_gets_it:
        faults.drop_after_mutation_next = 1  # even if the cancel came late, no answer comes
        stack.hooks.after = cut_off
    else:
        stack.hooks.before = cut_off
    task = asyncio.create_task(stack.dispatcher.handle(ask(f"/code days {ITEM} 7")))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    stack.hooks.before = stack.hooks.after = None
    faults.drop_next = faults.drop_after_mutation_next = 0


@contextlib.asynccontextmanager
async def restarted(stack: FaultStack, fake: FakeSlack) -> AsyncIterator[Dispatcher]:
    """A new core over the same database and ERM, with Slack started on it."""
    dispatcher = stack.runtime.dispatcher()
    config = SlackConfig(
        bot_token=fake.bot_token, signing_secret=SIGNING_SECRET, api_url=fake.api_url
    )
    adapter = Attached(dispatcher.core, "slack", SlackAdapter(dispatcher, config))
    await adapter.start()
    try:
        yield dispatcher
    finally:
        await adapter.stop()


def private_messages(fake: FakeSlack) -> list[str]:
    return [shown(c) for c in fake.calls_to("chat.postMessage")]


def newest_code(stack: FaultStack) -> str:
    event = stack.sandbox.item_by_oem_id(ITEM).code_generator.events[-1]
    return keypad_format(event.code_dec_string)


async def test_a_code_made_before_the_crash_is_recorded_resent_and_told_after_a_restart(
    stack: FaultStack, fake_slack: FakeSlack
) -> None:
    before = stack.code_events(ITEM)

    await crash_while_issuing(stack, erm_gets_it=True)
    assert stack.code_events(ITEM) == before + 1  # ERM made it; nobody was told
    async with restarted(stack, fake_slack) as dispatcher:
        recovered = await sweep(dispatcher.core)
        again = await sweep(dispatcher.core)
        resent = await dispatcher.handle(ask(f"/resend {ITEM}"))

    code = newest_code(stack)
    assert recovered == {"ok": 1}
    assert again == {}
    [told] = private_messages(fake_slack)
    assert code in told
    assert "ERM's history shows this code for your request" in told
    assert code in resent.text()
    assert stack.code_events(ITEM) == before + 1  # no second code
    assert stack.operations.count("GenerateDaysCode") == 1
    newest = (await stack.audit(2))[::-1]
    assert [(r.command, r.outcome) for r in newest] == [("code days", "ok"), ("resend", "ok")]
    assert newest[0].detail == "recovered after a restart: ok"
    assert code.replace(" ", "") not in newest[0].detail


async def test_a_mutation_erm_never_ran_is_recorded_as_not_issued_and_the_requester_told(
    stack: FaultStack, fake_slack: FakeSlack
) -> None:
    before = stack.code_events(ITEM)

    await crash_while_issuing(stack, erm_gets_it=False)
    async with restarted(stack, fake_slack) as dispatcher:
        await Housekeeping(dispatcher.core).run_once()  # the round run at start
        resent = await dispatcher.handle(ask(f"/resend {ITEM}"))

    assert stack.code_events(ITEM) == before
    [told] = private_messages(fake_slack)
    assert f"No code was made for {ITEM}." in told
    assert f"It is safe to ask again: /code days {ITEM} 7" in told
    assert "has issued no code" in resent.text()
    [row] = await stack.audit(1)
    assert [(row.command, row.outcome)] == [("resend", "ok")]
    [recovered] = [r for r in await stack.audit(5) if r.detail.startswith("recovered")]
    assert recovered.outcome == "not_issued"


async def test_a_request_still_in_flight_elsewhere_is_left_to_its_holder(
    stack: FaultStack, fake_slack: FakeSlack
) -> None:
    """A live holder keeps its item lock renewed: another process's sweep does not touch it."""
    core = stack.dispatcher.core
    item = await core.erm.resolve_item(ACME.name, ITEM)
    intent = Intent(
        distributor=ACME.name,
        item_id=item.id,
        oem_item_id=item.oem_item_id,
        item_label=item.label,
        code_type=CodeType.DAYS.value,
        days=3,
        reference="0123abcd",
        request_key="live",
        command="code days",
        requester_platform="slack",
        requester_user=AGENT,
        notify_user=AGENT,
        started_at=core.clock(),
    )
    async with core.codes.item_lock(ACME.name, item.id, "live", ttl=60, wait=0):
        assert isinstance(await core.intents.begin(intent), Intent)
        async with restarted(stack, fake_slack) as dispatcher:
            during = await sweep(dispatcher.core)
    async with restarted(stack, fake_slack) as dispatcher:
        after = await sweep(dispatcher.core)  # the holder is gone: its lock is free

    assert during == {"held": 1}  # left to its holder, and looked at again soon
    assert after == {"not_issued": 1}
    assert len(private_messages(fake_slack)) == 1


async def test_a_request_erm_refused_is_closed_and_leaves_nothing_to_recover(
    stack: FaultStack, fake_slack: FakeSlack
) -> None:
    before = stack.code_events(ITEM)

    async def refuse(operation: str) -> None:
        if operation in MUTATIONS:
            stack.sandbox.faults.fail_next = 1  # this very mutation: 503, not executed

    stack.hooks.before = refuse
    refused = await stack.dispatcher.handle(ask(f"/code days {ITEM} 7"))
    stack.hooks.before = None
    async with restarted(stack, fake_slack) as dispatcher:
        recovered = await sweep(dispatcher.core)

    assert "ERM is not answering right now" in refused.text()
    assert recovered == {}
    assert private_messages(fake_slack) == []
    assert await stack.dispatcher.core.intents.open_intents() == []
    assert stack.code_events(ITEM) == before
