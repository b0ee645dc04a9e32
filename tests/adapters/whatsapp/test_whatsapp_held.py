"""Outside the 24-hour window with no template: a message the bot starts is kept (sealed, in the
database) and handed over right after the reply to the user's next message, under "While you
were away:", once across replicas and restarts; it expires after a week."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from approvals_rig import TG_SUPERVISOR, Team, code_forms, open_team
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram
from fakes.whatsapp import REENGAGEMENT, FakeWhatsApp, SentMessage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from whatsapp_rig import AGENT, ITEM, ServeFactory, StackLike, rows, settle, wait_sent

from adapters.whatsapp.app import HINT
from adapters.whatsapp.config import Templates
from adapters.whatsapp.outbound import AWAY
from bot.dispatch import Dispatcher
from bot.messages import Code, Reply
from bot.roles import Role

HELD = "bot_held_messages"
CODE_READY = Reply(title="Code ready", codes=(Code("*413 572#", "413572"),))
FORMS = ("413 572", "413572")


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@dataclass
class Replica:
    """Another bot process on the same database: its own core and stores."""

    dispatcher: Dispatcher
    engine: AsyncEngine


def replica(stack: Any) -> Any:
    return Replica(stack.runtime.dispatcher(), stack.engine)


async def sealed_rows(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        found = await connection.execute(text(f"SELECT * FROM {HELD}"))  # noqa: S608
        return [repr(tuple(row)) for row in found]


async def wait_rows(engine: AsyncEngine, count: int, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while await rows(engine, HELD) != count:
        assert loop.time() < deadline, f"{count} kept messages expected"
        await asyncio.sleep(0.02)


def with_code(sent: list[SentMessage], forms: tuple[str, ...] | list[str] = FORMS) -> int:
    return sum(1 for m in sent if any(f in m.text for f in forms))


async def keep_one(stack: StackLike, fake: FakeWhatsApp) -> None:
    """CODE_READY sent to the agent outside the window: kept, nothing sent."""
    await stack.dispatcher.core.notifiers["whatsapp"].send_private(AGENT, CODE_READY)
    assert fake.sent(AGENT) == []
    assert await rows(stack.engine, HELD) == 1


async def test_kept_sealed_and_handed_over_after_the_next_reply_once(
    any_stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    served = await serve(any_stack)
    await keep_one(any_stack, fake)
    assert not any(f in row for row in await sealed_rows(any_stack.engine) for f in FORMS)

    hello = fake.user_message(AGENT, "hello")
    await fake.deliver(served.url, hello)
    await fake.deliver(served.url, hello)  # Meta redelivers
    await settle(served.adapter)
    await fake.deliver(served.url, fake.user_message(AGENT, "hello again"))
    await settle(served.adapter)

    reply, away, code, again = fake.sent(AGENT)
    assert reply.text == HINT
    assert AWAY in away.text
    assert "```*413 572#```" in code.text
    assert AWAY not in again.text
    assert with_code(fake.sent()) == 1
    assert await rows(any_stack.engine, HELD) == 0


async def test_two_replicas_answering_at_once_hand_it_over_once(
    any_stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    first = await serve(any_stack)
    second = await serve(replica(any_stack))
    await keep_one(any_stack, fake)

    await asyncio.gather(
        fake.deliver(first.url, fake.user_message(AGENT, "hello")),
        fake.deliver(second.url, fake.user_message(AGENT, "hi")),
    )
    await asyncio.gather(settle(first.adapter), settle(second.adapter))

    assert with_code(fake.sent(AGENT)) == 1
    assert [m.text for m in fake.sent(AGENT)].count(f"*{AWAY}*") == 1
    assert await rows(any_stack.engine, HELD) == 0


async def test_a_restart_keeps_it(
    any_stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    before = await serve(any_stack)
    await keep_one(any_stack, fake)
    await before.adapter.stop()

    after = await serve(replica(any_stack))  # a new process: new core, same database
    await fake.deliver(after.url, fake.user_message(AGENT, "hello"))
    await settle(after.adapter)

    _, away, code = fake.sent(AGENT)
    assert AWAY in away.text
    assert with_code([code]) == 1


async def test_an_expired_one_is_not_handed_over_and_purged_without_its_content(
    any_stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve(any_stack)
    await keep_one(any_stack, fake)
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with any_stack.engine.begin() as connection:
        await connection.execute(text(f"UPDATE {HELD} SET expires_at = :t"), {"t": past})  # noqa: S608

    with caplog.at_level(logging.INFO):
        await fake.deliver(served.url, fake.user_message(AGENT, "hello"))
        await settle(served.adapter)

    [reply] = fake.sent(AGENT)
    assert AWAY not in reply.text
    held = any_stack.dispatcher.core.held
    assert held is not None
    with caplog.at_level(logging.INFO):
        assert await held.purge() == 1  # the housekeeping round's
    assert await rows(any_stack.engine, HELD) == 0
    assert "expired" in caplog.text
    assert not any(f in caplog.text for f in FORMS)


async def test_with_a_template_the_template_goes_and_nothing_is_kept(
    any_stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    fake.add_template("erm_code_ready", params=1)
    await serve(any_stack, templates=Templates(code_ready="erm_code_ready"))
    await any_stack.dispatcher.core.notifiers["whatsapp"].send_private(AGENT, CODE_READY)
    [template] = fake.sent(AGENT)
    assert template.template == "erm_code_ready"
    assert await rows(any_stack.engine, HELD) == 0


async def message_refs(engine: AsyncEngine) -> list[str | None]:
    async with engine.connect() as connection:
        found = await connection.execute(text(f"SELECT message_ref FROM {HELD}"))  # noqa: S608
        return list(found.scalars())


async def test_a_later_failed_status_for_the_window_keeps_it_even_on_another_replica(
    stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    await serve(stack)
    fake.open_window(AGENT)
    await stack.dispatcher.core.notifiers["whatsapp"].send_private(AGENT, CODE_READY)
    [accepted] = fake.sent(AGENT)
    assert await message_refs(stack.engine) == [accepted.id]  # watched, sealed
    assert not any(f in row for row in await sealed_rows(stack.engine) for f in FORMS)

    # The report reaches a process that did not send it (a restart, another replica).
    other = await serve(replica(stack))
    failed = fake.status(accepted.id, AGENT, "failed", errors=[REENGAGEMENT])
    await fake.deliver(other.url, failed)
    await settle(other.adapter)
    assert await message_refs(stack.engine) == [None]  # held for the next message
    await fake.deliver(other.url, failed)  # Meta redelivers the report
    await settle(other.adapter)

    await fake.deliver(other.url, fake.user_message(AGENT, "hello"))
    await settle(other.adapter)
    *_, away, code = await wait_sent(fake, AGENT, 4)
    assert AWAY in away.text
    assert with_code([code]) == 1
    assert with_code(fake.sent(AGENT)) == 2  # the accepted message, and the one handed over
    assert await rows(stack.engine, HELD) == 0


async def test_a_later_failed_status_with_a_template_sends_the_template_once(
    stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    fake.add_template("erm_code_ready", params=1)
    served = await serve(stack, templates=Templates(code_ready="erm_code_ready"))
    other = await serve(replica(stack), templates=Templates(code_ready="erm_code_ready"))
    fake.open_window(AGENT)
    await stack.dispatcher.core.notifiers["whatsapp"].send_private(AGENT, CODE_READY)
    [accepted] = fake.sent(AGENT)
    del fake.last_inbound[AGENT]  # the window closed meanwhile
    failed = fake.status(accepted.id, AGENT, "failed", errors=[REENGAGEMENT])

    # Meta sends the report twice, to two replicas at once.
    await asyncio.gather(fake.deliver(served.url, failed), fake.deliver(other.url, failed))
    await settle(served.adapter)
    await settle(other.adapter)

    _, template = await wait_sent(fake, AGENT, 2)
    assert template.template == "erm_code_ready"
    assert len(fake.sent(AGENT)) == 2
    assert await rows(stack.engine, HELD) == 0


async def test_a_delivered_one_is_not_handed_over(
    stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    served = await serve(stack)
    fake.open_window(AGENT)
    await stack.dispatcher.core.notifiers["whatsapp"].send_private(AGENT, CODE_READY)
    [accepted] = fake.sent(AGENT)
    await fake.deliver(served.url, fake.status(accepted.id, AGENT, "delivered"))
    await fake.deliver(served.url, fake.user_message(AGENT, "hello"))
    await settle(served.adapter)
    _, reply = await wait_sent(fake, AGENT, 2)
    assert reply.text == HINT
    assert with_code(fake.sent(AGENT)) == 1


# -- an approval decided while the agent is away ---------------------------------------------


@pytest.fixture
async def team(stack: StackLike) -> AsyncIterator[Team]:
    bot_id = secrets.randbelow(10**9) + 10**9
    telegram = FakeTelegram(token=f"{bot_id}:AAH-whatsapp-held", bot_id=bot_id)
    async with FakeSlack() as slack, telegram, open_team(stack, slack, telegram) as team:
        yield team


async def test_an_approval_decided_while_away_reaches_the_agent_with_their_next_message(
    stack: StackLike, team: Team, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    served = await serve(stack)
    await stack.grant(f"whatsapp:{AGENT}", Role.AGENT)
    await fake.deliver(served.url, fake.user_message(AGENT, f"code free {ITEM} paid off"))
    [pending] = await wait_sent(fake, AGENT, 1)
    await team.telegram.wait_cards()
    approval = await team.only()
    [card] = team.telegram.cards()
    del fake.last_inbound[AGENT]  # a day later: the window has closed

    await team.telegram.press(TG_SUPERVISOR, card, "Approve")
    await wait_rows(stack.engine, 1)

    record = await team.issued(approval.id)
    forms = code_forms(record)
    assert fake.sent(AGENT) == [pending]
    assert "gets it privately with their next message" in team.telegram.last_notice()
    audited = await stack.dispatcher.core.audit.recent(limit=50)
    outcomes = [r.outcome for r in audited if r.approval_id == approval.id]
    assert "held" in outcomes
    assert "delivered" not in outcomes
    assert not any(f in row for row in await sealed_rows(stack.engine) for f in forms)

    await fake.deliver(served.url, fake.user_message(AGENT, "hello"))
    await settle(served.adapter)
    _, reply, away, code = fake.sent(AGENT)
    assert reply.text == HINT
    assert AWAY in away.text
    assert "```" in code.text
    assert [m.to for m in fake.sent() if any(f in m.text for f in forms)] == [AGENT]
    assert with_code(fake.sent(AGENT), forms) == 1
    assert await rows(stack.engine, HELD) == 0
