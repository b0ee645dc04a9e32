"""The approval sweep: expiry, reminders, late cards and approved requests whose process died.

It runs on a timer in every bot process, the first round at start (so a restart finishes what the
process before it left).

:meth:`bot.approvals.runs.Runs.sweep` does the work; every step of it is a compare-and-set in
the database, so several processes sweeping at once expire, remind and post each thing once. It
starts after the platform adapters (the app's lifespan starts services in order), so their
notifiers are registered by the first round.
"""

from __future__ import annotations

import logging

from adapters.housekeeping import Periodic
from bot.approvals.service import service_of
from bot.core import Core
from bot.ports import Runner

log = logging.getLogger(__name__)

SWEEP_SECONDS = 60.0


class ApprovalSweeper(Periodic):
    """The approval sweep every ``interval`` seconds (when the core has approvals)."""

    name = "approval sweep"

    def __init__(self, core: Core, run: Runner, interval: float = SWEEP_SECONDS) -> None:
        super().__init__(core, interval)
        self.run = run  # the dispatcher: approved requests whose process died run through it

    def enabled(self) -> bool:
        return self.core.approvals is not None

    async def sweep_once(self) -> None:
        """One round; a failure is logged, not raised (the next round tries again)."""
        try:
            await self.run_once()
        except Exception:
            log.warning("approval sweep failed; will retry", exc_info=True)

    async def run_once(self) -> None:
        if self.core.approvals is None:
            return
        report = await service_of(self.core).sweep(self.core.clock(), self.run)
        if report.expired or report.reminded or report.posted or report.settled or report.recovered:
            log.info(
                "approval sweep: %d expired, %d reminded, %d cards posted, %d cards settled, "
                "%d approved requests finished after a restart",
                report.expired,
                report.reminded,
                report.posted,
                report.settled,
                report.recovered,
            )
