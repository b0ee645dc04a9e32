"""Several bot processes on one PostgreSQL database: exactly one polls Telegram at a time.

Each "process" is an adapter with its own engine (its own connections, so its own advisory lock
session) and its own Bot API path on the fake, so the fake can tell who polled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from fakes.telegram import FakeTelegram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import TestDatabase
from telegram_rig import AGENT, AdapterFactory, StackLike

from adapters.telegram.app import TelegramAdapter
from adapters.telegram.lock import AdvisoryLock, LocalLock, lock_key, polling_lock
from bot.roles import Role

POSTGRES = [pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


@pytest.fixture
async def second_engine(database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    """Another process's engine on the same database."""
    engine = database.create_engine()
    yield engine
    await engine.dispose()


def _pollers(fake: FakeTelegram, since: int = 0) -> set[str]:
    return {c.via for c in fake.calls_to("getUpdates")[since:]}


async def _leader_and_follower(
    fake: FakeTelegram, a: TelegramAdapter, b: TelegramAdapter
) -> tuple[TelegramAdapter, TelegramAdapter]:
    await fake.wait_until(lambda: a.polling or b.polling, what="a leader")
    return (a, b) if a.polling else (b, a)


@pytest.mark.parametrize("database", POSTGRES, indirect=True)
async def test_two_processes_one_poller_and_a_takeover_after_stop(
    any_stack: StackLike,
    second_engine: AsyncEngine,
    fake: FakeTelegram,
    make_adapter: AdapterFactory,
) -> None:
    await any_stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    a = await make_adapter(any_stack.dispatcher, any_stack.engine, api_url=fake.api_url_via("a"))
    b = await make_adapter(any_stack.dispatcher, second_engine, api_url=fake.api_url_via("b"))
    leader, follower = await _leader_and_follower(fake, a, b)
    name = {a: "/a", b: "/b"}

    await asyncio.sleep(2.0)  # four rounds of the follower trying for the lock
    [reply] = await fake.send(AGENT, "/whoami")

    assert _pollers(fake) == {name[leader]}
    assert not follower.polling
    assert fake.conflicts == 0
    assert reply.plain.startswith("Who you are")

    stopped = time.monotonic()
    await leader.stop()
    await fake.wait_until(lambda: follower.polling, within=15, what="the takeover")
    takeover = time.monotonic() - stopped
    calls_before = len(fake.calls_to("getUpdates"))
    [reply] = await fake.send(AGENT, "/whoami")

    assert _pollers(fake, calls_before) == {name[follower]}
    assert fake.conflicts == 0
    assert reply.plain.startswith("Who you are")
    print(f"\ntakeover {takeover:.2f} s after the poller stopped")  # figure for the report
    assert takeover < 10


@pytest.mark.parametrize("database", POSTGRES, indirect=True)
async def test_when_the_poller_dies_another_takes_over_within_seconds(
    any_stack: StackLike,
    database: TestDatabase,
    second_engine: AsyncEngine,
    fake: FakeTelegram,
    make_adapter: AdapterFactory,
) -> None:
    a = await make_adapter(any_stack.dispatcher, any_stack.engine, api_url=fake.api_url_via("a"))
    b = await make_adapter(any_stack.dispatcher, second_engine, api_url=fake.api_url_via("b"))
    leader, follower = await _leader_and_follower(fake, a, b)
    key = lock_key(f"telegram-polling:{fake.bot_id}")

    # The leader's database session dies (crash, network): PostgreSQL frees its lock.
    died = time.monotonic()
    async with any_stack.engine.connect() as admin:
        killed = await admin.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND ((classid::bigint << 32) | objid::bigint) = :key"
            ),
            {"key": key},
        )
    assert killed == 1
    await fake.wait_until(lambda: follower.polling, within=15, what="the takeover")
    await fake.wait_until(lambda: not leader.polling, within=15, what="the old leader giving up")
    takeover = time.monotonic() - died
    calls_before = len(fake.calls_to("getUpdates"))
    await fake.send(AGENT, "/start")

    assert _pollers(fake, calls_before) == {{a: "/a", b: "/b"}[follower]}
    print(f"\ntakeover {takeover:.2f} s after the poller's session died")
    assert takeover < 10


@pytest.mark.parametrize("database", POSTGRES, indirect=True)
async def test_the_advisory_lock_is_exclusive_and_released(
    engine: AsyncEngine, second_engine: AsyncEngine
) -> None:
    first, second = polling_lock(engine, "t"), polling_lock(second_engine, "t")
    assert isinstance(first, AdvisoryLock)

    assert await first.acquire()
    assert not await second.acquire()
    assert await first.check()
    await first.release()
    assert await second.acquire()
    assert not await first.acquire()
    await second.release()
    await first.release()


async def test_sqlite_needs_no_lock(stack: StackLike) -> None:
    lock = polling_lock(stack.engine, "t")

    assert isinstance(lock, LocalLock)
    assert await lock.acquire()
    assert await lock.check()
