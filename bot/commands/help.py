"""Help and identity: what you may run, and who the bot thinks you are."""

from __future__ import annotations

from bot.core import Context
from bot.errors import UnknownCommandError
from bot.messages import Field, Reply
from bot.registry import Command, Kind, Text, command
from bot.roles import Role


def _allowed(ctx: Context, candidate: Command) -> bool:
    top = max(ctx.access.roles.values(), default=None)
    return top is not None and top >= candidate.role


@command("help", role=Role.VIEWER, example="/help code", per_distributor=False, kind=Kind.META)
async def help_(ctx: Context, topic: Text | None = None) -> Reply:
    """The commands you may run; /help NAME explains one."""
    mine = [c for c in ctx.core.commands if _allowed(ctx, c)]
    if topic:
        wanted = topic.lstrip("/").lower().split()
        matches = [c for c in mine if list(c.path[: len(wanted)]) == wanted]
        if not matches:
            raise UnknownCommandError(f"No command /{' '.join(wanted)[:30]} that you may run.")
        lines: list[str] = []
        for c in matches:
            lines += [f"{c.usage}", f"  {c.help}", f"  e.g. {c.example}"]
        return Reply(title=f"/{' '.join(wanted)}", lines=tuple(lines))
    return Reply(
        title="Commands you may run",
        lines=tuple(f"{c.usage} — {c.help}" for c in mine),
        notes=(
            "<item> is the OEM item id on the device (or seller id, or ERM id).",
            "Several distributors? Add --dist NAME or set one with /use NAME.",
        ),
    )


@command("whoami", role=Role.VIEWER, example="/whoami", per_distributor=False, kind=Kind.META)
async def whoami(ctx: Context) -> Reply:
    """Your identity, roles, distributors and linked chat apps."""
    identity = ctx.request.identity
    default = await ctx.core.grants.default_distributor(identity.platform, identity.user_id)
    roles = ", ".join(f"{r.label} at {d}" for d, r in sorted(ctx.access.roles.items())) or "none"
    fields = [Field("You", identity.key), Field("Roles", roles)]
    if identity.name:
        fields.insert(1, Field("Name", identity.name))
    others = [k for k in await ctx.core.people.identities(ctx.person) if k != identity.key]
    if others:  # one person: roles above are theirs together (see bot.people)
        fields.append(Field("Linked with", ", ".join(others)))
    if default:
        fields.append(Field("Default distributor", default))
    if ctx.access.bootstrap_admin:
        fields.append(Field("Bootstrap admin", "yes (ERM_BOT_ADMINS)"))
    # Roles and ids tell a group who can make codes: only the asker sees them.
    return Reply(title="Who you are to erm-bot", fields=tuple(fields), confidential=True)
