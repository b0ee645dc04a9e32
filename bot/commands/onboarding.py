"""Onboarding without typing ids: an admin makes a one-time invite, the new user redeems it."""

from __future__ import annotations

from datetime import timedelta

from bot.commands.admin import _admin_distributor
from bot.context import Field, Reply, Tone
from bot.dispatch import Context
from bot.errors import UsageError
from bot.registry import Word, command
from bot.roles import Role


@command(
    "invite",
    role=Role.ADMIN,
    example="/invite agent acme",
    per_distributor=False,
    kind="admin",
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
    return Reply(
        title=f"Invite: {wanted.label} at {target}",
        fields=(
            Field("Invite code", code),
            Field("Valid until", f"{made.expires_at:%Y-%m-%d %H:%M} UTC"),
        ),
        lines=tuple(lines),
        confidential=True,
    )


@command(
    "start",
    role=Role.VIEWER,
    example="/start K7QX2MBD9R",
    per_distributor=False,
    kind="meta",
    anyone=True,
)
async def start(ctx: Context, code: Word | None = None) -> Reply:
    """Start using erm-bot; with an invite code, join with the role it grants."""
    identity = ctx.request.identity
    if code is None:
        if ctx.access.roles:
            roles = ", ".join(f"{r.label} at {d}" for d, r in sorted(ctx.access.roles.items()))
            return Reply(title=f"Welcome back. You are {roles}.", lines=("/help lists commands.",))
        return Reply(
            title="Welcome to erm-bot.",
            lines=(
                "You have no access yet. Ask your distributor's erm-bot admin for an invite "
                "and send it here as /start CODE.",
                f"Your id, if they ask: {identity.key}",
            ),
            tone=Tone.INFO,
        )
    redeemed = await ctx.core.invites.redeem(code, by=identity.key, now=ctx.now())
    if redeemed is None:
        raise UsageError(
            "That invite code is unknown, used already or expired. Ask your admin for a new one."
        )
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
    if identity.name:
        await ctx.core.grants.set_display_name(identity.platform, identity.user_id, identity.name)
    return Reply(
        title=f"Welcome! You are now {redeemed.role.label} at {redeemed.distributor}.",
        lines=("/help lists what you can do.",),
    )
