"""Approvals: where requests go, which codes need one, and deciding by text instead of buttons."""

from __future__ import annotations

from bot.approvals.cards import decider, who
from bot.approvals.policy import POLICY_USAGE, apply_setting
from bot.approvals.service import ApprovalService, service_of
from bot.core import Context
from bot.errors import PermissionDeniedError, UsageError
from bot.messages import Field, Reply, Tone, Visibility
from bot.registry import Kind, Text, Word, command
from bot.roles import Role
from bot.storage.approval_tables import Approval, Status, normalise_id


def _service(ctx: Context) -> ApprovalService:
    return service_of(ctx.core)


def _left(ctx: Context, approval: Approval) -> str:
    minutes = max(0, int((approval.expires_at - ctx.now()).total_seconds() // 60))
    return (
        f"{minutes // 60} h {minutes % 60:02d} min left" if minutes >= 60 else f"{minutes} min left"
    )


@command("approvals", role=Role.AGENT, example="/approvals", per_distributor=False, kind=Kind.META)
async def approvals(ctx: Context) -> Reply:
    """Requests waiting for your approval, and your own recent requests."""
    service = _service(ctx)
    mine_to_decide = sorted(d for d, r in ctx.access.roles.items() if r >= Role.SUPERVISOR)
    waiting = await service.store.pending(mine_to_decide, now=ctx.now())
    own = await service.store.requested_by(ctx.request.identity)
    lines: list[str] = []
    for a in waiting:
        lines.append(
            f"{a.id} — {a.what} for {a.item_label} — by {who(a.requester)} — {_left(ctx, a)}"
        )
    # Supervisors see when their approval chat cannot be reached: the requests they would miss.
    for chat in await service.unreachable(mine_to_decide):
        lines.append(
            f"Approval chat unreachable: {chat.platform} {chat.chat_id} ({chat.distributor}), "
            f"{chat.waiting} request(s) not shown there"
            + (f" — {chat.failure}" if chat.failure else "")
            + ". Add the bot back, or run /approvals here in another chat."
        )
    if own:
        lines.append("Your requests:")
        for a in own:
            state = a.status.value
            if a.status is Status.PENDING:
                state = f"pending, {_left(ctx, a)}"
            elif a.status in (Status.APPROVED, Status.DENIED) and a.decided_by:
                state += f" by {decider(a)}"
            if a.status is Status.DENIED:  # what to fix before asking again
                state += f" — reason: {a.reason}" if a.reason else " — no reason given"
            lines.append(f"{a.id} — {a.what} for {a.item_label} — {state}")
    notes: list[str] = []
    if waiting:
        notes.append("Decide: /approvals approve ID or /approvals deny ID REASON")
    if any(a.status is Status.PENDING for a in own):
        notes.append("Cancel yours: /approvals cancel ID")
    if mine_to_decide and not waiting:
        title = "No requests are waiting for your approval."
    elif mine_to_decide:
        title = f"Waiting for approval ({len(waiting)})"
    else:
        title = "Your approval requests" if own else "You have no approval requests."
    # Who asks for which code on which item is the team's business, not a group's.
    return Reply(
        title=title, lines=tuple(lines), notes=tuple(notes), tone=Tone.INFO, confidential=True
    )


@command(
    "approvals",
    "here",
    role=Role.SUPERVISOR,
    example="/approvals here",
    kind=Kind.ADMIN,
)
async def here(ctx: Context, off: Word | None = None) -> Reply:
    """Post your distributor's approval requests in this channel or group (off: stop)."""
    service = _service(ctx)
    request = ctx.request
    platform = request.identity.platform
    if off is not None and off.lower() != "off":
        raise UsageError(f"/approvals here takes nothing, or off (not {off[:20]!r}).")
    if request.private_chat or not request.chat_id:
        raise UsageError(
            "Run /approvals here in the team channel or group where "
            "supervisors should see approval requests, not in a private chat."
        )
    distributor = ctx.distributor
    if off is not None:
        removed = await service.store.remove_channel(distributor, platform, request.chat_id)
        ctx.detail = f"approval channel {platform} {request.chat_id} removed" if removed else ""
        if not removed:
            return Reply(title="This is not an approval channel.", tone=Tone.INFO)
        return Reply(
            title=f"This chat no longer gets {distributor}'s approval requests.",
            visibility=Visibility.PUBLIC,
        )
    before = await service.store.set_channel(
        distributor, platform, request.chat_id, by=request.identity.key, now=ctx.now()
    )
    ctx.detail = f"approval channel {platform} {request.chat_id}"
    lines = [
        "Requests that need approval (see /approvals policy) are posted here with Approve "
        "and Deny buttons. Codes are never posted here: they go to the requester privately."
    ]
    if before is not None and before.chat_id != request.chat_id:
        lines.append(f"This replaces the previous {platform} approval chat ({before.chat_id}).")
    return Reply(
        title=f"Approval requests of {distributor} come to this chat.",
        lines=tuple(lines),
        notes=("The bot must be a member of this chat to post here.",),
        visibility=Visibility.PUBLIC,
    )


@command(
    "approvals",
    "policy",
    role=Role.AGENT,
    example="/approvals policy",
    kind=Kind.ADMIN,
)
async def policy(ctx: Context, setting: Word | None = None, value: Text | None = None) -> Reply:
    """Which codes need approval; an admin changes one setting at a time."""
    service = _service(ctx)
    distributor = ctx.distributor
    current = await service.store.policy(distributor)
    title = f"Approval policy of {distributor}"
    if setting is not None:
        if (ctx.access.role or Role.VIEWER) < Role.ADMIN:
            raise PermissionDeniedError(
                f"Changing the approval policy needs the admin role at {distributor}.",
                missing_role=Role.ADMIN.label,
                distributor=distributor,
            )
        changed = apply_setting(current, setting, value)
        await service.store.set_policy(
            distributor, changed, by=ctx.request.identity.key, now=ctx.now()
        )
        ctx.detail = f"policy {setting.lower()} {(value or '').lower()}".strip()
        current, title = changed, f"Approval policy of {distributor} changed"
    channels = await service.store.channels(distributor)
    where = ", ".join(f"{c.platform} {c.chat_id}" for c in channels) or (
        "none yet (a supervisor runs /approvals here in a team chat)"
    )
    return Reply(
        title=title,
        fields=(*current.fields(), Field("Approval chats", where)),
        notes=(f"Admins change it: /approvals policy {POLICY_USAGE}",),
    )


@command(
    "approvals",
    "approve",
    role=Role.SUPERVISOR,
    example="/approvals approve A7K2Q9",
    per_distributor=False,
    kind=Kind.META,
)
async def approve(ctx: Context, request: Word) -> Reply:
    """Approve a request: its code is issued and sent privately to the requester."""
    ctx.approval_id = normalise_id(request)
    message = await _service(ctx).approve(
        ctx.request.identity, request, run=ctx.run, chat_id=ctx.request.chat_id
    )
    ctx.detail = message
    return Reply(title=message)


@command(
    "approvals",
    "deny",
    role=Role.SUPERVISOR,
    example="/approvals deny A7K2Q9 balance not paid",
    per_distributor=False,
    kind=Kind.META,
)
async def deny(ctx: Context, request: Word, reason: Text | None = None) -> Reply:
    """Deny a request, with an optional reason the requester is told."""
    ctx.approval_id = normalise_id(request)
    message = await _service(ctx).deny(
        ctx.request.identity, request, reason, chat_id=ctx.request.chat_id
    )
    ctx.detail = message
    return Reply(title=message)


@command(
    "approvals",
    "cancel",
    role=Role.AGENT,
    example="/approvals cancel A7K2Q9",
    per_distributor=False,
    kind=Kind.META,
)
async def cancel(ctx: Context, request: Word) -> Reply:
    """Cancel a request of yours that is still waiting for approval."""
    ctx.approval_id = normalise_id(request)
    message = await _service(ctx).cancel(ctx.request.identity, request, chat_id=ctx.request.chat_id)
    ctx.detail = message
    return Reply(title=message)
