"""The webhook's work queue: one person's messages in order, different people at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from adapters.whatsapp.ordering import KeyedRunner


async def test_one_keys_jobs_run_in_order_while_other_keys_run_alongside() -> None:
    runner = KeyedRunner(concurrency=8)
    done: list[str] = []
    gate = asyncio.Event()

    def job(name: str, wait: bool = False) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if wait:
                await gate.wait()
            done.append(name)

        return run

    runner.submit("amina", job("a1", wait=True))  # slow: holds amina's queue
    runner.submit("amina", job("a2"))
    runner.submit("brian", job("b1"))
    await asyncio.sleep(0.05)
    assert done == ["b1"]  # brian did not wait for amina; a2 waited for a1

    gate.set()
    await runner.join()
    assert done == ["b1", "a1", "a2"]
    assert runner.peak == 2
    assert runner.busy == 0


async def test_a_failing_job_does_not_stop_the_rest_of_the_queue() -> None:
    runner = KeyedRunner(concurrency=1)
    done: list[int] = []

    async def boom() -> None:
        raise RuntimeError("boom")

    async def fine() -> None:
        done.append(1)

    runner.submit("k", boom)
    runner.submit("k", fine)
    await runner.join()
    assert done == [1]


async def test_concurrency_bounds_the_people_worked_on_at_once() -> None:
    runner = KeyedRunner(concurrency=2)
    running = 0
    most = 0

    async def work() -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    for person in range(6):
        runner.submit(person, work)
    await runner.join()
    assert most == 2
