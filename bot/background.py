"""Work that outlives the request that started it, kept track of so it is neither lost to the
garbage collector nor left half-done silently.

Today this is settling a code request whose ERM answer was lost (``bot.commands.codes``): the
requester is told at once that ERM has not confirmed yet, and the outcome reaches them later.
Nothing here survives the process: what must (a code request whose outcome is not known yet) is
also written down as an intent (:mod:`bot.intents`) before its mutation is sent. A process that
dies meanwhile leaves the item lock to expire and the intent open, and :mod:`bot.recovery`
finishes the work after a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Background:
    """A set of running tasks, each logged if it fails, all awaited by :meth:`drain`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work %s failed", task.get_name(), exc_info=task.exception())

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def drain(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every task; True if none is left running."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=seconds)
        return not pending
