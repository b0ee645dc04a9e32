"""The Slack path: signed slash commands over loopback, closed loop at a fixed concurrency.

Each of ``concurrency`` workers sends one command, reads the HTTP answer (the *ack*), waits for the
answer's post to the command's own ``response_url`` on the fake Slack (*end to end*, measured from
the moment the command was sent to the moment the fake received the post), then sends the next.
Throughput is commands answered per second of wall time over the whole cell.

Workers never share an item (worker ``w`` of ``c`` uses ``pool[w::c]``) and every ``/code days``
gets days no earlier command of the run used for that item, so no command waits for another's
per-item lock and none is answered from the bot's duplicate window: every code is really issued.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
from fakes.slack import Call, FakeSlack, command_form, encode_form, signed_headers

from bench.common import ERMCalls

ANSWER_TIMEOUT = 30.0
CHANNEL = "CBENCH01"


class BenchSlack(FakeSlack):
    """The fake Slack, resolving one future per ``response_url`` key as its post arrives."""

    def __init__(self) -> None:
        super().__init__()
        self._arrivals: dict[str, asyncio.Future[Call]] = {}

    def expect(self, key: str) -> asyncio.Future[Call]:
        future: asyncio.Future[Call] = asyncio.get_running_loop().create_future()
        self._arrivals[key] = future
        return future

    async def _record(self, call: Call) -> None:
        await super()._record(call)
        if call.method == "response":
            future = self._arrivals.pop(call.path.rsplit("/", 1)[-1], None)
            if future is not None and not future.done():
                future.set_result(call)

    def forget(self) -> None:
        """Drop recorded calls (the harness keeps its own figures)."""
        self.calls.clear()
        self.response_uses.clear()
        self._arrivals.clear()


class DaysAllocator:
    """Days values never used before for an item in this run (so nothing is a duplicate)."""

    def __init__(self) -> None:
        self._next: dict[str, itertools.count[int]] = {}

    def take(self, item: str) -> int:
        return next(self._next.setdefault(item, itertools.count(1)))


@dataclass(frozen=True)
class Job:
    command: str  # "/history" or "/code"
    text: str
    user: str
    marker: str  # what a right answer contains


def slack_user(worker: int) -> str:
    return f"UBENCH{worker:03d}"


def make_jobs(
    command: str, n: int, concurrency: int, pool: Sequence[str], days: DaysAllocator
) -> list[list[Job]]:
    """``n`` commands spread over ``concurrency`` workers, each with items of its own."""
    if concurrency > len(pool):
        raise ValueError(f"concurrency {concurrency} needs at least as many items ({len(pool)})")
    per_worker: list[list[Job]] = [[] for _ in range(concurrency)]
    for index in range(n):
        worker = index % concurrency
        owned = pool[worker::concurrency]
        item = owned[len(per_worker[worker]) % len(owned)]
        if command == "code":
            d = days.take(item)
            job = Job("/code", f"days {item} {d}", slack_user(worker), f"{d}-day code for {item}")
        else:
            job = Job("/history", f"{item} 5", slack_user(worker), f"of {item}")
        per_worker[worker].append(job)
    return per_worker


@dataclass
class SlackCell:
    system: str
    command: str
    latency_ms: int
    concurrency: int
    sent: int = 0
    ack: list[float] = field(default_factory=list)  # seconds
    e2e: list[float] = field(default_factory=list)  # seconds
    wall: float = float("nan")
    failed: int = 0  # no 200 ack, or no answer within ANSWER_TIMEOUT
    wrong: int = 0  # answered, but not with what was asked (an error, a repeat)
    cpu_seconds: float = float("nan")  # of the system under test, during the cell
    peak_rss_mb: float = float("nan")  # VmHWM of the system under test after the cell
    examples: list[str] = field(default_factory=list)
    # GraphQL requests the ERM sandbox served during the cell, by operation
    erm_calls: ERMCalls = field(default_factory=ERMCalls)

    @property
    def throughput(self) -> float:
        return len(self.e2e) / self.wall if self.wall and self.wall == self.wall else float("nan")

    @property
    def cpu_ms_per_command(self) -> float:
        return 1000 * self.cpu_seconds / self.sent if self.sent else float("nan")

    @property
    def erm_calls_per_command(self) -> float:
        return self.erm_calls.per(self.sent)


_keys = itertools.count(1)


async def _one(
    http: aiohttp.ClientSession, fake: BenchSlack, url: str, job: Job, cell: SlackCell
) -> tuple[float, float] | None:
    key = f"b{next(_keys)}"
    form = command_form(
        job.command,
        job.text,
        user_id=job.user,
        user_name=job.user.lower(),
        channel_id=CHANNEL,
        channel_name="bench",
        response_url=fake.response_url(key),
    )
    body = encode_form(form).encode()
    headers = signed_headers(body)
    arrival = fake.expect(key)
    started = time.monotonic()
    cell.sent += 1
    try:
        async with http.post(url, data=body, headers=headers) as response:
            await response.read()
            status = response.status
        acked = time.monotonic()
        if status != 200:
            cell.failed += 1
            return None
        call = await asyncio.wait_for(arrival, ANSWER_TIMEOUT)
    except (TimeoutError, aiohttp.ClientError, OSError):
        cell.failed += 1
        return None
    text = call.text
    if job.marker not in text:
        cell.wrong += 1
        if len(cell.examples) < 3:
            cell.examples.append(text[:200])
    cell.ack.append(acked - started)
    cell.e2e.append(call.at - started)
    return started, call.at


async def run_cell(
    http: aiohttp.ClientSession, fake: BenchSlack, url: str, jobs: list[list[Job]], cell: SlackCell
) -> SlackCell:
    """Run every worker's jobs in order, the workers side by side; fills ``cell``."""
    spans: list[tuple[float, float]] = []

    async def worker(mine: list[Job]) -> None:
        for job in mine:
            span = await _one(http, fake, url, job, cell)
            if span is not None:
                spans.append(span)

    started = time.monotonic()
    await asyncio.gather(*(worker(mine) for mine in jobs))
    finished = max((end for _, end in spans), default=time.monotonic())
    cell.wall = finished - started
    fake.forget()
    return cell
