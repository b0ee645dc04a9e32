"""Concurrency: chats run side by side, the messages of one chat are answered in order."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
from fakes.telegram import FakeTelegram, Group, User
from telegram import Update
from telegram_rig import AdapterFactory, StackLike

from adapters.telegram.ordering import ChatOrderedProcessor, chat_key
from bot.messages import Reply, Request
from bot.roles import Role
from erm.sandbox.seed import OPEN_ACP1_OEM_ID


def _update(update_id: int, chat_id: int) -> Update:
    return Update.de_json(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": 0,
                "chat": {"id": chat_id, "type": "private", "first_name": "x"},
                "from": {"id": chat_id, "is_bot": False, "first_name": "x"},
                "text": "/whoami",
            },
        },
        None,
    )


async def _feed(processor: ChatOrderedProcessor, jobs: list[tuple[Update, Any]]) -> None:
    """Like PTB's update fetcher: one task per update, created in arrival order."""
    async with processor:
        tasks = [asyncio.create_task(processor.process_update(u, c)) for u, c in jobs]
        await asyncio.gather(*tasks)


async def test_one_chat_runs_in_arrival_order_even_when_early_updates_are_slow() -> None:
    done: list[int] = []

    async def work(n: int) -> None:
        await asyncio.sleep(0.05 if n == 0 else 0)
        done.append(n)

    processor = ChatOrderedProcessor(8)
    await _feed(processor, [(_update(n, 7), work(n)) for n in range(10)])

    assert done == list(range(10))


async def test_chats_run_concurrently_and_slots_bound_the_chats() -> None:
    running: Counter[int] = Counter()
    peak_per_chat: Counter[int] = Counter()
    overall: list[int] = []

    async def work(chat: int) -> None:
        running[chat] += 1
        peak_per_chat[chat] = max(peak_per_chat[chat], running[chat])
        overall.append(sum(running.values()))
        await asyncio.sleep(0.01)
        running[chat] -= 1

    processor = ChatOrderedProcessor(3)
    jobs = [(_update(i * 10 + n, i), work(i)) for n in range(4) for i in range(6)]
    await _feed(processor, jobs)

    assert max(peak_per_chat.values()) == 1
    assert max(overall) == 3  # three slots: three chats at once, never more
    assert processor.peak == 3
    assert processor.busy_chats == 0


async def test_a_failing_update_does_not_stop_the_chat(caplog: pytest.LogCaptureFixture) -> None:
    done: list[int] = []

    async def work(n: int) -> None:
        if n == 1:
            raise RuntimeError("boom")
        done.append(n)

    processor = ChatOrderedProcessor(4)
    await _feed(processor, [(_update(n, 7), work(n)) for n in range(3)])

    assert done == [0, 2]
    assert "processing a Telegram update failed" in caplog.text


def test_updates_are_ordered_by_chat() -> None:
    assert chat_key(_update(1, 42)) == ("chat", 42)
    assert chat_key(object()) is None


async def test_twenty_chats_of_five_messages_answer_in_order_and_in_parallel(
    stack: StackLike,
    fake: FakeTelegram,
    make_adapter: AdapterFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack.sandbox.faults.latency_ms = 50
    chats = [(User(5000 + i, f"Agent{i}"), Group(-9000 - i, f"Team {i}")) for i in range(20)]
    for user, _ in chats:
        await stack.grant(f"telegram:{user.id}", Role.AGENT)
    in_flight: Counter[str] = Counter()
    worst_per_chat = 0
    handled: dict[str, list[str]] = defaultdict(list)
    real_handle = stack.dispatcher.handle

    async def watched(request: Request) -> Reply:
        nonlocal worst_per_chat
        in_flight[request.chat_id] += 1
        worst_per_chat = max(worst_per_chat, in_flight[request.chat_id])
        try:
            return await real_handle(request)
        finally:
            in_flight[request.chat_id] -= 1
            handled[request.chat_id].append(request.text)

    monkeypatch.setattr(stack.dispatcher, "handle", watched)
    adapter = await make_adapter(stack.dispatcher, stack.engine)

    # Serial baseline: five messages of one chat are answered one after the other.
    user, group = chats[0]
    started = time.monotonic()
    for n in range(1, 6):
        fake.message(user, f"/history {OPEN_ACP1_OEM_ID} {n}", group=group)
    await fake.wait_for_messages(5, group.id, within=30)
    per_update = (time.monotonic() - started) / 5

    sent_ids: dict[int, list[int]] = defaultdict(list)
    started = time.monotonic()
    for n in range(1, 6):
        for user, group in chats[1:]:
            update = fake.message(user, f"/history {OPEN_ACP1_OEM_ID} {n}", group=group)
            sent_ids[group.id].append(update["message"]["message_id"])
    await fake.wait_until(lambda: len(fake.sent()) == 100, within=60, what="100 replies")
    elapsed = time.monotonic() - started

    for _, group in chats[1:]:
        replies = fake.sent(group.id)
        assert [m.reply_to for m in replies] == sent_ids[group.id]
        assert handled[str(group.id)] == [f"/history {OPEN_ACP1_OEM_ID} {n}" for n in range(1, 6)]
    assert worst_per_chat == 1
    assert adapter.processor.peak >= 10
    serial = 95 * per_update
    print(  # the figures for the report: pytest -s
        f"\n{per_update * 1000:.0f} ms per update alone; 95 updates of 19 chats in "
        f"{elapsed:.2f} s = {95 / elapsed:.0f} updates/s (serial: {serial:.1f} s)"
    )
    assert elapsed < serial / 2
