"""Approval requests: a code that needs a second person's yes, decided in a team channel.

A distributor's policy (stored per distributor, :class:`Policy`) says which code requests need
approval: by default free and reset codes, days codes over 30 days, and days codes from someone who
issued 10 codes in the last 24 hours; supervisors and admins issue directly unless the policy says
otherwise, and a request over a quota goes to approval instead of being refused.

The flow, every step in the database first (a restart, even ``kill -9``, loses nothing):

1. :meth:`ApprovalService.gate` (called by the code commands once the item is resolved) stores the
   request (:class:`ApprovalStore.create`: who, what, the exact command text and a fingerprint of
   exactly these values), posts a card to every approval channel of the distributor (one per
   platform, set with ``/approvals here``) and tells the requester privately that it is pending.
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
4. :meth:`ApprovalService.sweep`, run every minute by the server, expires requests (default 24
   hours), reminds approvers at half time, posts cards that could not be posted before and
   finishes cards another process could not edit.

Adapters post and edit messages through the :class:`Notifier` each one registers in
``Core.notifiers`` at start. Every step is written to the audit log with the request's id. The
tables and their compare-and-set updates are in :mod:`bot.approval_store` (re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot import metrics
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
    Status,
    describe,
    normalise_id,
    request_fingerprint,
)
from bot.audit import AuditEntry
from bot.context import Button, Field, Identity, Pressed, Reply, Request, Tone, Visibility
from bot.errors import BotError, PermissionDeniedError, UsageError, UserError
from bot.roles import Role
from erm.errors import ErmError
from erm.models import CodeType, Item
from erm.service import MAX_DAYS

if TYPE_CHECKING:
    from bot.cards import StoredButton
    from bot.context import Click
    from bot.dispatch import Context, Core, Dispatcher

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
SYSTEM = Identity("system", "erm-bot", "erm-bot")  # the actor of audit rows the sweep writes
_APPROVER = Role.SUPERVISOR


class NotifyError(BotError):
    """A platform refused to post or edit a message (the message says why, without secrets)."""


class ApprovalRefusedError(UserError):
    """A decision or cancellation that is not allowed (or too late); nothing changed."""


class Notifier(Protocol):
    """How the core posts to a platform outside a reply; each adapter registers one at start."""

    async def post_card(self, chat_id: str, reply: Reply) -> str:
        """Post ``reply`` (public, with its buttons) in a channel or group; the message's ref."""

    async def update_card(self, chat_id: str, message_ref: str, reply: Reply) -> None:
        """Replace a posted card (a reply without buttons removes them)."""

    async def send_private(self, user_id: str, reply: Reply) -> None:
        """Send ``reply`` to the user's private chat with the bot (Slack DM, Telegram chat)."""


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
    if raw == "off":
        number: int | None = None
    elif raw.isdigit() and 1 <= int(raw) <= top:
        number = int(raw)
    else:
        raise UsageError(f"{name} takes a number from 1 to {top}, or off (not {raw[:20]!r}).")
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


Run = Callable[[Request], Awaitable[Reply]]


class ApprovalService:
    """The approval flow over an :class:`ApprovalStore`; the dispatcher binds it to its core."""

    def __init__(self, store: ApprovalStore) -> None:
        self.store = store
        self._core: Core | None = None
        self._run: Run | None = None

    def bind(self, core: Core, run: Run) -> None:
        """Use ``core`` (buttons, audit, permissions, notifiers) and ``run`` to execute requests."""
        self._core, self._run = core, run

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("the approval service is not bound to a dispatcher")
        return self._core

    def _now(self) -> datetime:
        return self.core.clock()

    @property
    def _ttl(self) -> timedelta:
        return timedelta(hours=self.core.limits.approval_hours)

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
        needs = await self._needs(ctx, code_type, days)
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

    async def _needs(self, ctx: Context, code_type: CodeType, days: int | None) -> str | None:
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
        if policy.days_over is not None and days is not None and days > policy.days_over:
            return f"more than {policy.days_over} days"
        if policy.daily_count is not None:
            identity = ctx.request.identity
            since = ctx.now() - timedelta(hours=24)
            count = await self.core.codes.count_issued_by(
                identity.platform, identity.user_id, since
            )
            if count >= policy.daily_count:
                return f"the requester issued {count} codes in the last 24 hours"
        return None

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
            return _pending_reply(approval, posted=None, again=True)
        ctx.detail = f"approval {approval.id} requested: {needs}"
        await self._audit(approval, "requested", needs, actor=identity, chat_id=request.chat_id)
        posted = await self._post_cards(approval, CARD)
        return _pending_reply(approval, posted=posted, again=False)

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

    # -- cards ----------------------------------------------------------------------------------

    async def _post_cards(self, approval: Approval, kind: str) -> int:
        """Post the request to every approval channel of its distributor; how many got it."""
        posted = 0
        for channel in await self.store.channels(approval.distributor):
            if await self._post(approval, channel, kind):
                posted += 1
        return posted

    async def _post(self, approval: Approval, channel: Channel, kind: str) -> bool:
        notifier = self.core.notifiers.get(channel.platform)
        if notifier is None:
            return False  # not served by this process: the sweep of one that serves it posts it
        card_id = await self.store.claim_card(
            approval.id, channel.platform, channel.chat_id, kind, now=self._now()
        )
        if card_id is None:
            return False  # posted already (by another process)
        try:
            card = await self._stored_buttons(self.card(approval, reminder=kind == REMINDER))
            ref = await notifier.post_card(channel.chat_id, card)
        except Exception as exc:
            await self.store.drop_card(card_id)
            log.warning(
                "approval %s: card not posted to %s %s: %s",
                approval.id,
                channel.platform,
                channel.chat_id,
                exc if isinstance(exc, NotifyError) else type(exc).__name__,
            )
            await self._audit(
                approval, "post_failed", f"{channel.platform} {channel.chat_id}", chat_id=""
            )
            return False
        await self.store.card_posted(card_id, ref)
        outcome = "posted" if kind == CARD else "reminded"
        await self._audit(
            approval, outcome, f"{channel.platform} {channel.chat_id}", chat_id=channel.chat_id
        )
        return True

    async def _stored_buttons(self, reply: Reply) -> Reply:
        """Keep each button's action server-side, like the dispatcher does for replies."""
        if not reply.buttons:
            return reply
        ids = await self.core.buttons.save(
            [(b.action, {"value": b.value}) for b in reply.buttons],
            owner=None,
            now=self._now(),
            ttl=self._ttl + timedelta(days=1),
        )
        return replace(
            reply,
            buttons=tuple(replace(b, value=i) for b, i in zip(reply.buttons, ids, strict=True)),
        )

    def card(self, approval: Approval, *, reminder: bool = False) -> Reply:
        """The card approvers see while the request is pending (buttons not yet stored)."""
        head = "Reminder: approval needed" if reminder else "Approval needed"
        fields = [
            Field("Request", approval.id),
            Field("Requested by", _who(approval.requester)),
            Field("Item", approval.item_label),
        ]
        if approval.client_name:
            fields.append(Field("Client", approval.client_name))
        account = approval.context.get("account")
        if account:
            fields.append(Field("Account", str(account)))
        if approval.note:
            fields.append(Field("Note", approval.note))
        fields.append(Field("Why", approval.needs))
        fields.append(Field("Expires", f"{approval.expires_at:%Y-%m-%d %H:%M} UTC"))
        codes = approval.context.get("codes")
        if approval.context.get("codes_unreadable"):
            last = "Last codes: could not be read from ERM."
        elif codes:
            last = "Last codes: " + "; ".join(str(c) for c in codes)
        else:
            last = "Last codes: none."
        return Reply(
            title=f"{head}: {approval.what} for {approval.item_label}",
            lines=(last,),
            fields=tuple(fields),
            notes=(
                f"Or type /approvals approve {approval.id} or /approvals deny {approval.id} REASON",
            ),
            buttons=(
                Button("Approve", "approve", approval.id, "primary"),
                Button("Deny", "deny", f"ask:{approval.id}", "danger"),
            ),
            visibility=Visibility.PUBLIC,
            tone=Tone.WARNING if reminder else Tone.INFO,
        )

    def final_card(self, approval: Approval) -> Reply:
        """The card once decided: who decided what, when; no buttons, never a code."""
        at = f"{approval.decided_at:%H:%M} UTC" if approval.decided_at else "?"
        by = approval.decided_by_name or approval.decided_by or "?"
        requester = approval.requester.label
        lines: list[str]
        tone = Tone.OK
        if approval.status is Status.APPROVED:
            title = "Approved"
            lines = [f"Approved by {by} at {at}."]
            if approval.result is None:
                lines.append("Issuing the code…")
            elif approval.result == ISSUED:
                if approval.delivered_at is not None:
                    lines.append(f"The code was sent privately to {requester}.")
                else:
                    lines.append(f"The code was issued; {requester} can see it with /resend.")
            else:
                lines.append(f"The code was not issued: {approval.result}")
                tone = Tone.WARNING
        elif approval.status is Status.DENIED:
            title = "Denied"
            lines = [f"Denied by {by} at {at}.", f"Reason: {approval.reason or 'none given'}."]
            tone = Tone.INFO
        elif approval.status is Status.CANCELLED:
            title = "Cancelled"
            lines = [f"Cancelled by {requester} at {at}. Nothing was issued."]
            tone = Tone.INFO
        elif approval.status is Status.EXPIRED:
            title = "Expired"
            lines = [f"No decision by {approval.expires_at:%H:%M} UTC. Nothing was issued."]
            tone = Tone.INFO
        else:
            return self.card(approval)
        return Reply(
            title=f"{title}: {approval.what} for {approval.item_label}",
            lines=tuple(lines),
            fields=(
                Field("Request", approval.id),
                Field("Requested by", _who(approval.requester)),
            ),
            visibility=Visibility.PUBLIC,
            tone=tone,
        )

    async def deny_prompt(self, approval: Approval) -> Reply:
        """The card after Deny: deny without a reason, or go back; a reason is typed."""
        reply = Reply(
            title=f"Deny {approval.what} for {approval.item_label}?",
            lines=(f"To give a reason, type: /approvals deny {approval.id} REASON",),
            fields=(
                Field("Request", approval.id),
                Field("Requested by", _who(approval.requester)),
            ),
            buttons=(
                Button("Deny without reason", "deny", f"now:{approval.id}", "danger"),
                Button("Back", "deny", f"back:{approval.id}"),
            ),
            visibility=Visibility.PUBLIC,
            tone=Tone.WARNING,
        )
        return await self._stored_buttons(reply)

    async def pending_card(self, approval: Approval) -> Reply:
        """The pending card with fresh buttons (for "Back"), or the final card when decided."""
        if approval.status is not Status.PENDING:
            return self.final_card(approval)
        return await self._stored_buttons(self.card(approval))

    async def _update_cards(self, approval: Approval) -> None:
        for card in await self.store.cards(approval.id):
            if card.message_ref is not None and card.settled_at is None:
                await self._settle(approval, card)

    async def _settle(self, approval: Approval, card: Card) -> bool:
        notifier = self.core.notifiers.get(card.platform)
        if notifier is None or card.message_ref is None:
            return False
        try:
            await notifier.update_card(card.chat_id, card.message_ref, self.final_card(approval))
        except Exception as exc:
            log.warning(
                "approval %s: card in %s %s not updated: %s",
                approval.id,
                card.platform,
                card.chat_id,
                exc if isinstance(exc, NotifyError) else type(exc).__name__,
            )
            return False
        await self.store.settle_card(card.id, now=self._now())
        return True

    # -- deciding -------------------------------------------------------------------------------

    async def load(self, approval_id: str) -> Approval:
        approval = await self.store.get(normalise_id(approval_id))
        if approval is None:
            raise ApprovalRefusedError(
                f"No approval request {approval_id[:16]!r}. /approvals lists the pending ones."
            )
        return approval

    async def check_decider(self, identity: Identity, approval: Approval, chat_id: str) -> None:
        """Refuse (privately, changing nothing) who may not decide, or when it is too late."""
        if approval.status is not Status.PENDING or approval.expires_at <= self._now():
            raise await self._too_late(approval)
        if identity.key == approval.requester.key:
            await self._audit(approval, "refused", "self-approval", actor=identity, chat_id=chat_id)
            raise ApprovalRefusedError(
                "You asked for this yourself: another supervisor or admin must decide it."
            )
        roles = await self.core.permissions.roles(identity)
        role = roles.get(approval.distributor)
        if role is None or role < _APPROVER:
            await self._audit(
                approval, "refused", "approver without the role", actor=identity, chat_id=chat_id
            )
            yours = f"you are {role.label}" if role else "you have no role there"
            raise ApprovalRefusedError(
                f"Only a supervisor or admin of {approval.distributor} can decide this; {yours}."
            )

    async def _too_late(self, approval: Approval) -> ApprovalRefusedError:
        """Why a request can no longer be decided (expiring it first when its time is up)."""
        now = self._now()
        if approval.status is Status.PENDING and approval.expires_at <= now:
            await self._expire(approval.id, now)
            approval = await self.load(approval.id)
        at = f"{approval.decided_at:%H:%M} UTC" if approval.decided_at else "?"
        by = approval.decided_by_name or approval.decided_by or "?"
        if approval.status is Status.EXPIRED:
            text = f"Request {approval.id} expired at {approval.expires_at:%H:%M} UTC."
        elif approval.status is Status.CANCELLED:
            text = f"Request {approval.id} was cancelled by {by} at {at}."
        else:
            text = f"Already {approval.status.value} by {by} at {at}."
        return ApprovalRefusedError(text)

    async def approve(self, identity: Identity, approval_id: str, *, chat_id: str = "") -> str:
        """Approve, issue the code once, send it to the requester privately; a short outcome."""
        approval = await self.load(approval_id)
        await self.check_decider(identity, approval, chat_id)
        if not await self.store.decide(approval.id, Status.APPROVED, by=identity, now=self._now()):
            raise await self._too_late(await self.load(approval.id))
        approval = await self.load(approval.id)
        self._observe(approval)
        await self._audit(
            approval, "decided", f"approved by {identity.key}", actor=identity, chat_id=chat_id
        )
        reply = await self._execute(approval)
        issued = bool(reply.codes)
        result = ISSUED if issued else _first_line(reply.title or "not issued")
        await self.store.record_execution(approval.id, result, now=self._now())
        await self._audit(approval, "executed", result)
        delivered = await self._send_private(
            approval,
            replace(
                reply,
                notes=(*reply.notes, f"Approved by {identity.label} (request {approval.id})."),
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
        who = approval.requester.label
        if not issued:
            return f"Approved {approval.id}, but the code was not issued: {result}"
        if delivered:
            return f"Approved {approval.id}: the code was sent privately to {who}."
        return (
            f"Approved {approval.id}: the code was issued, but {who} could not be reached "
            f"privately; they can see it with /resend {approval.item_label}."
        )

    async def _execute(self, approval: Approval) -> Reply:
        """Run the stored request once, as its requester (request key ``approval:<id>``)."""
        if self._run is None:
            raise RuntimeError("the approval service is not bound to a dispatcher")
        request = Request(
            identity=approval.requester,
            text=f"{approval.command_text} --dist {approval.distributor}",
            request_key=f"approval:{approval.id}",
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
        approval = await self.load(approval_id)
        await self.check_decider(identity, approval, chat_id)
        cleaned = " ".join((reason or "").split())[:MAX_REASON] or None
        if not await self.store.decide(
            approval.id, Status.DENIED, by=identity, reason=cleaned, now=self._now()
        ):
            raise await self._too_late(await self.load(approval.id))
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
                    f"{identity.label}.",
                    f"Reason: {cleaned}" if cleaned else "No reason was given.",
                ),
                notes=("Nothing was issued.",),
                tone=Tone.WARNING,
            ),
        )
        await self._update_cards(approval)
        whom = approval.requester.label
        return f"Denied {approval.id}." + (f" {whom} was told." if told else "")

    async def cancel(self, identity: Identity, approval_id: str, *, chat_id: str = "") -> str:
        approval = await self.load(approval_id)
        if identity.key != approval.requester.key:
            raise ApprovalRefusedError("Only the person who asked for it can cancel a request.")
        if approval.status is not Status.PENDING or not await self.store.cancel(
            approval.id, identity, now=self._now()
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
        """Expire, remind, post missing cards, finish stale cards; safe in several processes."""
        expired = reminded = posted = settled = 0
        expired_ids, remind_ids = await self.store.due(now=now)
        for approval_id in expired_ids:
            if await self._guarded(self._expire(approval_id, now)):
                expired += 1
        for approval_id in remind_ids:
            if await self._guarded(self._remind(approval_id, now)):
                reminded += 1
        for approval, channel in await self.store.missing_cards(now=now):
            if await self._guarded(self._post(approval, channel, CARD)):
                posted += 1
        for card in await self.store.unsettled(now=now):
            decided = await self.store.get(card.approval_id)
            if decided is not None and await self._guarded(self._settle(decided, card)):
                settled += 1
        return SweepReport(expired, reminded, posted, settled)

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

    async def _send_private(self, approval: Approval, reply: Reply) -> bool:
        notifier = self.core.notifiers.get(approval.requester.platform)
        if notifier is None:
            return False
        try:
            await notifier.send_private(approval.requester.user_id, reply)
        except Exception as exc:
            log.warning(
                "approval %s: requester not reached privately: %s",
                approval.id,
                exc if isinstance(exc, NotifyError) else type(exc).__name__,
            )
            return False
        return True

    async def _audit(
        self,
        approval: Approval,
        outcome: str,
        detail: str,
        *,
        actor: Identity | None = None,
        chat_id: str = "",
    ) -> None:
        who = actor or SYSTEM
        entry = AuditEntry(
            at=self._now(),
            platform=who.platform,
            chat_id=chat_id or None,
            user_id=who.user_id,
            user_name=who.name,
            command="approval",
            arguments=f"{approval.what} {approval.item_label}",
            outcome=outcome,
            detail=detail,
            distributor=approval.distributor,
            item_id=approval.item_id,
            approval_id=approval.id,
            request_key=approval.request_key,
        )
        try:
            await self.core.audit.append(entry)
        except Exception:
            log.exception("audit append failed", extra={"approval_id": approval.id})


ISSUED = "code issued"


def _who(identity: Identity) -> str:
    return f"{identity.name} ({identity.key})" if identity.name else identity.key


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0][:200]


def _pending_reply(approval: Approval, *, posted: int | None, again: bool) -> Reply:
    title = (
        f"Already waiting for approval: {approval.id}"
        if again
        else f"Pending approval {approval.id}"
    )
    notes = []
    if posted == 0:
        notes.append(
            "No approval channel got it yet: a supervisor sees it with /approvals "
            "(or sets a channel with /approvals here)."
        )
    notes.append(f"Changed your mind? /approvals cancel {approval.id}")
    return Reply(
        title=title,
        lines=(
            f"Your {approval.what} for {approval.item_label} needs a supervisor's approval "
            f"({approval.needs}).",
            "Nothing has been issued yet. Once approved, the code comes to you in a private "
            "message.",
        ),
        fields=(
            Field("Request", approval.id),
            Field("Expires", f"{approval.expires_at:%Y-%m-%d %H:%M} UTC"),
        ),
        notes=tuple(notes),
        tone=Tone.INFO,
        confidential=True,  # Telegram groups: to the requester's private chat, like a code
    )


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
    approval = await service.load(approval_id)
    if step == "back":
        return Pressed(card=await service.pending_card(approval))
    await service.check_decider(click.identity, approval, click.chat_id)
    return Pressed(card=await service.deny_prompt(approval))
