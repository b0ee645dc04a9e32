"""Approval requests: a code that needs a second person's yes, decided in a team channel.

A distributor's policy (stored per distributor, :class:`Policy`) says which code requests need
approval: by default free and reset codes, days codes over 30 days, and days codes from someone who
issued 10 codes in the last 24 hours; supervisors and admins issue directly unless the policy says
otherwise, and a request over a quota goes to approval instead of being refused.

The flow, every step in the database first (a restart, even ``kill -9``, loses nothing):

1. :meth:`ApprovalService.gate` (called by the code commands once the item is resolved) stores the
   request (:class:`ApprovalStore.create`: who, what, the exact command text and a fingerprint of
   exactly these values; one pending request per ask, held by a unique index), posts a card to
   every approval channel of the distributor (one per platform, set with ``/approvals here``) and
   tells the requester privately that it is pending. The rules count what the same person got or
   waits for (:meth:`ApprovalStore.usage`): splitting a request or adding ``--again`` adds up.
2. A supervisor presses Approve or Deny (stored buttons, actions ``approve`` / ``deny``) or types
   ``/approvals approve ID``. The decision is a compare-and-set on the row (``UPDATE ... WHERE
   status = 'pending'``): the first decision wins across processes and platforms, everyone later
   is told who decided when. Approvers need supervisor or above at the distributor and must not be
   the requester.
3. On approve the stored request runs once through the dispatcher (request key
   ``approval:<id>``; ``Request.approval_id`` skips the policy and quotas, and the code command
   checks that what runs is exactly what was approved); the code goes to the requester privately,
   never to a channel. Every card of the request is then edited to show the decision, with no
   buttons left.
4. :meth:`ApprovalService.sweep`, run every minute by the server (first at start), expires
   requests (default 24 hours), reminds approvers at half time, posts cards that could not be
   posted before (with backoff, :mod:`bot.approval_delivery`), finishes cards another process
   could not edit, and finishes approved requests whose process died (:meth:`recover`).

A request id tells nothing to someone without a role at its distributor (the answer is the one an
unknown id gets). Cards and messages name people by platform id (:mod:`bot.approval_cards`).

Adapters post and edit messages through the :class:`Notifier` each one registers in
``Core.notifiers`` at start. Every step is written to the audit log with the request's id. The
tables and their compare-and-set updates are in :mod:`bot.approval_store` (re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot import metrics
from bot.approval_card_store import Unreachable
from bot.approval_cards import (
    INTERRUPTED,
    ISSUED,
    decider,
    interrupted_notice,
    issued_notice,
    pending_reply,
    who,
)
from bot.approval_delivery import Delivery, Notifier, NotifyError
from bot.approval_store import (
    CARD,
    REMINDER,
    Approval,
    ApprovalCardRow,
    ApprovalChannelRow,
    ApprovalPolicyRow,
    ApprovalRow,
    ApprovalStore,
    Card,
    Channel,
    NewApproval,
    Policy,
    RunState,
    Status,
    describe,
    normalise_id,
    request_fingerprint,
)
from bot.errors import PermissionDeniedError, UsageError, UserError
from bot.messages import Identity, Pressed, Reply, Request, Tone, Visibility, visible
from bot.registry import number as whole_number
from bot.roles import Role
from erm.errors import ErmError
from erm.models import CodeType, Item
from erm.service import MAX_DAYS

if TYPE_CHECKING:
    from bot.cards import StoredButton
    from bot.dispatch import Context, Dispatcher
    from bot.messages import Click

__all__ = [
    "POLICY_SETTINGS",
    "POLICY_USAGE",
    "Approval",
    "ApprovalCardRow",
    "ApprovalChannelRow",
    "ApprovalPolicyRow",
    "ApprovalRefusedError",
    "ApprovalRow",
    "ApprovalService",
    "ApprovalStore",
    "Card",
    "Channel",
    "NewApproval",
    "Notifier",
    "NotifyError",
    "Policy",
    "Status",
    "SweepReport",
    "Unreachable",
    "apply_setting",
    "approve_button",
    "deny_button",
    "describe",
    "normalise_id",
    "request_fingerprint",
]

log = logging.getLogger(__name__)

MAX_PENDING_PER_REQUESTER = 10
LAST_CODES_SHOWN = 3
MAX_REASON = 200
_APPROVER = Role.SUPERVISOR
# An approved request is run by the approver's process within seconds (a slow ERM: ~200 s). Its
# lease on the run lasts RUN_LEASE; after that (or RUN_GRACE after a decision made before leases
# existed) the recovery sweep finishes it. A run's trace (its request key) is kept a day, so an
# older request that never ran is not run blind: a person checks.
RUN_LEASE = timedelta(minutes=15)
RUN_GRACE = timedelta(minutes=15)
RUN_TRACE_KEPT = timedelta(hours=12)
USAGE_WINDOW = timedelta(hours=24)


class ApprovalRefusedError(UserError):
    """A decision or cancellation that is not allowed (or too late); nothing changed."""


# -- policy settings, as typed ------------------------------------------------------------------


POLICY_SETTINGS = ("free", "reset", "days-over", "daily-count", "supervisors")
POLICY_USAGE = "free on|off, reset on|off, days-over N|off, daily-count N|off, supervisors on|off"


def apply_setting(policy: Policy, setting: str, value: str | None) -> Policy:
    """``policy`` with one setting changed, as typed in chat or on the command line."""
    name = setting.strip().lower()
    raw = (value or "").strip().lower()
    if name not in POLICY_SETTINGS:
        raise UsageError(f"No approval setting {setting[:30]!r}. Settings: {POLICY_USAGE}.")
    if name in ("free", "reset", "supervisors"):
        if raw not in ("on", "off"):
            raise UsageError(f"{name} takes on or off, not {raw[:20]!r}.")
        flag = raw == "on"
        if name == "free":
            return replace(policy, free=flag)
        if name == "reset":
            return replace(policy, reset=flag)
        return replace(policy, supervisors=flag)
    top = MAX_DAYS if name == "days-over" else 1000
    number: int | None = None
    if raw != "off":
        # ASCII digits only (bot.registry.number); days-over also takes "30d", like /code days.
        digits = raw[:-1] if name == "days-over" and raw.endswith("d") else raw
        try:
            number = whole_number(digits, name, 1, top)
        except ValueError as exc:
            raise UsageError(f"{exc}, or off.") from None
    if name == "days-over":
        return replace(policy, days_over=number)
    return replace(policy, daily_count=number)


# -- service ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepReport:
    expired: int = 0
    reminded: int = 0
    posted: int = 0
    settled: int = 0
    recovered: int = 0


class ApprovalService(Delivery):
    """The approval flow over an :class:`ApprovalStore`; the dispatcher binds it to its core."""

    # -- asking ---------------------------------------------------------------------------------

    async def gate(
        self,
        ctx: Context,
        code_type: CodeType,
        item: Item,
        days: int | None,
        note: str | None,
    ) -> Reply | None:
        """None: issue the code now. A reply: the request went to approval (or was refused)."""
        request = ctx.request
        if request.approval_id is not None:
            await self._check_approved(ctx, code_type, item, days, note)
            return None
        needs = await self._needs(ctx, code_type, item, days)
        if needs is None:
            return None
        return await self._open(ctx, code_type, item, days, note, needs)

    async def _check_approved(
        self,
        ctx: Context,
        code_type: CodeType,
        item: Item,
        days: int | None,
        note: str | None,
    ) -> None:
        request = ctx.request
        approval_id = request.approval_id or ""
        approval = await self.store.get(approval_id)
        ctx.approval_id = approval_id
        if (
            approval is None
            or approval.status is not Status.APPROVED
            or request.request_key != f"approval:{approval.id}"
            or not approval.matches(
                distributor=ctx.distributor,
                requester=request.identity.key,
                code_type=code_type,
                item_id=item.id,
                days=days,
                note=note,
            )
        ):
            log.warning("approved request %s does not match what was approved", approval_id)
            raise UsageError(
                f"Request {approval_id} does not match what was approved: nothing was issued."
            )

    async def _needs(
        self, ctx: Context, code_type: CodeType, item: Item, days: int | None
    ) -> str | None:
        """Why this request needs approval, or None; refuses agents' free and reset codes when
        the policy does not let them through approval."""
        policy = ctx.policy or await self.store.policy(ctx.distributor)
        privileged = (ctx.access.role or Role.VIEWER) >= _APPROVER
        special = code_type in (CodeType.FREE, CodeType.RESET)
        kind = code_type.name.lower()
        wanted = policy.free if code_type is CodeType.FREE else policy.reset
        if special and not privileged and not wanted:
            raise PermissionDeniedError(
                f"{kind.capitalize()} codes at {ctx.distributor} are for supervisors: "
                f"approval of agents' {kind} codes is off (an admin can turn it on with "
                f"/approvals policy {kind} on).",
                missing_role=_APPROVER.label,
                distributor=ctx.distributor,
            )
        if ctx.over_quota:
            return ctx.over_quota
        if privileged and not policy.supervisors:
            return None
        if special:
            return f"{kind} codes need approval" if wanted else None
        if policy.days_over is None and policy.daily_count is None:
            return None
        now = ctx.now()
        # Counted for the person, whatever they type: splitting 60 days into 30 + 30, or adding
        # --again, still adds up (this request included, and what waits for approval too).
        usage = await self.store.usage(
            ctx.request.identity, ctx.distributor, item.id, since=now - USAGE_WINDOW, now=now
        )
        if policy.days_over is not None and days is not None:
            before = usage.days_issued + usage.days_waiting
            if days > policy.days_over:
                return f"more than {policy.days_over} days"
            if before + days > policy.days_over and not await self._shown_again(ctx, item, days):
                return (
                    f"more than {policy.days_over} days for this item in 24 hours "
                    f"({before} issued or waiting, {days} asked)"
                )
        if policy.daily_count is not None and usage.codes >= policy.daily_count:
            return f"the requester issued {usage.codes} codes in the last 24 hours"
        return None

    async def _shown_again(self, ctx: Context, item: Item, days: int) -> bool:
        """Whether the code command will show a code issued moments ago instead of making one
        (the same request again without --again): that adds no days, so it needs no approval."""
        if ctx.flags.get("again"):
            return False
        window = timedelta(minutes=self.core.limits.duplicate_window_minutes)
        recent = await self.core.codes.recent_issue(
            ctx.distributor, item.id, CodeType.DAYS.value, days, since=ctx.now() - window
        )
        return recent is not None

    async def _open(
        self,
        ctx: Context,
        code_type: CodeType,
        item: Item,
        days: int | None,
        note: str | None,
        needs: str,
    ) -> Reply:
        request, now = ctx.request, ctx.now()
        identity = request.identity
        if await self.store.count_pending_by(identity, now=now) >= MAX_PENDING_PER_REQUESTER:
            raise UsageError(
                f"You have {MAX_PENDING_PER_REQUESTER} requests waiting for approval already. "
                "Wait for a decision, or cancel one (/approvals lists them)."
            )
        new = NewApproval(
            distributor=ctx.distributor,
            requester=identity,
            requester_chat=request.chat_id if request.private_chat and request.chat_id else None,
            origin_chat=request.chat_id or None,
            code_type=code_type,
            item_id=item.id,
            item_label=item.label,
            client_name=item.client_name,
            days=days,
            note=note,
            command_text=request.text.strip(),
            needs=needs,
            context=await self._snapshot(ctx.distributor, item),
            request_key=request.request_key,
        )
        approval, created = await self.store.create(new, now=now, ttl=self._ttl)
        ctx.approval_id = approval.id
        if not created:
            ctx.detail = f"approval {approval.id} already pending"
            return pending_reply(approval, posted=None, again=True)
        ctx.detail = f"approval {approval.id} requested: {needs}"
        await self._audit(approval, "requested", needs, actor=identity, chat_id=request.chat_id)
        posted = await self._post_cards(approval, CARD, tell=False)  # the reply says it
        return pending_reply(approval, posted=posted, again=False)

    async def _snapshot(self, distributor: str, item: Item) -> dict[str, Any]:
        """What approvers see of the item: account stage and balance, its last codes (no digits)."""
        erm = self.core.erm
        out: dict[str, Any] = {}
        if item.account_id:
            try:
                account = await erm.asset_account(distributor, item.account_id)
            except ErmError as exc:
                log.info("account of %s not shown on its approval card: %s", item.id, exc)
                out["account"] = "could not be read"
            else:
                parts = [account.stage.label] if account.stage else []
                if account.balance is not None:
                    balance = f"{account.balance:,.2f} {account.currency or ''}".strip()
                    parts.append(f"balance {balance}")
                if account.status:
                    parts.append(account.status.lower())
                out["account"] = ", ".join(parts) or "no details"
        else:
            out["account"] = "none yet"
        try:
            _, events = await erm.code_history(distributor, item.id, LAST_CODES_SHOWN)
        except ErmError as exc:
            log.info("code history of %s not shown on its approval card: %s", item.id, exc)
            out["codes_unreadable"] = True
        else:
            codes = []
            for event in events:
                when = f"{event.created_at:%Y-%m-%d}" if event.created_at else "?"
                kind = event.code_type.name.lower() if event.code_type else "code"
                if event.code_type is CodeType.DAYS:
                    kind = f"{event.code_days}-day"
                codes.append(f"{when} {kind}")
            out["codes"] = codes
        return out

    # -- deciding -------------------------------------------------------------------------------

    async def load(self, approval_id: str) -> Approval:
        approval = await self.store.get(normalise_id(approval_id))
        if approval is None:
            raise _no_such(approval_id)
        return approval

    async def load_for(self, identity: Identity, approval_id: str) -> Approval:
        """The request, if ``identity`` may know of it: its requester, or anyone with a role at
        its distributor. Anyone else gets the answer an unknown id gets (an id says nothing about
        another distributor's requests, not even that it exists)."""
        approval = await self.store.get(normalise_id(approval_id))
        if approval is None or identity.key == approval.requester.key:
            if approval is None:
                raise _no_such(approval_id)
            return approval
        roles = await self.core.permissions.roles(identity)
        if approval.distributor not in roles:
            raise _no_such(approval_id)
        return approval

    async def check_decider(self, identity: Identity, approval: Approval, chat_id: str) -> None:
        """Refuse (privately, changing nothing) who may not decide, or when it is too late."""
        roles = await self.core.permissions.roles(identity)
        role = roles.get(approval.distributor)
        if role is None and identity.key != approval.requester.key:
            raise _no_such(approval.id)  # another distributor's: nothing to learn here
        if approval.status is not Status.PENDING or approval.expires_at <= self._now():
            raise await self._too_late(approval)
        if identity.key == approval.requester.key:
            await self._audit(approval, "refused", "self-approval", actor=identity, chat_id=chat_id)
            raise ApprovalRefusedError(
                "You asked for this yourself: another supervisor or admin must decide it."
            )
        # A second identity of the requester is the requester (linked at any moment since the
        # request: unlinking does not launder it). ApprovalStore.decide holds this too.
        if await self.core.people.same_person(
            identity, approval.requester, since=approval.created_at
        ):
            await self._audit(
                approval,
                "refused",
                f"self-approval: {identity.key} is linked to {approval.requester.key}",
                actor=identity,
                chat_id=chat_id,
            )
            raise ApprovalRefusedError(
                f"You asked for this yourself, as {approval.requester.key} (linked to you): "
                "another supervisor or admin must decide it."
            )
        if role is None or role < _APPROVER:
            await self._audit(
                approval, "refused", "approver without the role", actor=identity, chat_id=chat_id
            )
            yours = f"you are {role.label}" if role else "you have no role there"
            raise ApprovalRefusedError(
                f"Only a supervisor or admin of {approval.distributor} can decide this; {yours}."
            )

    async def _not_decided(
        self, identity: Identity, approval_id: str, chat_id: str
    ) -> ApprovalRefusedError:
        """Why a decision lost its compare-and-set: decided or expired meanwhile, or the decider
        linked to the requester meanwhile (check_decider raises that refusal)."""
        approval = await self.load(approval_id)
        await self.check_decider(identity, approval, chat_id)
        return await self._too_late(approval)

    async def _too_late(self, approval: Approval) -> ApprovalRefusedError:
        """Why a request can no longer be decided (expiring it first when its time is up)."""
        now = self._now()
        if approval.status is Status.PENDING and approval.expires_at <= now:
            await self._expire(approval.id, now)
            approval = await self.load(approval.id)
        at = f"{approval.decided_at:%H:%M} UTC" if approval.decided_at else "?"
        by = decider(approval)
        if approval.status is Status.EXPIRED:
            text = (
                f"Request {approval.id} expired at {approval.expires_at:%H:%M} UTC. "
                "Nothing was issued; ask again if it is still needed."
            )
        elif approval.status is Status.CANCELLED:
            text = f"Request {approval.id} was cancelled by {by} at {at}."
        else:
            text = f"Already {approval.status.value} by {by} at {at}."
        return ApprovalRefusedError(text)

    async def approve(self, identity: Identity, approval_id: str, *, chat_id: str = "") -> str:
        """Approve, issue the code once, send it to the requester privately; a short outcome."""
        approval = await self.load_for(identity, approval_id)
        await self.check_decider(identity, approval, chat_id)
        if not await self.store.decide(
            approval.id, Status.APPROVED, by=identity, now=self._now(), run_for=RUN_LEASE
        ):
            raise await self._not_decided(identity, approval.id, chat_id)
        approval = await self.load(approval.id)
        self._observe(approval)
        await self._audit(
            approval, "decided", f"approved by {identity.key}", actor=identity, chat_id=chat_id
        )
        return await self._run_approved(approval)

    async def _run_approved(self, approval: Approval) -> str:
        """Run an approved request once, tell its requester privately, settle its cards."""
        reply = await self._execute(approval)
        issued = bool(reply.codes)
        result = ISSUED if issued else _first_line(reply.title or "not issued")
        await self.store.record_execution(approval.id, result, now=self._now())
        await self._audit(approval, "executed", result)
        by = decider(approval)
        delivered = await self._send_private(
            approval,
            replace(
                reply,
                notes=(*reply.notes, f"Approved by {by} (request {approval.id})."),
                visibility=Visibility.PRIVATE,
            ),
        )
        if delivered:
            await self.store.record_delivery(approval.id, now=self._now())
            await self._audit(approval, "delivered", f"to {approval.requester.key} privately")
        else:
            await self._audit(approval, "delivery_failed", f"{approval.requester.key}")
        approval = await self.load(approval.id)
        await self._update_cards(approval)
        requester = who(approval.requester)
        if not issued:
            return f"Approved {approval.id}, but the code was not issued: {result}"
        if delivered:
            return f"Approved {approval.id}: the code was sent privately to {requester}."
        return (
            f"Approved {approval.id}: the code was issued, but {requester} could not be reached "
            f"privately; they can see it with /resend {approval.item_label}."
        )

    async def _execute(self, approval: Approval) -> Reply:
        """Run the stored request once, as its requester (request key ``approval:<id>``)."""
        if self._run is None:
            raise RuntimeError("the approval service is not bound to a dispatcher")
        request = Request(
            identity=approval.requester,
            text=f"{approval.command_text} --dist {approval.distributor}",
            request_key=_run_key(approval.id),
            chat_id=approval.requester_chat or approval.requester.user_id,
            private_chat=True,
            received_at=self._now(),
            approval_id=approval.id,
        )
        try:
            return await self._run(request)
        except Exception:
            log.exception("approval %s: the approved request failed", approval.id)
            return Reply.error("Something went wrong on our side; nothing is known to be issued.")

    async def deny(
        self, identity: Identity, approval_id: str, reason: str | None, *, chat_id: str = ""
    ) -> str:
        approval = await self.load_for(identity, approval_id)
        await self.check_decider(identity, approval, chat_id)
        cleaned = " ".join(visible(reason or "").split())[:MAX_REASON] or None
        if not await self.store.decide(
            approval.id, Status.DENIED, by=identity, reason=cleaned, now=self._now()
        ):
            raise await self._not_decided(identity, approval.id, chat_id)
        approval = await self.load(approval.id)
        self._observe(approval)
        await self._audit(
            approval,
            "decided",
            f"denied by {identity.key}" + (f": {cleaned}" if cleaned else ""),
            actor=identity,
            chat_id=chat_id,
        )
        told = await self._send_private(
            approval,
            Reply(
                title=f"Request {approval.id} was denied",
                lines=(
                    f"Your {approval.what} for {approval.item_label} was denied by "
                    f"{who(identity)}.",
                    f"Reason: {cleaned}" if cleaned else "No reason was given.",
                ),
                notes=("Nothing was issued.",),
                tone=Tone.WARNING,
            ),
        )
        await self._update_cards(approval)
        whom = who(approval.requester)
        return f"Denied {approval.id}." + (f" {whom} was told." if told else "")

    async def cancel(self, identity: Identity, approval_id: str, *, chat_id: str = "") -> str:
        approval = await self.load_for(identity, approval_id)
        if identity.key != approval.requester.key:
            raise ApprovalRefusedError("Only the person who asked for it can cancel a request.")
        if (
            approval.status is not Status.PENDING
            or approval.expires_at <= self._now()  # expired meanwhile: it expires instead
            or not await self.store.cancel(approval.id, identity, now=self._now())
        ):
            raise await self._too_late(await self.load(approval.id))
        approval = await self.load(approval.id)
        await self._audit(
            approval, "cancelled", "by the requester", actor=identity, chat_id=chat_id
        )
        await self._update_cards(approval)
        return f"Cancelled {approval.id}. Nothing was issued."

    # -- time -----------------------------------------------------------------------------------

    async def sweep(self, now: datetime) -> SweepReport:
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
        recovered = await self.recover(now)
        return SweepReport(expired, reminded, posted, settled, recovered)

    async def recover(self, now: datetime) -> int:
        """Finish approved requests whose process died before recording the outcome (run at
        start and in every sweep); how many were finished."""
        done = 0
        for approval_id in await self.store.unrun(now=now, grace=RUN_GRACE):
            if await self._guarded(self._recover(approval_id, now)):
                done += 1
        return done

    async def _recover(self, approval_id: str, now: datetime) -> bool:
        """Never issue twice: a code recorded for the request means it ran; a run that started
        and never ended may have made a code in ERM, so a person checks (the code-intent recovery
        settles such a code when it knows of it); a run that never started runs now, unless the
        request is so old that the trace of its run may have been purged."""
        if not await self.store.claim_run(approval_id, now=now, grace=RUN_GRACE, lease=RUN_LEASE):
            return False  # another process took it
        approval = await self.load(approval_id)
        state = await self.store.run_state(approval.id, _run_key(approval.id))
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
            await self._run_approved(approval)
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


def _no_such(approval_id: str) -> ApprovalRefusedError:
    return ApprovalRefusedError(
        f"No approval request {approval_id[:16]!r}. /approvals lists the pending ones."
    )


def _run_key(approval_id: str) -> str:
    """The request key an approved request runs under (the dispatcher runs a key once)."""
    return f"approval:{approval_id}"


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0][:200]


# -- buttons ------------------------------------------------------------------------------------


def _service(dispatcher: Dispatcher) -> ApprovalService:
    service = dispatcher.core.approvals
    if service is None:
        raise ApprovalRefusedError("Approvals are not set up in this bot.")
    return service


async def approve_button(dispatcher: Dispatcher, click: Click, stored: StoredButton) -> Pressed:
    """Approve: the outcome is a private notice; every card is edited by the service."""
    service = _service(dispatcher)
    notice = await service.approve(
        click.identity, str(stored.payload.get("value") or ""), chat_id=click.chat_id
    )
    return Pressed(notice=notice)


async def deny_button(dispatcher: Dispatcher, click: Click, stored: StoredButton) -> Pressed:
    """Deny in two steps: ``ask`` turns the card into "Deny without reason" / "Back"."""
    service = _service(dispatcher)
    step, _, approval_id = str(stored.payload.get("value") or "").partition(":")
    if step == "now":
        return Pressed(
            notice=await service.deny(click.identity, approval_id, None, chat_id=click.chat_id)
        )
    approval = await service.load_for(click.identity, approval_id)
    if step == "back":
        return Pressed(card=await service.pending_card(approval))
    await service.check_decider(click.identity, approval, click.chat_id)
    return Pressed(card=await service.deny_prompt(approval))
