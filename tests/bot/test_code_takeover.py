"""A code request that takes over an expired item lock settles its dead holder's request first.

The issue's repro in small: ERM is slow, agent A's code request has reached ERM (the code is
made) but its answer has not come back, and A's item lock expires (a stalled or dead holder: the
row is made expired here, as 125 s without renewal would). B asks for the same code. ERM must end
up holding one code: B is shown A's code, and A is told privately. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from approval_harness import RecordingNotifier
from bot_harness import Bot
from sqlalchemy import update

from bot.intents import CodeIntentRow, IntentState
from bot.storage.locks import ItemLockRow
from erm.models import keypad_format
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
MUTATION = "GenerateDaysCode"


class StallingTransport(httpx.AsyncBaseTransport):
    """Lets the code mutation reach ERM (the code is made), then holds its answer until
    :meth:`release`: an ERM whose answers are slower than any lock."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.reached = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if json.loads(request.content).get("operationName") == MUTATION:
            await response.aread()
            self.reached.set()
            await self._released.wait()
        return response


@pytest.fixture
async def stalled(any_bot: Bot) -> AsyncIterator[tuple[Bot, StallingTransport, RecordingNotifier]]:
    """``any_bot`` whose next code mutation stalls after ERM made the code; console users' private
    messages recorded."""
    await any_bot.say("agent", f"/history {ITEM} 1")  # the session and the item are known
    stall = StallingTransport(any_bot.recorder.inner)
    any_bot.recorder.inner = stall
    told = RecordingNotifier()
    any_bot.core.notifiers["console"] = told
    yield any_bot, stall, told
    stall.release()


async def start_a_and_expire_its_lock(bot: Bot, stall: StallingTransport) -> asyncio.Task[object]:
    """Agent A asks for a 2-day code; once ERM has made it, A's lock is made expired."""
    task: asyncio.Task[object] = asyncio.create_task(bot.say("agent", f"/code days {ITEM} 2"))
    async with asyncio.timeout(10):
        await stall.reached.wait()
    async with bot.engine.begin() as connection:
        now = bot.core.clock()
        await connection.execute(update(ItemLockRow).values(expires_at=now - timedelta(seconds=1)))
    return task


def newest_code(bot: Bot) -> str:
    event = bot.sandbox.item_by_oem_id(ITEM).code_generator.events[-1]
    return keypad_format(event.code_dec_string)


async def intent_states(bot: Bot) -> list[str]:
    async with bot.engine.connect() as connection:
        rows = await connection.execute(CodeIntentRow.__table__.select())
        return sorted(row.state for row in rows)


async def test_taking_over_an_expired_lock_shows_the_dead_holders_code_instead_of_a_second(
    stalled: tuple[Bot, StallingTransport, RecordingNotifier],
) -> None:
    bot, stall, told = stalled
    before = bot.code_events(ITEM)
    a = await start_a_and_expire_its_lock(bot, stall)

    b = await bot.say("supervisor", f"/code days {ITEM} 2")

    assert bot.code_events(ITEM) == before + 1  # one code, not two
    code = newest_code(bot)
    assert b.title.startswith("Already issued")
    assert code in b.text()
    assert "add --again" in b.text()
    [to_a] = told.private_to("agent")  # A hears privately what became of A's request
    assert code in to_a.text()
    resent = await bot.say("supervisor", f"/resend {ITEM}")
    assert code in resent.text()
    stall.release()
    await asyncio.wait_for(a, 10)
    assert bot.code_events(ITEM) == before + 1
    assert bot.transport.calls[MUTATION] == 1
    assert await intent_states(bot) == [IntentState.OK.value]


async def test_taking_over_an_expired_lock_with_another_ask_records_the_old_code_then_issues(
    stalled: tuple[Bot, StallingTransport, RecordingNotifier],
) -> None:
    bot, stall, told = stalled
    before = bot.code_events(ITEM)
    a = await start_a_and_expire_its_lock(bot, stall)
    a_code = newest_code(bot)

    b = await bot.say("supervisor", f"/code days {ITEM} 3")

    assert bot.code_events(ITEM) == before + 2  # A's code, then B's: both asked for
    assert newest_code(bot) in b.text()
    assert b.title.startswith("3-day code")
    [to_a] = told.private_to("agent")
    assert a_code in to_a.text()
    stall.release()
    await asyncio.wait_for(a, 10)
    assert bot.transport.calls[MUTATION] == 2


async def test_taking_over_an_expired_lock_while_history_is_down_refuses_instead_of_guessing(
    stalled: tuple[Bot, StallingTransport, RecordingNotifier],
) -> None:
    bot, stall, told = stalled
    before = bot.code_events(ITEM)
    a = await start_a_and_expire_its_lock(bot, stall)
    bot.sandbox.faults.fail_next = 10_000  # every history read answers 503

    b = await bot.say("supervisor", f"/code days {ITEM} 2")

    bot.sandbox.faults.fail_next = 0
    assert bot.code_events(ITEM) == before + 1
    assert "ERM's history cannot tell yet" in b.text()
    assert f"Try again in a minute: /code days {ITEM} 2" in b.text()
    assert "Traceback" not in b.text()
    assert told.private_to("agent") == []  # nothing is known yet, so nothing is said
    assert await intent_states(bot) == [IntentState.OPEN.value]  # left for a later round
    stall.release()
    await asyncio.wait_for(a, 10)
    assert bot.transport.calls[MUTATION] == 1
