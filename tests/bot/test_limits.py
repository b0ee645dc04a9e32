"""Rate limits and ERM failures as the chat user sees them, through the dispatcher."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.core import Limits
from bot.messages import Tone
from erm.sandbox import OPEN_ACP1_OEM_ID

BotFactory = Callable[..., Awaitable[Any]]  # tests/bot/conftest.py's make_bot


async def test_lookups_over_the_limit_are_refused_with_when_to_retry(
    make_bot: BotFactory, bot_engine: AsyncEngine
) -> None:
    bot = await make_bot(bot_engine, limits=Limits(lookups_per_user_minute=2))
    for _ in range(2):
        assert (await bot.say("viewer", f"/history {OPEN_ACP1_OEM_ID}")).tone is Tone.OK
    refused = await bot.say("viewer", f"/history {OPEN_ACP1_OEM_ID}")
    assert refused.tone is Tone.WARNING
    assert refused.title is not None
    assert "Try again in" in refused.title
    assert (await bot.say("agent", f"/history {OPEN_ACP1_OEM_ID}")).tone is Tone.OK
    rows = await bot.core.audit.recent(limit=1)
    assert rows[0].outcome == "ok"
    outcomes = [r.outcome for r in await bot.core.audit.recent(limit=4)]
    assert "rate_limited" in outcomes


async def test_codes_over_the_limit_make_no_code(
    make_bot: BotFactory, bot_engine: AsyncEngine
) -> None:
    bot = await make_bot(bot_engine, limits=Limits(codes_per_user_hour=1))
    await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} 1")
    before = bot.code_events(OPEN_ACP1_OEM_ID)
    refused = await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} 2")
    assert refused.tone is Tone.WARNING
    assert bot.code_events(OPEN_ACP1_OEM_ID) == before


async def test_erm_outage_is_a_plain_reply_and_audited(
    make_bot: BotFactory, bot_engine: AsyncEngine
) -> None:
    bot = await make_bot(bot_engine)
    bot.sandbox.faults.fail_next = 10
    reply = await bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} 5")
    assert reply.tone is Tone.ERROR
    assert reply.title is not None
    assert "ERM is not answering" in reply.title
    assert "Traceback" not in reply.text()
    (row,) = await bot.core.audit.recent(limit=1)
    assert row.outcome == "erm_error"
