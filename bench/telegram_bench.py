"""The Telegram path: a burst of updates through long polling, from the fake Bot API to replies.

``n`` message updates from ``chats`` private chats (each chat sends ``n / chats`` commands) are
queued on the fake at once; the bot under test fetches them with ``getUpdates`` and answers each
with ``sendMessage``. Updates per second is ``n`` over the time from queueing to the last reply.

Every reply is matched to the command it answers (by the item, and for codes the days), so the
harness can check that the replies within each chat came in the order the commands were sent.
As on Slack, chats never share an item for ``/code days`` and days are never repeated per item.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fakes.telegram import FakeTelegram, User

from bench.common import ERMCalls, judge_replies
from bench.slack_bench import DaysAllocator

BURST_TIMEOUT = 120.0
FIRST_USER_ID = 900_001


@dataclass
class BenchTelegram(FakeTelegram):
    """The fake Bot API, noting when each reply arrives and when ``expect``-ed ones are in."""

    replies: list[tuple[int, str, float]] = field(default_factory=list)
    _wanted: int = 0
    _all_in: asyncio.Event = field(default_factory=asyncio.Event)

    async def _api_sendMessage(self, params: dict[str, Any], via: str) -> Any:
        result = await super()._api_sendMessage(params, via)
        self.replies.append((int(params["chat_id"]), self.messages[-1].plain, time.monotonic()))
        if self._wanted and len(self.replies) >= self._wanted:
            self._all_in.set()
        return result

    def expect(self, count: int) -> None:
        self.replies.clear()
        self.messages.clear()
        self.calls.clear()
        self._wanted = count
        self._all_in.clear()

    async def all_in(self, within: float) -> None:
        await asyncio.wait_for(self._all_in.wait(), within)


def telegram_user(index: int) -> User:
    return User(FIRST_USER_ID + index, f"Bench{index}", f"bench_{index}")


@dataclass
class TelegramCell:
    system: str
    command: str
    latency_ms: int
    updates: int
    chats: int
    wall: float = float("nan")
    replied: int = 0
    wrong: int = 0  # a reply that answers none of the chat's commands
    chats_in_order: int = 0
    latencies: list[float] = field(default_factory=list)  # queued -> replied, seconds
    cpu_seconds: float = float("nan")
    peak_rss_mb: float = float("nan")
    timed_out: bool = False
    examples: list[str] = field(default_factory=list)
    # GraphQL requests the ERM sandbox served during the cell, by operation
    erm_calls: ERMCalls = field(default_factory=ERMCalls)

    @property
    def throughput(self) -> float:
        return self.replied / self.wall if self.wall and self.wall == self.wall else float("nan")

    @property
    def in_order(self) -> bool:
        return self.chats_in_order == self.chats and not self.timed_out

    @property
    def cpu_ms_per_update(self) -> float:
        return 1000 * self.cpu_seconds / self.updates if self.updates else float("nan")

    @property
    def erm_calls_per_update(self) -> float:
        return self.erm_calls.per(self.updates)


def plan(
    command: str, n: int, chats: int, pool: Sequence[str], days: DaysAllocator
) -> tuple[list[tuple[User, str]], dict[int, list[str]]]:
    """The messages in sending order (round robin over chats) and each chat's expected markers."""
    chats = max(1, min(chats, n))
    per_chat = math.ceil(n / chats)
    if command == "code" and chats > len(pool):
        raise ValueError(f"{chats} chats need at least as many items ({len(pool)})")
    messages: list[tuple[User, str]] = []
    expected: dict[int, list[str]] = {}
    for step in range(per_chat):
        for chat in range(chats):
            if len(messages) == n:
                break
            user = telegram_user(chat)
            if command == "code":
                owned = pool[chat::chats]
                item = owned[step % len(owned)]
                d = days.take(item)
                text, marker = f"/code days {item} {d}", f"{d}-day code for {item}"
            else:
                item = pool[(chat * per_chat + step) % len(pool)]  # distinct within a chat
                text, marker = f"/history {item} 3", f"of {item}"
            messages.append((user, text))
            expected.setdefault(user.id, []).append(marker)
    return messages, expected


async def run_cell(
    fake: BenchTelegram,
    messages: list[tuple[User, str]],
    expected: dict[int, list[str]],
    cell: TelegramCell,
) -> TelegramCell:
    updates = [fake.message_update(user, text) for user, text in messages]
    fake.expect(len(updates))
    started = time.monotonic()
    for update in updates:
        fake.queue(update)
    try:
        await fake.all_in(BURST_TIMEOUT)
    except TimeoutError:
        cell.timed_out = True
    cell.chats_in_order = judge_replies(cell, list(fake.replies), expected, started)
    return cell
