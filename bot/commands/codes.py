"""Unlock codes: days, free and reset codes, and showing the last one again."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from bot.audit import AuditEntry
from bot.context import Code, Field, Reply, Tone
from bot.dispatch import STORAGE_ERRORS, Context
from bot.errors import PermissionDeniedError
from bot.refusals import explain_code_refusal
from bot.registry import Days, ItemRef, Text, command
from bot.roles import Role
from bot.store import IssuedCodeRecord, ItemLock, RecentQuery
from erm.errors import ErmRejectedError
from erm.models import CodeType, IssuedCode, Item, keypad_format
from erm.reconcile import CodeOutcomePendingError, Settlement, Verdict

log = logging.getLogger(__name__)

LOCK_TTL = 120.0

_WHAT = {
    CodeType.DAYS: "adds days of use",
    CodeType.FREE: "unlocks the device for good",
    CodeType.RESET: "returns the device to the locked state",
}


@command(
    "code",
    "days",
    role=Role.AGENT,
    example="/code days TEST2503000017 30 cash 500",
    flags=("again",),
    kind="code",
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
    kind="code",
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
    kind="code",
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
    ago = _ago(ctx.now(), last.issued_at)
    return _code_reply(
        f"Last code for {found.label}, issued {ago} by {last.issued_by_name}",
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
    # Renewed while held; a dead holder's lock expires LOCK_TTL seconds after its last renewal.
    async with codes.item_lock(
        distributor, item.id, request.request_key, ttl=LOCK_TTL, wait=30, recent=recent
    ) as lock:
        if lock.recent is not None:
            already = lock.recent
            ctx.erm_code = already.code_hex or None
            ctx.detail = f"already issued at {already.issued_at:%H:%M}; not generated again"
            return _code_reply(
                f"Already issued {_ago(ctx.now(), already.issued_at)} by {already.issued_by_name}",
                already,
                item,
                notes=("Same item, same code: add --again to generate a new one.",),
                tone=Tone.INFO,
            )
        try:
            issued = await ctx.erm.generate_code(
                distributor,
                code_type,
                item.id,
                days=days,
                note=note,
                reference=_reference(request.request_key),
            )
        except CodeOutcomePendingError as exc:
            # ERM may hold a code: the item stays locked while its history is watched, and the
            # outcome reaches the requester privately when it is known.
            codes.keep(lock)
            ctx.core.background.start(_settle_later(ctx, lock, exc, note), f"settle {item.id}")
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
        except ErmRejectedError as exc:
            ctx.detail = f"refused by ERM: {exc.erm_message}"
            raise await explain_code_refusal(
                ctx.erm, distributor, item, code_type, days, exc, ctx.now()
            ) from exc
        return await _deliver(ctx, issued, note, lock)


async def _deliver(ctx: Context, issued: IssuedCode, note: str | None, lock: ItemLock) -> Reply:
    """Record a code ERM made (giving the item lock back) and show it."""
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
    try:
        await ctx.core.codes.record_issue(record, release=lock)  # and give the lock back
    except STORAGE_ERRORS:
        # ERM made the code: the user must get it even when it cannot be recorded here.
        log.exception("an issued code could not be recorded", extra={"item": item.id})
        recorded = False
    else:
        recorded = True
    ctx.erm_code = issued.code_hex or None
    ctx.detail = f"{code_type.value} {days} days issued" if days else f"{code_type.value} issued"
    notes = [f"It {_WHAT[code_type]}. Type it on the device keypad."]
    if issued.likely:
        ctx.detail += " (likely: found in history without its reference)"
        notes.append(
            "ERM's answer was lost. ERM's history shows this code, made just after the request, "
            "most likely for it; check /history if in doubt."
        )
    elif issued.reconciled:
        notes.append("ERM's answer was lost; this code was found in the item's history.")
    if not recorded:
        ctx.detail += " (not recorded: database unavailable)"
        notes.append("erm-bot could not record it: /resend will not show it, /history will.")
    return _code_reply(_title(code_type, days, item), record, item, notes=tuple(notes))


async def _settle_later(
    ctx: Context, lock: ItemLock, pending: CodeOutcomePendingError, note: str | None
) -> None:
    """Watch the history until the outcome is known, then tell the requester and audit it."""
    core = ctx.core
    async with core.codes.holding(lock, ttl=LOCK_TTL):
        settled = await core.erm.settle(pending.pending)
        if settled.code is not None:
            reply = await _deliver(ctx, settled.code, note, lock)
            outcome = "ok"
        else:
            reply, outcome = _unsettled(settled), "uncertain"
            if settled.verdict is Verdict.NONE:
                outcome = "not_issued"
            ctx.detail = f"settled: {settled.verdict.value}"
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
    notifier = core.notifiers.get(request.identity.platform)
    if notifier is None:
        log.warning("no way to tell the requester how a code request settled")
        return
    try:
        await notifier.send_private(request.identity.user_id, reply)
    except Exception:
        log.exception("could not tell the requester how a code request settled")


def _unsettled(settled: Settlement) -> Reply:
    """What to say when the history shows no code for the request (yet)."""
    item = settled.pending.item
    if settled.verdict is Verdict.NONE:
        return Reply(
            title=f"No code was made for {item.label}.",
            lines=(
                "ERM never confirmed it, and its history shows no new code since.",
                "It is safe to ask again.",
            ),
            tone=Tone.WARNING,
        )
    if settled.verdict is Verdict.CHANGED and settled.other is not None:
        when = settled.other.created_at
        seen = f"a different code at {when:%H:%M} UTC" if when else "a different code"
        first = f"ERM's history shows {seen}, none like yours."
    else:
        first = "ERM's history could not be read to check."
    return Reply(
        title=f"ERM never confirmed your code for {item.label}.",
        lines=(first, f"Check /history {item.oem_item_id} before asking again."),
        tone=Tone.WARNING,
    )


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


def _title(code_type: CodeType, days: int | None, item: Item) -> str:
    if code_type is CodeType.DAYS:
        return f"{days}-day code for {item.label}"
    return f"{code_type.name.capitalize()} code for {item.label}"


def _code_reply(
    title: str,
    record: IssuedCodeRecord,
    item: Item,
    *,
    notes: tuple[str, ...] = (),
    tone: Tone = Tone.OK,
) -> Reply:
    fields = [Field("Item", item.label)]
    if item.client_name or record.client_name:
        fields.append(Field("Client", item.client_name or record.client_name or ""))
    kind = CodeType(record.code_type)
    fields.append(
        Field("Code", f"{record.days} days" if kind is CodeType.DAYS else kind.name.lower())
    )
    if record.note:
        fields.append(Field("Note", record.note))
    return Reply(
        title=title,
        codes=(Code(keypad_format(record.code_dec), record.code_dec),),
        fields=tuple(fields),
        notes=notes,
        tone=tone,
    )


def _reference(request_key: str) -> str:
    """A short, stable reference for ERM's description, derived from the request key."""
    return hashlib.sha256(request_key.encode()).hexdigest()[:8]


def _ago(now: datetime, then: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    if seconds < 86400:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''} ago"
    return f"on {then:%Y-%m-%d %H:%M} UTC"
