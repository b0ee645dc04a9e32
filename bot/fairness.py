"""Turns: how many requests run at once, in total and for one person.

A process works on ``total`` requests at once and queues the rest (see
:class:`bot.dispatch.Dispatcher`). Without a share per person, one agent's burst of slow lookups
(48 ``/history`` calls against a slow ERM) took every slot, and everyone else waited behind it.
:class:`Turns` first waits for a place among the person's own ``per_person`` and only then for one
of the ``total``: the rest of a burst queues behind its sender's own requests, holding no shared
slot, while other people's requests go ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bot import metrics


@dataclass(slots=True)
class _Lane:
    """One person's places, and how many of their requests hold or wait for one."""

    places: asyncio.Semaphore
    users: int = field(default=0)


class Turns:
    """At most ``total`` requests at once, at most ``per_person`` of them from one person.

    Waiters are served in arrival order (asyncio's semaphores are first come, first served). The
    lanes live only while someone uses them, so memory follows the people active right now.
    """

    def __init__(self, total: int, per_person: int) -> None:
        if total < 1 or per_person < 1:
            raise ValueError("turns need total >= 1 and per_person >= 1")
        self.total = total
        self.per_person = min(per_person, total)
        self._shared = asyncio.Semaphore(total)
        self._lanes: dict[str, _Lane] = {}

    @contextlib.asynccontextmanager
    async def turn(self, person: str) -> AsyncIterator[None]:
        """Hold a place for ``person`` while the block runs; waits while none is free."""
        lane = self._lanes.get(person)
        if lane is None:
            lane = self._lanes[person] = _Lane(asyncio.Semaphore(self.per_person))
        lane.users += 1
        try:
            if lane.places.locked():
                metrics.PERSON_WAITS.inc()
            async with lane.places, self._shared:
                yield
        finally:
            lane.users -= 1
            if lane.users == 0:
                del self._lanes[person]

    def running(self, person: str) -> int:
        """How many of ``person``'s requests hold or wait for a place (for tests and metrics)."""
        lane = self._lanes.get(person)
        return lane.users if lane is not None else 0
