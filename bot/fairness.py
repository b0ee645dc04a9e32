"""Turns: how many requests run at once, in total and for one person.

A process works on ``total`` requests at once and queues the rest (see
:class:`bot.dispatch.Dispatcher`). Without a share per person, one agent's burst of slow lookups
(48 ``/history`` calls against a slow ERM) took every slot, and everyone else waited behind it.
:class:`Turns` first waits for a place among the person's own ``per_person`` and only then for one
of the ``total``: the rest of a burst queues behind its sender's own requests, holding no shared
slot, while other people's requests go ahead.

A person may write from several linked identities (:mod:`bot.people`): their lanes are one. A
turn is taken before the request reads the database, so the lane of an identity is the person
the dispatcher learnt from its previous request (:meth:`Turns.learn`); a link made since (or in
another process) counts from the identity's next request. Only fairness rests on this memory:
quotas and roles are read from the database with every request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bot import metrics

MAX_LEARNT = 10_000  # identities whose person is remembered; forgotten all at once beyond


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
        self._people: dict[str, str] = {}  # identity -> its person, when linked to others

    def learn(self, identity: str, person: str) -> None:
        """Remember that ``identity`` belongs to ``person``: its next turns are the person's."""
        if person == identity:
            self._people.pop(identity, None)
            return
        if len(self._people) >= MAX_LEARNT and identity not in self._people:
            self._people.clear()  # a wrong lane for a while is all it costs
        self._people[identity] = person

    @contextlib.asynccontextmanager
    async def turn(self, who: str) -> AsyncIterator[None]:
        """Hold a place for ``who`` (an identity, or a person) while the block runs, in its
        person's lane; waits while none is free."""
        person = self._people.get(who, who)
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

    def running(self, who: str) -> int:
        """How many requests of ``who``'s person hold or wait for a place (for tests and
        metrics)."""
        lane = self._lanes.get(self._people.get(who, who))
        return lane.users if lane is not None else 0
