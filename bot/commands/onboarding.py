"""Onboarding without typing ids: an admin makes a one-time invite, the new user redeems it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bot.commands.admin import _admin_distributor
from bot.core import Context
from bot.errors import RateLimitedError, UsageError, UserError
from bot.messages import Field, Identity, Reply, Tone
from bot.registry import Kind, Secret, Word, command
from bot.roles import Role

STALE_INVITE = "This invite is no longer valid. Ask an admin for a new one."


@command(
    "invite",
    role=Role.ADMIN,
    example="/invite agent acme",
    flags=("dist",),
    per_distributor=False,
    kind=Kind.ADMIN,
)
async def invite(ctx: Context, role: Word, distributor: Word | None = None) -> Reply:
    """A one-time invite code that grants a role at a distributor (valid 24 hours)."""
    try:
        wanted = Role.parse(role)
    except ValueError as exc:
        raise UsageError(str(exc), ctx.command.usage, ctx.command.example) from None
    target = await _admin_distributor(ctx, distributor)
    hours = ctx.core.limits.invite_hours
    code, made = await ctx.core.invites.create(
        wanted,
        target,
        created_by=ctx.request.identity.key,
        now=ctx.now(),
        ttl=timedelta(hours=hours),
    )
    ctx.detail = f"invite for {wanted.label} at {target}"
    lines = [f"Send this to the new {wanted.label}. It works once, for {hours} hours."]
    lines += [
        f"{platform.capitalize()}: {template.format(code=code)}"
        for platform, template in sorted(ctx.core.deep_links.items())
    ]
    lines.append(f"Or send the bot: /start {code}")
    until = f"{made.expires_at:%Y-%m-%d %H:%M} UTC"
    # The code is shown once: the reply stored for a retried request (kept 24 hours) says an
    # invite was made, without it. A retry makes no second invite and shows no code.
    again = Reply(
        title=f"Invite: {wanted.label} at {target}, valid until {until}",
        lines=(
            "Its code was shown once, in the first answer, and is not kept.",
            f"Lost it? Make a new one: /invite {wanted.label} {target}",
        ),
        tone=Tone.INFO,
        confidential=True,
    )
    return Reply(
        title=f"Invite: {wanted.label} at {target}",
        fields=(Field("Invite code", code), Field("Valid until", until)),
        lines=tuple(lines),
        confidential=True,
        replay=again,
    )


@command(
    "start",
    role=Role.VIEWER,
    example="/start K7QX2MBD9R",
    per_distributor=False,
    kind=Kind.META,
    anyone=True,
)
async def start(ctx: Context, code: Secret | None = None) -> Reply:
    """Start using erm-bot; with an invite code, join with the role it grants."""
    identity = ctx.request.identity
    if code is None:
        if ctx.access.roles:
            roles = ", ".join(f"{r.label} at {d}" for d, r in sorted(ctx.access.roles.items()))
            return Reply(
                title=f"Welcome back. You are {roles}.",
                lines=("/help lists commands.",),
                confidential=True,  # roles, like /whoami
            )
        return Reply(
            title="Welcome to erm-bot.",
            lines=(
                "You have no access yet. Ask your distributor's erm-bot admin for an invite "
                "and send it here as /start CODE.",
                f"Your id, if they ask: {identity.key}",
            ),
            tone=Tone.INFO,
        )
    await _count_attempt(ctx)
    unknown = "That invite code is unknown, used already or expired. Ask your admin for a new one."
    invite = await ctx.core.invites.find(code, now=ctx.now())
    if invite is None:
        raise UsageError(unknown)
    # The audit row is the invite's distributor's: its admins see who used their invite.
    ctx.access = replace(ctx.access, distributor=invite.distributor)
    if not await _still_admin(ctx, invite.created_by, invite.distributor):
        # Its admin lost the role (or the distributor) since: what they handed out goes too.
        ctx.detail = f"invite by {invite.created_by} no longer valid"
        raise UsageError(STALE_INVITE)
    redeemed = await ctx.core.invites.redeem(
        code, by=identity.key, now=ctx.now(), created_by=invite.created_by
    )
    if redeemed is None:
        raise UsageError(unknown)
    current = ctx.access.roles.get(redeemed.distributor)
    ctx.detail = f"joined as {redeemed.role.label} at {redeemed.distributor}"
    if current is not None and current >= redeemed.role:
        return Reply(
            title=f"You are already {current.label} at {redeemed.distributor}.",
            tone=Tone.INFO,
        )
    await ctx.core.grants.grant(
        identity.platform,
        identity.user_id,
        redeemed.role,
        redeemed.distributor,
        f"invite by {redeemed.created_by}",
    )
    ctx.audit_always = True  # a grant: audited even though its sender was a stranger
    if identity.name:
        await ctx.core.grants.set_display_name(identity.platform, identity.user_id, identity.name)
    return Reply(
        title=f"Welcome! You are now {redeemed.role.label} at {redeemed.distributor}.",
        lines=("/help lists what you can do.",),
        # Not confidential: the invite is used up by now, so a group must not be told to send
        # the command again in a private chat.
    )


async def _still_admin(ctx: Context, created_by: str, distributor: str) -> bool:
    """Whether the invite's maker (``platform:user_id``) is still an admin of ``distributor``
    (granted, or a bootstrap admin)."""
    platform, sep, user_id = created_by.partition(":")
    if not sep:
        return False
    try:
        roles = await ctx.core.permissions.roles(Identity(platform, user_id))
    except UserError:  # a maker on a platform erm-bot no longer serves
        return False
    role = roles.get(distributor)
    return role is not None and role >= Role.ADMIN


async def _count_attempt(ctx: Context) -> None:
    """Count an invite code tried by this identity: guessing codes must be slow (each refusal
    is told when to try again)."""
    limit = ctx.core.limits.invite_attempts_per_user_hour
    key = ctx.request.identity.key
    decision = await ctx.core.rate.hit("invites:user", key, limit, 3600, now=ctx.now())
    if not decision.allowed:
        wait = max(1, round(decision.retry_after / 60))
        raise RateLimitedError(
            f"Too many invite codes tried: {limit} an hour.\n"
            f"Try again in {wait} min: /start CODE, with the code exactly as your admin sent it.",
            decision.retry_after,
        )
