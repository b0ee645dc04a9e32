"""Fairness under one person's burst (issue 14, item 17): one person holds at most
``Limits.per_person`` turns, the rest of their requests wait behind their own while other people's
go ahead; ``/items --page N`` costs the N lookups it makes.

ERM is "slow" through a gate in the bot's ERM transport: calls wait there until the test opens it,
so the assertions are on order and counts, never on how long anything took.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from bot_harness import Bot, BotFactory
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import metrics
from bot.core import Limits
from bot.fairness import Turns
from bot.messages import Reply, Tone
from erm.sandbox import OPEN_ACP1_OEM_ID

FLOOD = 20
PER_PERSON = 3
HANG_GUARD = 20.0  # seconds: only so that a broken build fails instead of hanging
LOOP_TURNS = 2000


class Gate(httpx.AsyncBaseTransport):
    """Holds every ERM call while closed; counts the calls in flight and their most at once."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.opened = asyncio.Event()
        self.opened.set()
        self.in_flight = 0
        self.most = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.opened.wait()
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1


def gated(bot: Bot) -> Gate:
    gate = Gate(bot.recorder.inner)
    bot.recorder.inner = gate
    return gate


async def until(condition: object, turns: int = LOOP_TURNS) -> None:
    """Let the loop run (bounded) until ``condition()`` holds."""
    for _ in range(turns):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


def frozen(bot: Bot) -> None:
    """Every rate-limit window of the test is the same one (no minute boundary mid-test)."""
    now = datetime.now(UTC)
    bot.core.clock = lambda: now


async def test_one_persons_burst_does_not_hold_up_another_persons_command(
    make_bot: BotFactory, engine: AsyncEngine
) -> None:
    bot = await make_bot(engine, limits=Limits(per_person=PER_PERSON, concurrency=16))
    frozen(bot)
    history = f"/history {OPEN_ACP1_OEM_ID} 3"
    assert (await bot.say("agent", history)).tone is Tone.OK  # signed in: a token is cached
    gate = gated(bot)
    gate.opened.clear()
    waits = metrics.value("erm_bot_person_waits_total")

    flood = [asyncio.create_task(bot.say("agent", history)) for _ in range(FLOOD)]
    await until(lambda: gate.in_flight >= PER_PERSON)
    other = asyncio.create_task(bot.say("viewer", "/whoami"))
    done, _ = await asyncio.wait({other}, timeout=HANG_GUARD)
    flood_done_first = sum(task.done() for task in flood)
    held = gate.in_flight
    gate.opened.set()
    replies: list[Reply] = await asyncio.gather(*flood)

    assert other in done, "the other person's /whoami waited for the burst"
    assert other.result().tone is Tone.OK
    assert flood_done_first == 0  # it went ahead of every request of the burst
    assert held == PER_PERSON
    assert gate.most == PER_PERSON  # never more of the person's requests at ERM at once
    assert [r.tone for r in replies] == [Tone.OK] * FLOOD
    assert metrics.value("erm_bot_person_waits_total") - waits >= FLOOD - PER_PERSON


async def test_turns_let_another_person_in_while_one_person_waits() -> None:
    turns = Turns(total=4, per_person=2)
    release = asyncio.Event()
    inside: list[str] = []

    async def work(person: str) -> None:
        async with turns.turn(person):
            inside.append(person)
            await release.wait()

    burst = [asyncio.create_task(work("a")) for _ in range(10)]
    await until(lambda: len(inside) == 2)
    other = asyncio.create_task(work("b"))
    await until(lambda: "b" in inside)

    assert inside == ["a", "a", "b"]
    assert turns.running("a") == 10
    release.set()
    await asyncio.gather(*burst, other)
    assert inside.count("a") == 10
    assert turns.running("a") == 0  # lanes go once nobody uses them


async def test_items_page_n_costs_n_lookups_and_a_refusal_costs_nothing_more(
    make_bot: BotFactory, engine: AsyncEngine
) -> None:
    bot = await make_bot(engine, limits=Limits(lookups_per_user_minute=7))
    frozen(bot)
    assert (await bot.say("viewer", "/items --page 5")).tone in (Tone.OK, Tone.INFO)  # 5 of 7
    calls = bot.transport.calls.copy()

    refused = await bot.say("viewer", "/items --page 3")  # 6 of 7, and 2 more do not fit

    assert refused.tone is Tone.WARNING
    assert refused.title is not None
    assert "Slow down: you reached 7 lookups per minute" in refused.title
    assert bot.transport.calls == calls  # no ERM call for it
    # The 2 refused were not kept: the 7th lookup still fits.
    assert (await bot.say("viewer", f"/history {OPEN_ACP1_OEM_ID} 3")).tone is Tone.OK
    assert (await bot.say("viewer", f"/history {OPEN_ACP1_OEM_ID} 3")).tone is Tone.WARNING
    outcomes = [r.outcome for r in await bot.core.audit.recent(limit=4)]
    assert outcomes.count("rate_limited") == 2
