"""Work for different people runs concurrently; the work of one person runs in arrival order.

The webhook acknowledges a notification before any of its work runs (Meta retries what is not
answered quickly), so the work is queued here. Like Telegram's ``ChatOrderedProcessor``: the first
job of a person starts a task that drains that person's queue in order; later jobs of the same
person join the queue. At most ``concurrency`` people are worked on at once (a semaphore, first in
first out), so one person's backlog never takes every slot and a slot is never held by a job
waiting for another. :meth:`KeyedRunner.join` waits for everything queued (a clean stop).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class KeyedRunner:
    """Runs jobs concurrently across keys, in order within a key; see the module docstring."""

    def __init__(self, concurrency: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._backlogs: dict[Hashable, deque[Job]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.peak = 0  # most keys worked on at once, for tests

    @property
    def busy(self) -> int:
        return len(self._backlogs)

    def submit(self, key: Hashable, job: Job) -> None:
        """Queue ``job`` behind the jobs of ``key``; returns at once."""
        backlog = self._backlogs.get(key)
        if backlog is not None:
            backlog.append(job)
            return
        backlog = self._backlogs[key] = deque([job])
        self.peak = max(self.peak, len(self._backlogs))
        task = asyncio.create_task(self._drain(key, backlog))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, key: Hashable, backlog: deque[Job]) -> None:
        try:
            async with self._slots:
                while backlog:
                    try:
                        await backlog[0]()
                    except Exception:
                        # One failed job must not stop the rest of this person's queue.
                        log.exception("a WhatsApp job failed")
                    backlog.popleft()
        finally:
            del self._backlogs[key]

    async def join(self) -> None:
        """Wait until every job queued so far (and any they queue) has run."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
