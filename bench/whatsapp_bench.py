"""The WhatsApp path: signed webhook posts, from the harness to replies on the fake Graph API.

A cell is ``n`` text messages (no slash, as agents type them) from ``senders`` people. Each
sender posts its messages to the webhook one after the other, each after the previous post was
answered, as Meta delivers one person's messages; all senders post at once. Messages/s is the
replies received over the time from the first post to the last reply (end to end: webhook post
-> reply sent to the fake Graph API).

Every reply is matched to the command it answers (the item, and for codes the days), so the
harness checks that each sender's replies came in the order the messages were sent. As on Slack
and Telegram, senders never share an item for ``code days`` and days never repeat per item.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from fakes.whatsapp import FakeWhatsApp

from bench.common import ERMCalls, http_session, judge_replies
from bench.slack_bench import DaysAllocator

CELL_TIMEOUT = 120.0
FIRST_WA_ID = 254_700_900_000  # Kenyan numbers, E.164 digits
_MARKUP = re.compile(r"[*_~`]")


@dataclass
class BenchWhatsApp(FakeWhatsApp):
    """The fake Graph API, noting when each reply arrives and when ``expect``-ed ones are in."""

    replies: list[tuple[str, str, float]] = field(default_factory=list)  # (wa_id, text, at)
    _wanted: int = 0
    _all_in: asyncio.Event = field(default_factory=asyncio.Event)

    def _messages(self, body: dict[str, Any]) -> dict[str, Any]:
        result = super()._messages(body)
        if body.get("status") != "read":  # mark-as-read calls are not replies
            sent = self.messages[-1]
            self.replies.append((sent.to, _MARKUP.sub("", sent.text), time.monotonic()))
            if self._wanted and len(self.replies) >= self._wanted:
                self._all_in.set()
        return result

    def expect(self, count: int) -> None:
        # The fake records every call: clear between cells so the harness's heap stays small.
        self.replies.clear()
        self.messages.clear()
        self.calls.clear()
        self.read.clear()
        self._wanted = count
        self._all_in.clear()

    async def all_in(self, within: float) -> None:
        await asyncio.wait_for(self._all_in.wait(), within)


def wa_id(index: int) -> str:
    return str(FIRST_WA_ID + index)


@dataclass
class WhatsAppCell:
    system: str
    command: str
    latency_ms: int
    senders: int
    messages: int
    wall: float = float("nan")
    replied: int = 0
    failed: int = 0  # webhook posts not answered 200
    wrong: int = 0  # a reply that answers none of the sender's commands
    senders_in_order: int = 0
    ack: list[float] = field(default_factory=list)  # post -> HTTP answer, seconds
    latencies: list[float] = field(default_factory=list)  # first post -> each reply, seconds
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
        return self.senders_in_order == self.senders and not self.timed_out

    @property
    def cpu_ms_per_message(self) -> float:
        return 1000 * self.cpu_seconds / self.messages if self.messages else float("nan")

    @property
    def erm_calls_per_message(self) -> float:
        return self.erm_calls.per(self.messages)


def plan(
    command: str, n: int, senders: int, pool: Sequence[str], days: DaysAllocator
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Each sender's texts in sending order, and each sender's expected reply markers."""
    senders = max(1, min(senders, n))
    per_sender = math.ceil(n / senders)
    if command == "code" and senders > len(pool):
        raise ValueError(f"{senders} senders need at least as many items ({len(pool)})")
    texts: dict[str, list[str]] = {}
    expected: dict[str, list[str]] = {}
    count = 0
    for step in range(per_sender):
        for sender in range(senders):
            if count == n:
                break
            count += 1
            who = wa_id(sender)
            if command == "code":
                owned = pool[sender::senders]
                item = owned[step % len(owned)]
                d = days.take(item)
                text, marker = f"code days {item} {d}", f"{d}-day code for {item}"
            else:
                item = pool[(sender * per_sender + step) % len(pool)]  # distinct per sender
                text, marker = f"history {item} 3", f"of {item}"
            texts.setdefault(who, []).append(text)
            expected.setdefault(who, []).append(marker)
    return texts, expected


async def _post_in_order(
    http: aiohttp.ClientSession,
    url: str,
    posts: list[tuple[bytes, str]],
    cell: WhatsAppCell,
) -> None:
    for body, signature in posts:
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        sent = time.monotonic()
        try:
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                problem = "" if response.status == 200 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        cell.ack.append(time.monotonic() - sent)
        if problem:
            cell.failed += 1
            if len(cell.examples) < 3:
                cell.examples.append(f"post failed: {problem}"[:200])


async def run_cell(
    fake: BenchWhatsApp,
    url: str,
    texts: dict[str, list[str]],
    expected: dict[str, list[str]],
    cell: WhatsAppCell,
) -> WhatsAppCell:
    # Payloads are built and signed before the clock starts.
    posts = {
        who: [
            (body, fake.sign(body)) for body in (fake.body(fake.user_message(who, t)) for t in ts)
        ]
        for who, ts in texts.items()
    }
    fake.expect(cell.messages)
    started = time.monotonic()
    async with http_session() as session:
        await asyncio.gather(*(_post_in_order(session, url, p, cell) for p in posts.values()))
    try:
        await fake.all_in(CELL_TIMEOUT)
    except TimeoutError:
        cell.timed_out = True
    cell.senders_in_order = judge_replies(cell, list(fake.replies), expected, started)
    return cell
