"""Administration: grants, the user list, the audit trail, and a user's default distributor."""

from __future__ import annotations

from bot.core import Context
from bot.errors import PermissionDeniedError, UsageError
from bot.messages import Reply, Tone
from bot.registry import Count, Kind, Word, command
from bot.roles import Role


def _user(text: str) -> tuple[str, str]:
    platform, sep, user_id = text.partition(":")
    if not sep or not platform or not user_id:
        raise UsageError(
            f"Name the user as platform:id, as /whoami shows it (not {text[:30]!r}).\n"
            "They can see theirs with /whoami."
        )
    return platform.lower(), user_id


async def _admin_distributor(ctx: Context, distributor: str | None) -> str:
    """The distributor an admin command acts on; the caller must be its admin."""
    admin_of = sorted(d for d, r in ctx.access.roles.items() if r >= Role.ADMIN)
    if distributor is None:
        if len(admin_of) == 1:
            return admin_of[0]
        raise UsageError(
            f"Name the distributor (you are admin of {', '.join(admin_of) or 'none'}).",
            ctx.command.usage,
            ctx.command.example,
        )
    name = distributor.lower()
    if name not in admin_of:
        raise PermissionDeniedError(
            f"You are not an admin of distributor {name!r}.",
            missing_role=Role.ADMIN.label,
            distributor=name,
        )
    return name


@command(
    "grant",
    role=Role.ADMIN,
    example="/grant <id-from-whoami> agent acme",
    per_distributor=False,
    kind=Kind.ADMIN,
)
async def grant(ctx: Context, user: Word, role: Word, distributor: Word | None = None) -> Reply:
    """Give a user a role (viewer, agent, supervisor, admin) at a distributor."""
    platform, user_id = _user(user)
    # A grant to an id that cannot exist on its platform is a typo nobody can use. (Revoking
    # stays possible for any id: grants made before this check must be removable.)
    ctx.core.permissions.check_user_id(platform, user_id)
    try:
        wanted = Role.parse(role)
    except ValueError as exc:
        raise UsageError(str(exc), ctx.command.usage, ctx.command.example) from None
    target = await _admin_distributor(ctx, distributor)
    if target not in await ctx.core.erm.vault.names():
        raise UsageError(f"No distributor {target!r} is configured.")
    await ctx.core.grants.grant(platform, user_id, wanted, target, ctx.request.identity.key)
    ctx.detail = f"granted {wanted.label} at {target} to {platform}:{user_id}"
    return Reply(title=f"{platform}:{user_id} is now {wanted.label} at {target}.")


@command(
    "revoke",
    role=Role.ADMIN,
    example="/revoke <id-from-whoami> acme",
    per_distributor=False,
    kind=Kind.ADMIN,
)
async def revoke(ctx: Context, user: Word, distributor: Word | None = None) -> Reply:
    """Take away a user's role at a distributor."""
    platform, user_id = _user(user)
    target = await _admin_distributor(ctx, distributor)
    removed = await ctx.core.grants.revoke(platform, user_id, target)
    ctx.detail = f"revoked {platform}:{user_id} at {target}"
    if not removed:
        return Reply(title=f"{platform}:{user_id} had no role at {target}.", tone=Tone.INFO)
    return Reply(title=f"{platform}:{user_id} no longer has a role at {target}.")


@command("users", role=Role.ADMIN, example="/users", per_distributor=False, kind=Kind.ADMIN)
async def users(ctx: Context) -> Reply:
    """Everyone with a role at the distributors you administer."""
    admin_of = {d for d, r in ctx.access.roles.items() if r >= Role.ADMIN}
    grants = [g for g in await ctx.core.grants.users() if g.distributor in admin_of]
    if not grants:
        return Reply(title="No one has a role yet.", tone=Tone.INFO)
    lines = tuple(
        f"{g.platform}:{g.user_id} — {g.role.label} at {g.distributor}"
        for g in sorted(grants, key=lambda g: (g.distributor, -g.role, g.platform, g.user_id))
    )
    return Reply(title=f"Users ({len(grants)})", lines=lines, confidential=True)


@command("audit", role=Role.ADMIN, example="/audit TEST2503000017 20", kind=Kind.ADMIN)
async def audit(ctx: Context, subject: Word | None = None, count: Count = 10) -> Reply:
    """Recent audit entries, optionally for one item or one user (platform:id)."""
    item_id: str | None = None
    user: tuple[str, str] | None = None
    if subject and ":" in subject:
        user = _user(subject)
    elif subject:
        item_id = (await ctx.erm.resolve_item(ctx.distributor, subject)).id
        ctx.item_id = item_id
    records = await ctx.core.audit.recent(
        item_id=item_id, user=user, distributor=ctx.distributor, limit=count
    )
    if not records:
        return Reply(title="No audit entries match.", tone=Tone.INFO)
    lines = tuple(
        f"{r.at:%m-%d %H:%M} {r.platform}:{r.user_id} /{r.command} {r.arguments} → {r.outcome}"
        + (f" code {r.erm_code_event}" if r.erm_code_event else "")  # a fingerprint, never a code
        for r in records
    )
    return Reply(
        title=f"Audit of {ctx.distributor} ({len(records)} newest)", lines=lines, confidential=True
    )


@command("use", role=Role.VIEWER, example="/use acme", per_distributor=False, kind=Kind.META)
async def use(ctx: Context, distributor: Word) -> Reply:
    """Set the distributor your commands use when you work for several."""
    name = distributor.lower()
    if name not in ctx.access.roles:
        mine = ", ".join(sorted(ctx.access.roles)) or "none"
        raise UsageError(f"You have no role at {name!r} (yours: {mine}).")
    identity = ctx.request.identity
    await ctx.core.grants.set_default_distributor(identity.platform, identity.user_id, name)
    return Reply(title=f"Your commands now use {name} unless you add --dist NAME.")
