"""Administration: grants, the user list, the audit trail, and a user's default distributor."""

from __future__ import annotations

from dataclasses import replace

from bot.core import Context
from bot.errors import PermissionDeniedError, UsageError
from bot.messages import Reply, Tone
from bot.registry import Count, Kind, Param, Word, command
from bot.roles import Role

AUDIT_COUNT = 10  # rows /audit shows unless told a count


def _user(text: str) -> tuple[str, str]:
    platform, sep, user_id = text.partition(":")
    if not sep or not platform or not user_id:
        raise UsageError(
            f"Name the user as platform:id, as /whoami shows it (not {text[:30]!r}).\n"
            "They can see theirs with /whoami."
        )
    return platform.lower(), user_id


async def _admin_distributor(ctx: Context, distributor: str | None) -> str:
    """The distributor an admin command acts on, and the caller must be its admin: the one named
    (as an argument or with --dist), else the default set with /use, else the only one the caller
    administers. It goes on the audit row too, so that /audit shows it to that distributor."""
    admin_of = sorted(d for d, r in ctx.access.roles.items() if r >= Role.ADMIN)
    name, why = await _named_distributor(ctx, distributor)
    if name is None:
        if len(admin_of) != 1:
            raise UsageError(
                f"Name the distributor (you are admin of {', '.join(admin_of) or 'none'}): "
                "add it, or --dist NAME, or set a default with /use NAME.",
                ctx.command.usage,
                ctx.command.example,
            )
        name = admin_of[0]
    if name not in admin_of:
        mine = f" You are admin of {', '.join(admin_of)}: name it instead." if admin_of else ""
        raise PermissionDeniedError(
            f"You are not an admin of distributor {name!r}{why}.{mine}",
            missing_role=Role.ADMIN.label,
            distributor=name,
        )
    ctx.access = replace(ctx.access, distributor=name)
    return name


async def _named_distributor(ctx: Context, distributor: str | None) -> tuple[str | None, str]:
    """The distributor the caller named, or chose with /use (and how), as the dispatcher chooses
    one for per-distributor commands: these take it as an argument too, so they choose here."""
    flag = ctx.flags.get("dist")
    named = {n.lower() for n in (distributor, flag if isinstance(flag, str) else None) if n}
    if len(named) > 1:
        raise UsageError(
            f"Two distributors named ({' and '.join(sorted(named))}): name one.",
            ctx.command.usage,
            ctx.command.example,
        )
    if named:
        return named.pop(), ""
    if len(ctx.access.roles) < 2:
        return None, ""  # a default only picks among several distributors
    identity = ctx.request.identity
    default = await ctx.core.grants.default_distributor(identity.platform, identity.user_id)
    if default not in ctx.access.roles:
        return None, ""
    return default, " (your default, set with /use)"


@command(
    "grant",
    role=Role.ADMIN,
    example="/grant <id-from-whoami> agent acme",
    flags=("dist",),
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
    flags=("dist",),
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
async def audit(ctx: Context, subject: Word | None = None, count: Count | None = None) -> Reply:
    """Recent audit entries, optionally for one item or one user (platform:id)."""
    if subject is not None and count is None and _count_like(subject):
        # "/audit 30": a count, not an item called 30 (an item id that short is typed with
        # a count after it: /audit 30 10).
        count = _param(ctx, "count").convert(subject, ctx.command)
        subject = None
    count = count or AUDIT_COUNT
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


def _count_like(word: str) -> bool:
    """A word meant as a count: a number of up to 3 digits (no item id is that short; a count
    over the limit is refused with the limit). Digits of any script, so that one typed in
    another script is told to use 0-9 rather than looked up as an item."""
    return word.isdigit() and len(word) <= 3


def _param(ctx: Context, name: str) -> Param:
    return next(p for p in ctx.command.params if p.name == name)


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
