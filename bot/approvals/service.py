"""Asking for approval and deciding: the gate before a code, Approve, Deny and Cancel."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from bot.approvals.cards import (
    decider,
    pending_reply,
    who,
)
from bot.approvals.runs import RUN_LEASE, ApprovalRefusedError, Runs, no_such
from bot.core import Context, Core
from bot.errors import PermissionDeniedError, UsageError
from bot.messages import Identity, Reply, Tone, visible
from bot.ports import Runner, Sent
from bot.roles import Role
from bot.storage.approval_tables import CARD, Approval, NewApproval, Status, normalise_id
from erm.errors import ErmError
from erm.models import CodeType, Item

log = logging.getLogger("bot.approvals")  # one logger name for the whole approval flow

MAX_PENDING_PER_REQUESTER = 10
LAST_CODES_SHOWN = 3
MAX_REASON = 200
_APPROVER = Role.SUPERVISOR
USAGE_WINDOW = timedelta(hours=24)


# -- service ------------------------------------------------------------------------------------


class ApprovalService(Runs):
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
            return pending_reply(approval, again=True)
        ctx.detail = f"approval {approval.id} requested: {needs}"
        await self._audit(approval, "requested", needs, actor=identity, chat_id=request.chat_id)
        posted = await self._post_cards(approval, CARD, tell=False)
        if not posted and not await self.store.channels(approval.distributor):
            # No supervisor hears of it unless the requester tells one (the reply says so); how
            # to fix it (/approvals here) is for the operators' log, not the agent.
            log.warning(
                "approval %s: %s has no approval chat; supervisors see it with /approvals, "
                "or set one with /approvals here",
                approval.id,
                approval.distributor,
            )
        # Not posted anywhere (no chat, or it failed: logged by _post): the requester is told to
        # tell a supervisor, once, in this reply.
        return pending_reply(approval, again=False, seen=posted > 0)

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

    async def load_for(self, identity: Identity, approval_id: str) -> Approval:
        """The request, if ``identity`` may know of it: its requester, or anyone with a role at
        its distributor. Anyone else gets the answer an unknown id gets (an id says nothing about
        another distributor's requests, not even that it exists)."""
        approval = await self.store.get(normalise_id(approval_id))
        if approval is None or identity.key == approval.requester.key:
            if approval is None:
                raise no_such(approval_id)
            return approval
        roles = await self.core.permissions.roles(identity)
        if approval.distributor not in roles:
            raise no_such(approval_id)
        return approval

    async def check_decider(self, identity: Identity, approval: Approval, chat_id: str) -> None:
        """Refuse (privately, changing nothing) who may not decide, or when it is too late."""
        roles = await self.core.permissions.roles(identity)
        role = roles.get(approval.distributor)
        if role is None and identity.key != approval.requester.key:
            raise no_such(approval.id)  # another distributor's: nothing to learn here
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

    async def approve(
        self, identity: Identity, approval_id: str, *, run: Runner, chat_id: str = ""
    ) -> str:
        """Approve, issue the code once (through ``run``, the dispatcher), send it to the
        requester privately; a short outcome."""
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
        return await self._run_approved(approval, run)

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
        if told is Sent.HELD:
            return f"Denied {approval.id}. {whom} is told with their next message to the bot."
        return f"Denied {approval.id}." + (f" {whom} was told." if told is Sent.NOW else "")

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


def service_of(core: Core) -> ApprovalService:
    """The approval flow of ``core``; a refusal when the bot runs without one."""
    service = core.approvals
    if not isinstance(service, ApprovalService):
        raise ApprovalRefusedError("Approvals are not set up in this bot.")
    return service
