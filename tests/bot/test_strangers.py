"""Strangers (people without any role) under abuse (issue 14, item 18): rate-limited per identity,
sampled into the audit log so that no number of them grows it without bound; invite codes cannot
be guessed at speed. On SQLite and PostgreSQL (the counters are database rows)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot_harness import Bot, BotFactory
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import metrics
from bot.audit import AuditRow
from bot.core import Limits
from bot.messages import Tone
from erm.sandbox import OPEN_ACP1_OEM_ID

STRANGERS = 100
MESSAGES_EACH = 10
PER_HOUR = 5
AUDITS_PER_HOUR = 30
SAYINGS = ("hello", "/whoami", f"/history {OPEN_ACP1_OEM_ID}", "/help", "/start", "/code days X 1")


async def audit_rows(bot: Bot) -> int:
    async with bot.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(AuditRow)) or 0)


def frozen(bot: Bot) -> None:
    """Every rate-limit window of the test is the same hour."""
    now = datetime.now(UTC)
    bot.core.clock = lambda: now


def kept(how: str) -> float:
    return metrics.value("erm_bot_stranger_requests_total", kept=how)


async def invite(bot: Bot) -> str:
    reply = await bot.say("admin", "/invite agent acme")
    return next(f.value for f in reply.fields if f.label == "Invite code")


async def test_a_thousand_messages_from_a_hundred_strangers_add_a_bounded_audit(
    make_bot: BotFactory, engine: AsyncEngine
) -> None:
    limits = Limits(stranger_requests_per_hour=PER_HOUR, stranger_audits_per_hour=AUDITS_PER_HOUR)
    bot = await make_bot(engine, limits=limits)
    frozen(bot)
    before = await audit_rows(bot)
    limited_before, counted_before = kept("limited"), kept("counted")

    replies = [
        await bot.say(f"stranger{s}", SAYINGS[(s + m) % len(SAYINGS)])
        for m in range(MESSAGES_EACH)
        for s in range(STRANGERS)
    ]

    # Bound: Limits.stranger_audits_per_hour rows an hour, however many strangers write.
    assert await audit_rows(bot) - before == AUDITS_PER_HOUR
    slowed = [r for r in replies if r.title and r.title.startswith("Slow down")]
    assert len(slowed) == STRANGERS * (MESSAGES_EACH - PER_HOUR)
    assert all("/start CODE" in r.text() for r in slowed)  # says what to do next
    assert kept("limited") - limited_before == len(slowed)
    assert kept("counted") - counted_before == STRANGERS * PER_HOUR - AUDITS_PER_HOUR
    assert all("Traceback" not in r.text() for r in replies)
    # People with a role are neither sampled nor held to the strangers' limit.
    for _ in range(PER_HOUR + 2):
        assert (await bot.say("viewer", "/whoami")).tone is Tone.OK
    assert await audit_rows(bot) - before == AUDITS_PER_HOUR + PER_HOUR + 2


async def test_a_redeemed_invite_is_audited_even_when_the_strangers_budget_is_spent(
    make_bot: BotFactory, engine: AsyncEngine
) -> None:
    bot = await make_bot(engine, limits=Limits(stranger_audits_per_hour=1))
    frozen(bot)
    code = await invite(bot)
    await bot.say("first", "hello")  # takes the hour's one audit row for strangers
    await bot.say("newcomer", "hello")  # not audited
    before = await audit_rows(bot)

    joined = await bot.say("newcomer", f"/start {code}")

    assert joined.title is not None
    assert joined.title.startswith("Welcome! You are now agent at acme")
    assert await audit_rows(bot) == before + 1
    (row,) = await bot.core.audit.recent(limit=1)
    assert (row.user_id, row.command, row.outcome) == ("newcomer", "start", "ok")


async def test_guessing_invite_codes_is_rate_limited(
    make_bot: BotFactory, engine: AsyncEngine
) -> None:
    bot = await make_bot(engine, limits=Limits(invite_attempts_per_user_hour=5))
    frozen(bot)
    code = await invite(bot)

    guesses = [await bot.say("guesser", f"/start WRONG{n:05d}X") for n in range(5)]
    limited = await bot.say("guesser", "/start WRONG99999X")
    right_too_late = await bot.say("guesser", f"/start {code}")

    assert all(g.title and "unknown, used already or expired" in g.title for g in guesses)
    for refused in (limited, right_too_late):
        assert refused.tone is Tone.WARNING
        assert refused.title is not None
        assert refused.title.startswith("Too many invite codes tried: 5 an hour.")
        assert "/start CODE" in refused.text()
    # The code still works for the person it was sent to.
    assert (await bot.say("newcomer", f"/start {code}")).title == (
        "Welcome! You are now agent at acme."
    )
