"""Unlock codes: days, free and reset codes, and showing the last one again."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from sqlalchemy import Connection

from bot.audit import AuditEntry
from bot.code_replies import WHAT, ago, code_command, code_reply, code_title, unsettled
from bot.core import Context, Finishing, Shortfall
from bot.errors import BusyError, PermissionDeniedError
from bot.intents import Intent, IntentState
from bot.messages import Reply, Tone
from bot.recovery import LOCK_TTL, recover, tell
from bot.refusals import explain_code_refusal
from bot.registry import Days, ItemRef, Kind, Text, command
from bot.replies import STORAGE_ERRORS
from bot.roles import Role
from bot.storage.code_records import IssuedCodeRecord, RecentQuery
from bot.storage.locks import ItemLock
from erm.errors import ErmError, ErmRejectedError
from erm.models import CodeType, IssuedCode, Item
from erm.reconcile import CodeOutcomePendingError, Verdict

log = logging.getLogger(__name__)

NOT_RECORDED = Shortfall(
    note="erm-bot could not record it: /resend will not show it, /history will.",
    detail="not recorded: database unavailable",
)


@command(
    "code",
    "days",
    role=Role.AGENT,
    example="/code days TEST2503000017 30 cash 500",
    flags=("again",),
    kind=Kind.CODE,
)
async def code_days(ctx: Context, item: ItemRef, days: Days, note: Text | None = None) -> Reply:
    """Generate a days code: adds days of use to a device."""
    return await issue(ctx, CodeType.DAYS, item, days, note)


@command(
    "code",
    "free",
    role=Role.AGENT,  # agents' free codes go to a supervisor for approval
    example="/code free TEST2503000017 plan paid off",
    flags=("again",),
    kind=Kind.CODE,
)
async def code_free(ctx: Context, item: ItemRef, note: Text | None = None) -> Reply:
    """Generate a free code: unlocks a device for good (agents: once a supervisor approves)."""
    return await issue(ctx, CodeType.FREE, item, None, note)


@command(
    "code",
    "reset",
    role=Role.AGENT,  # agents' reset codes go to a supervisor for approval
    example="/code reset TEST2503000017 repossessed",
    flags=("again",),
    kind=Kind.CODE,
)
async def code_reset(ctx: Context, item: ItemRef, note: Text | None = None) -> Reply:
    """Generate a reset code: locks a device again (agents: once a supervisor approves)."""
    return await issue(ctx, CodeType.RESET, item, None, note)


@command("resend", role=Role.AGENT, example="/resend TEST2503000017")
async def resend(ctx: Context, item: ItemRef) -> Reply:
    """Show again the last code this bot issued for an item (never makes a new one)."""
    found = await ctx.erm.resolve_item(ctx.distributor, item)
    ctx.item_id = found.id
    last = await ctx.core.codes.last_issue(ctx.distributor, found.id)
    if last is None:
        return Reply(
            title=f"erm-bot has issued no code for {found.label} yet.",
            notes=(f"See every code ERM made for it with /history {found.oem_item_id}",),
            tone=Tone.INFO,
        )
    when = ago(ctx.now(), last.issued_at)
    return code_reply(
        f"Last code for {found.label}, issued {when} by {last.issued_by_name}",
        last,
        found,
        notes=("No new code was made.",),
    )


async def issue(
    ctx: Context, code_type: CodeType, item_ref: str, days: int | None, note: str | None
) -> Reply:
    """Issue one code, unless the same code was issued moments ago (then show that one)."""
    distributor = ctx.distributor
    approvals = ctx.core.approvals
    if approvals is None and code_type is not CodeType.DAYS:
        _supervisors_only(ctx, code_type)
    item = await ctx.erm.resolve_item(distributor, item_ref)
    ctx.item_id = item.id
    if approvals is not None:
        pending = await approvals.gate(ctx, code_type, item, days, note)
        if pending is not None:
            return pending  # stored for approval (the requester was told privately)
    codes = ctx.core.codes
    request = ctx.request
    window = timedelta(minutes=ctx.core.limits.duplicate_window_minutes)
    # The duplicate check is read in the transaction that takes the item's lock.
    recent = (
        None
        if ctx.flags.get("again")
        else RecentQuery(code_type.value, days, since=ctx.now() - window)
    )
    intent = _intent(ctx, code_type, item, days, note)
    intents = ctx.core.intents
    # Renewed while held; a dead holder's lock expires LOCK_TTL seconds after its last renewal.
    # The intent is stored in the transaction that takes the lock (unless a duplicate was found),
    # committed before the mutation is sent: if this process dies, the next holder of the lock
    # (or the recovery sweep) finds it and reconciles it against ERM's history.
    async with codes.item_lock(
        distributor,
        item.id,
        request.request_key,
        ttl=LOCK_TTL,
        wait=30,
        recent=recent,
        also=lambda connection: intents.begin_in(connection, intent),
    ) as lock:
        if lock.recent is not None:
            return _already(ctx, lock.recent, item)
        assert isinstance(lock.also, Intent | list)
        begun = await _begin(ctx, intent, lock.also, item, recent)
        if isinstance(begun, Reply):
            return begun
        intent = begun
        try:
            issued = await ctx.erm.generate_code(
                distributor,
                code_type,
                item.id,
                days=days,
                note=note,
                reference=intent.reference,
            )
        except CodeOutcomePendingError as exc:
            # ERM may hold a code: the item stays locked while its history is watched, and the
            # outcome reaches the requester privately when it is known.
            codes.keep(lock)
            ctx.core.background.start(
                _settle_later(ctx, lock, exc, note, intent), f"settle {item.id}"
            )
            ctx.detail = f"{code_type.value} outcome unknown ({exc.reason}); settling"
            ctx.outcome = "pending"
            return Reply(
                title="ERM has not confirmed the code yet.",
                lines=(
                    "Do not ask again: you will get the code or a clear answer here.",
                    f"{item.label} stays locked meanwhile.",
                ),
                tone=Tone.WARNING,
            )
        except ErmError as exc:
            # Any other ERM error means nothing was made (erm.errors): the request is over.
            await _close(ctx, intent, IntentState.REFUSED, lock)
            if isinstance(exc, ErmRejectedError):
                ctx.detail = f"refused by ERM: {exc.erm_message}"
                raise await explain_code_refusal(
                    ctx.erm, distributor, item, code_type, days, exc, ctx.now()
                ) from exc
            raise
        return await _deliver(ctx, issued, note, lock, intent, later=True)


def _intent(
    ctx: Context, code_type: CodeType, item: Item, days: int | None, note: str | None
) -> Intent:
    """What this request is about to ask ERM for, stored (open) before it asks."""
    request = ctx.request
    return Intent(
        distributor=ctx.distributor,
        item_id=item.id,
        oem_item_id=item.oem_item_id,
        item_label=item.label,
        code_type=code_type.value,
        days=days,
        note=note,
        reference=_reference(request.request_key),
        request_key=request.request_key,
        approval_id=request.approval_id,
        command=ctx.command.name,
        requester_platform=request.identity.platform,
        requester_user=request.identity.user_id,
        requester_name=request.identity.label,
        chat_id=request.chat_id,
        notify_user=request.identity.user_id,
        started_at=ctx.now(),
    )


async def _begin(
    ctx: Context,
    intent: Intent,
    begun: Intent | list[Intent],
    item: Item,
    recent: RecentQuery | None,
) -> Intent | Reply:
    """The stored intent; or first settle the open ones a dead holder of the lock left (``begun``
    is what storing it with the lock found), then store it.

    Such a request may have made a code: it is recorded for its requester, who is told. If it is
    the code this request asks for, that code is shown instead of making a second one; if the
    history cannot say yet, this request is refused rather than risk a second code.
    """
    core = ctx.core
    code_type, days = CodeType(intent.code_type), intent.days
    # Stored again after settling orphans (three tries in all); none can appear while we hold
    # the lock.
    for attempt in range(3):
        if isinstance(begun, Intent):
            return begun
        same: IssuedCodeRecord | None = None
        for orphan in begun:
            done = await recover(core, orphan, item=item, patience=core.erm.config.reconcile_quick)
            if not done.final:
                ctx.detail = "an earlier request for the item is not settled; refused"
                raise BusyError(
                    f"An earlier request for {item.label} may have made a code; "
                    "ERM's history cannot tell yet.\n"
                    f"Try again in a minute: {code_command(code_type, item, days)}"
                )
            record = done.record
            if (
                record is not None
                and recent is not None
                and record.code_type == recent.code_type
                and record.days == recent.days
                and record.issued_at >= recent.since
            ):
                same = record
        if same is not None:
            return _already(ctx, same, item)
        if attempt < 2:
            begun = await core.intents.begin(intent)
    raise BusyError("This item's code requests are busy. Wait a moment, then check /resend.")


def _already(ctx: Context, already: IssuedCodeRecord, item: Item) -> Reply:
    """The duplicate answer: the same code was issued moments ago, shown again."""
    ctx.erm_code = already.code_dec or None  # the audit keeps its fingerprint
    ctx.detail = f"already issued at {already.issued_at:%H:%M}; not generated again"
    return code_reply(
        f"Already issued {ago(ctx.now(), already.issued_at)} by {already.issued_by_name}",
        already,
        item,
        notes=("Same item, same code: add --again to generate a new one.",),
        tone=Tone.INFO,
    )


async def _close(ctx: Context, intent: Intent, state: IntentState, lock: ItemLock) -> None:
    """Close the intent with its outcome and give the item lock back, in one transaction."""
    try:
        await ctx.core.intents.close(
            intent, state, now=ctx.now(), codes=ctx.core.codes, release=lock
        )
    except STORAGE_ERRORS:
        # Left open, the intent is reconciled by the next holder of the lock: nothing is lost.
        log.warning("a code intent could not be closed", extra={"item": intent.item_id})


async def _deliver(
    ctx: Context,
    issued: IssuedCode,
    note: str | None,
    lock: ItemLock,
    intent: Intent,
    *,
    later: bool = False,
) -> Reply:
    """Record a code ERM made (giving the item lock back) and show it; ``later``: recorded by
    the dispatcher with the reply (``Context.finishing``), the lock held until then."""
    request, item, code_type, days = ctx.request, issued.item, issued.code_type, issued.days
    record = IssuedCodeRecord(
        distributor=ctx.distributor,
        item_id=item.id,
        item_label=item.label,
        client_name=item.client_name,
        code_type=code_type.value,
        days=days,
        code_dec=issued.code_dec,
        code_hex=issued.code_hex,
        issued_by_platform=request.identity.platform,
        issued_by_user=request.identity.user_id,
        issued_by_name=request.identity.label,
        request_key=request.request_key,
        note=note,
        reconciled=issued.reconciled,
        issued_at=ctx.now(),
        approval_id=request.approval_id,
    )
    settled = IntentState.OK if issued.reconciled else IntentState.DELIVERED
    intents, codes, now = ctx.core.intents, ctx.core.codes, ctx.now()

    def close(connection: Connection) -> bool:
        return intents.close_in(connection, intent, settled, now=now)

    async def alone() -> Shortfall | None:
        try:
            await codes.record_issue(record, release=lock, also=close)
        except STORAGE_ERRORS:
            # ERM made the code: the user must get it even when it cannot be recorded here.
            log.exception("an issued code could not be recorded", extra={"item": item.id})
            await _close(ctx, intent, settled, lock)
            return NOT_RECORDED
        return None

    # Recorded, the intent closed and the lock given back in one commit: the lock is never free
    # while the intent looks unfinished, and a crash before it leaves all three for a recovery,
    # which finds the code in ERM's history by its reference.
    recorded = True
    if later:
        # In the transaction that stores the reply and the audit row: one commit, not two.
        codes.keep(lock)
        values = codes.record_values(record)
        ctx.finishing.append(
            Finishing(lambda c: codes.record_in(c, values, release=lock, also=close), alone)
        )
    else:
        recorded = await alone() is None
    ctx.erm_code = issued.code_dec or None  # the audit keeps its fingerprint
    ctx.detail = f"{code_type.value} {days} days issued" if days else f"{code_type.value} issued"
    notes = [f"It {WHAT[code_type]}. Type it on the device keypad."]
    if issued.likely:
        ctx.detail += " (likely: found in history without its reference)"
        notes.append(
            "ERM's answer was lost. ERM's history shows this code, made just after the request, "
            "most likely for it; check /history if in doubt."
        )
    elif issued.reconciled:
        notes.append("ERM's answer was lost; this code was found in the item's history.")
    if not recorded:
        ctx.detail += f" ({NOT_RECORDED.detail})"
        notes.append(NOT_RECORDED.note)
    return code_reply(code_title(code_type, days, item), record, item, notes=tuple(notes))


async def _settle_later(
    ctx: Context,
    lock: ItemLock,
    pending: CodeOutcomePendingError,
    note: str | None,
    intent: Intent,
) -> None:
    """Watch the history until the outcome is known, then tell the requester and audit it."""
    core = ctx.core
    async with core.codes.holding(lock, ttl=LOCK_TTL):
        settled = await core.erm.settle(pending.pending)
        if settled.code is not None:
            reply = await _deliver(ctx, settled.code, note, lock, intent)
            outcome = "ok"
        else:
            reply, outcome = unsettled(settled), "uncertain"
            if settled.verdict is Verdict.NONE:
                outcome = "not_issued"
            ctx.detail = f"settled: {settled.verdict.value}"
            await _close(ctx, intent, IntentState(outcome), lock)
    request = ctx.request
    try:
        await core.audit.append(
            AuditEntry(
                at=ctx.now(),
                platform=request.identity.platform,
                chat_id=request.chat_id,
                user_id=request.identity.user_id,
                user_name=request.identity.name,
                command=ctx.command.name,
                outcome=outcome,
                detail=ctx.detail[:300],
                distributor=ctx.distributor,
                item_id=ctx.item_id,
                erm_code_event=ctx.erm_code,
                approval_id=request.approval_id,
                request_key=request.request_key,
            )
        )
    except Exception:
        log.exception("audit of a settled code failed", extra={"item": ctx.item_id})
    await tell(core, request.identity.platform, request.identity.user_id, reply)


def _supervisors_only(ctx: Context, code_type: CodeType) -> None:
    """Without an approval flow, free and reset codes are for supervisors and admins."""
    role = ctx.access.role
    if role is None or role < Role.SUPERVISOR:
        yours = role.label if role else "no role"
        raise PermissionDeniedError(
            f"/code {code_type.name.lower()} needs the supervisor role at {ctx.distributor}; "
            f"you are {yours}.",
            missing_role=Role.SUPERVISOR.label,
            distributor=ctx.distributor,
        )


def _reference(request_key: str) -> str:
    """A short, stable reference for ERM's description, derived from the request key."""
    return hashlib.sha256(request_key.encode()).hexdigest()[:8]
