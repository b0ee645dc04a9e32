"""Housekeeping: forget what no longer matters, on a timer, in every bot process.

Request keys are kept for a day (a platform redelivers within hours: Telegram keeps undelivered
updates 24 hours), rate-limit windows for a day, buttons until they expire. Each purge is one
DELETE, safe to run from several processes at once. The audit log and issued codes are kept.
Each round first recovers code requests a crashed process left in flight (:mod:`bot.recovery`);
one left because its item lock was still held is looked at again every few seconds until it is
not, since a restart is quicker than a dead request's lock takes to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from starlette.routing import BaseRoute

from bot import recovery
from bot.core import Core

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 600.0
# How soon recovery looks again at a request whose item lock was held: its holder may be alive
# (a request takes seconds) or dead, its lock expiring within LOCK_TTL; then its requester is told
# this long after the expiry at most, not at the next round.
RECOVERY_RETRY_SECONDS = 5.0
RATE_WINDOW_RETENTION = timedelta(days=1)
# Closed code intents are kept a day for diagnostics; open ones until they are recovered.
CODE_INTENT_RETENTION = timedelta(days=1)


async def tidy(core: Core) -> dict[str, int]:
    """One round of purges; how many rows each removed."""
    now = core.clock()
    removed = {
        "requests": await core.requests.purge(now - core.requests.retention),
        "rate_windows": await core.rate.purge(now - RATE_WINDOW_RETENTION),
        "buttons": await core.buttons.purge(now=now),
        "code_intents": await core.intents.purge(now - CODE_INTENT_RETENTION),
    }
    if core.held is not None:  # messages kept for people who never wrote again
        removed["held"] = await core.held.purge()
    return removed


class Periodic:
    """A ``WebService`` running :meth:`run_once` every ``interval`` seconds, from start to stop.

    A round that fails is logged and tried again next round: the database may be down a while.
    """

    name = "periodic work"

    def __init__(self, core: Core, interval: float) -> None:
        self.core = core
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def routes(self) -> list[BaseRoute]:
        return []

    def enabled(self) -> bool:
        return True

    async def start(self) -> None:
        if self.enabled():
            self._task = asyncio.create_task(self._loop(), name=f"erm-bot {self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> None:
        raise NotImplementedError

    async def between_rounds(self) -> None:
        """Wait for the next round."""
        await asyncio.sleep(self.interval)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.warning("%s failed; will retry", self.name, exc_info=True)
            await self.between_rounds()


class Housekeeping(Periodic):
    """:func:`tidy` every ``interval`` seconds (first round at start)."""

    name = "housekeeping"

    def __init__(
        self,
        core: Core,
        interval: float = INTERVAL_SECONDS,
        retry: float = RECOVERY_RETRY_SECONDS,
    ) -> None:
        super().__init__(core, interval)
        self.retry = retry
        self._held = False  # the last recovery left requests whose item lock was held

    async def run_once(self) -> None:
        # Code requests cut off by a crash first (the first round runs at start, after the
        # platforms, so their notifiers can tell the requesters), then the purges.
        await self.recover()
        removed = await tidy(self.core)
        if any(removed.values()):
            log.info("housekeeping removed %s", removed)

    async def recover(self) -> None:
        """One recovery sweep; a failure is logged, not raised (the next round tries again)."""
        try:
            recovered = await recovery.sweep(self.core)
        except Exception:
            log.warning("recovering code requests failed; will retry", exc_info=True)
            return
        self._held = bool(recovered.pop("held", 0))
        if recovered:
            log.info("housekeeping recovered code requests: %s", recovered)

    async def between_rounds(self) -> None:
        """Wait ``interval`` seconds; meanwhile sweep again every ``retry`` seconds while the
        last sweep left requests whose item lock was held."""
        loop = asyncio.get_running_loop()
        next_round = loop.time() + self.interval
        while self._held and next_round - loop.time() > self.retry:
            await asyncio.sleep(self.retry)
            await self.recover()
        await asyncio.sleep(max(0.0, next_round - loop.time()))
