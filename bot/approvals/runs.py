"""Running approved requests: once right after the decision, and after a crash (the sweep).

The sweep (every minute, first at start) expires requests, reminds approvers at half time, posts
cards that could not be posted before, finishes cards another process could not edit, and
finishes approved requests whose process died (:meth:`Runs.recover`): never issuing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot import metrics
from bot.approvals.cards import (
    INTERRUPTED,
    ISSUED,
    decider,
    interrupted_notice,
    issued_notice,
    who,
)
from bot.approvals.delivery import Delivery
from bot.errors import UserError
from bot.messages import Reply, Request, Tone, Visibility
from bot.ports import Runner, Sent
from bot.storage.approval_tables import REMINDER, Approval, RunState, normalise_id

log = logging.getLogger("bot.approvals")  # one logger name for the whole approval flow

# An approved request is run by the approver's process within seconds (a slow ERM: ~200 s). Its
# lease on the run lasts RUN_LEASE; after that (or RUN_GRACE after a decision made before leases
# existed) the recovery sweep finishes it. A run's trace (its request key) is kept a day, so an
# older request that never ran is not run blind: a person checks.
RUN_LEASE = timedelta(minutes=15)
RUN_GRACE = timedelta(minutes=15)
RUN_TRACE_KEPT = timedelta(hours=12)


class ApprovalRefusedError(UserError):
    """A decision or cancellation that is not allowed (or too late); nothing changed."""


@dataclass(frozen=True, slots=True)
class SweepReport:
    expired: int = 0
    reminded: int = 0
    posted: int = 0
    settled: int = 0
    recovered: int = 0


class Runs(Delivery):
    """Running approved requests and the sweep; :class:`ApprovalService` adds asking and
    deciding."""

    async def load(self, approval_id: str) -> Approval:
        approval = await self.store.get(normalise_id(approval_id))
        if approval is None:
            raise no_such(approval_id)
        return approval

    async def _run_approved(self, approval: Approval, run: Runner) -> str:
        """Run an approved request once, tell its requester privately, settle its cards."""
        reply = await self._execute(approval, run)
        issued = bool(reply.codes)
        result = ISSUED if issued else _first_line(reply.title or "not issued")
        await self.store.record_execution(approval.id, result, now=self._now())
        await self._audit(approval, "executed", result)
        by = decider(approval)
        sent = await self._send_private(
            approval,
            replace(
                reply,
                notes=(*reply.notes, f"Approved by {by} (request {approval.id})."),
                visibility=Visibility.PRIVATE,
            ),
        )
        if sent is Sent.NOW:
            await self.store.record_delivery(approval.id, now=self._now())
            await self._audit(approval, "delivered", f"to {approval.requester.key} privately")
        elif sent is Sent.HELD:
            await self._audit(approval, "held", f"for {approval.requester.key}'s next message")
        else:
            await self._audit(approval, "delivery_failed", f"{approval.requester.key}")
        approval = await self.load(approval.id)
        await self._update_cards(approval)
        requester = who(approval.requester)
        if not issued:
            return f"Approved {approval.id}, but the code was not issued: {result}"
        if sent is Sent.NOW:
            return f"Approved {approval.id}: the code was sent privately to {requester}."
        if sent is Sent.HELD:
            return (
                f"Approved {approval.id}: the code was issued; {requester} gets it privately "
                "with their next message to the bot."
            )
        return (
            f"Approved {approval.id}: the code was issued, but {requester} could not be reached "
            f"privately; they can see it with /resend {approval.item_label}."
        )

    async def _execute(self, approval: Approval, run: Runner) -> Reply:
        """Run the stored request once, as its requester (request key ``approval:<id>``)."""
        request = Request(
            identity=approval.requester,
            text=f"{approval.command_text} --dist {approval.distributor}",
            request_key=run_key(approval.id),
            chat_id=approval.requester_chat or approval.requester.user_id,
            private_chat=True,
            received_at=self._now(),
            approval_id=approval.id,
        )
        try:
            return await run(request)
        except Exception:
            log.exception("approval %s: the approved request failed", approval.id)
            return Reply.error("Something went wrong on our side; nothing is known to be issued.")

    # -- time -----------------------------------------------------------------------------------

    async def sweep(self, now: datetime, run: Runner) -> SweepReport:
        """Expire, remind, post missing cards, finish stale cards and approved requests whose
        runner died; safe in several processes."""
        expired = reminded = posted = settled = recovered = 0
        expired_ids, remind_ids = await self.store.due(now=now)
        for approval_id in expired_ids:
            if await self._guarded(self._expire(approval_id, now)):
                expired += 1
        for approval_id in remind_ids:
            if await self._guarded(self._remind(approval_id, now)):
                reminded += 1
        dead: set[tuple[str, str]] = set()  # chats that failed this round: not asked again now
        for approval, channel, kind in await self.cards.due(now=now):
            where = (channel.platform, channel.chat_id)
            if where in dead:
                continue
            if await self._guarded(self._post(approval, channel, kind, now=now)):
                posted += 1
            elif channel.platform in self.core.notifiers:
                dead.add(where)
        for card in await self.cards.unsettled(now=now):
            decided = await self.store.get(card.approval_id)
            if decided is not None and await self._guarded(self._settle(decided, card)):
                settled += 1
        recovered = await self.recover(now, run)
        return SweepReport(expired, reminded, posted, settled, recovered)

    async def recover(self, now: datetime, run: Runner) -> int:
        """Finish approved requests whose process died before recording the outcome (run at
        start and in every sweep); how many were finished."""
        done = 0
        for approval_id in await self.store.unrun(now=now, grace=RUN_GRACE):
            if await self._guarded(self._recover(approval_id, now, run)):
                done += 1
        return done

    async def _recover(self, approval_id: str, now: datetime, run: Runner) -> bool:
        """Never issue twice: a code recorded for the request means it ran; a run that started
        and never ended may have made a code in ERM, so a person checks (the code-intent recovery
        settles such a code when it knows of it); a run that never started runs now, unless the
        request is so old that the trace of its run may have been purged."""
        if not await self.store.claim_run(approval_id, now=now, grace=RUN_GRACE, lease=RUN_LEASE):
            return False  # another process took it
        approval = await self.load(approval_id)
        state = await self.store.run_state(approval.id, run_key(approval.id))
        decided_at = approval.decided_at or approval.created_at
        if state is RunState.NOT_STARTED and now - decided_at > RUN_TRACE_KEPT:
            state = RunState.CUT_OFF
        if state in (RunState.ISSUED, RunState.CUT_OFF):
            # Its code request still open (or just settled): bot.recovery settles it from ERM's
            # history, records the result here and tells the requester. Not twice.
            open_ = await self.core.intents.open_for(approval.distributor, approval.item_id)
            if any(i.approval_id == approval.id for i in open_):
                return False
            if (await self.load(approval.id)).executed_at is not None:
                return False
        if state is RunState.ISSUED:
            await self.store.record_execution(approval.id, ISSUED, now=self._now())
            await self._audit(approval, "executed", f"{ISSUED} (found after a restart)")
            await self._send_private(approval, issued_notice(approval))
            await self._update_cards(await self.load(approval.id))
        elif state is RunState.CUT_OFF:
            await self.store.record_execution(approval.id, INTERRUPTED, now=self._now())
            await self._audit(approval, "interrupted", "the run was cut off: a person checks")
            await self._send_private(approval, interrupted_notice(approval))
            await self._update_cards(await self.load(approval.id))
        else:
            # Not started: it runs now. Finished without a code: the dispatcher answers with the
            # stored reply and runs nothing.
            log.info("approval %s: approved before a restart, finishing it", approval.id)
            await self._audit(approval, "resumed", f"after a restart ({state.value})")
            await self._run_approved(approval, run)
        return True

    async def _guarded(self, step: Awaitable[bool]) -> bool:
        try:
            return await step
        except Exception:
            log.exception("an approval sweep step failed; the next sweep tries again")
            return False

    async def _expire(self, approval_id: str, now: datetime) -> bool:
        if not await self.store.expire(approval_id, now=now):
            return False
        approval = await self.load(approval_id)
        self._observe(approval)
        await self._audit(approval, "expired", f"no decision by {approval.expires_at:%H:%M} UTC")
        await self._send_private(
            approval,
            Reply(
                title=f"Request {approval.id} expired",
                lines=(
                    f"No one decided on your {approval.what} for {approval.item_label} in time.",
                ),
                notes=("Nothing was issued. Ask again if it is still needed.",),
                tone=Tone.INFO,
            ),
        )
        await self._update_cards(approval)
        return True

    async def _remind(self, approval_id: str, now: datetime) -> bool:
        if not await self.store.claim_reminder(approval_id, now=now):
            return False
        approval = await self.load(approval_id)
        await self._post_cards(approval, REMINDER)
        return True

    # -- helpers --------------------------------------------------------------------------------

    def _observe(self, approval: Approval) -> None:
        if approval.decided_at is not None:
            seconds = (approval.decided_at - approval.created_at).total_seconds()
            metrics.observe_approval(seconds, approval.status.value)


def no_such(approval_id: str) -> ApprovalRefusedError:
    return ApprovalRefusedError(
        f"No approval request {approval_id[:16]!r}. /approvals lists the pending ones."
    )


def run_key(approval_id: str) -> str:
    """The request key an approved request runs under (the dispatcher runs a key once)."""
    return f"approval:{approval_id}"


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0][:200]
