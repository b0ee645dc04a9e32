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


LINE = 34  # characters of a line of the command list: a narrow phone screen


@command("help", role=Role.VIEWER, example="/help code", per_distributor=False, kind=Kind.META)
async def help_(ctx: Context, topic: Text | None = None) -> Reply:
    """The commands you may run; /help NAME explains one."""
    mine = [c for c in ctx.core.commands if _allowed(ctx, c)]
    if topic:
        return _explain(mine, topic)
    return Reply(
        title="Your commands (/help NAME explains one)",
        lines=_listed(mine),
        notes=(
            "ITEM: the id on the device.",
            "Several distributors? Add --dist NAME.",
        ),
    )


def _explain(mine: list[Command], topic: str) -> Reply:
    """Each command under ``topic`` with what it takes, what it does and an example."""
    wanted = topic.lstrip("/").lower().split()
    matches = _under(mine, wanted)
    if not matches and wanted and wanted[-1].endswith("s"):  # /help codes
        wanted = [*wanted[:-1], wanted[-1][:-1]]
        matches = _under(mine, wanted)
    if not matches:
        raise UnknownCommandError(f"No command /{' '.join(wanted)[:30]} that you may run.")
    lines: list[str] = []
    for c in matches:
        lines += [f"{c.usage}", f"  {c.help}", f"  e.g. {c.example}"]
    return Reply(title=f"/{' '.join(wanted)}", lines=tuple(lines))


def _under(mine: list[Command], wanted: list[str]) -> list[Command]:
    return [c for c in mine if list(c.path[: len(wanted)]) == wanted]


def _listed(mine: list[Command]) -> tuple[str, ...]:
    """The commands by name, those sharing a first word as one (``/code days|free|reset``), a
    few to a line: the whole list fits a phone screen; /help NAME gives the rest."""
    groups: dict[str, list[str]] = {}
    bare: set[str] = set()  # first words that are a command by themselves too (/approvals)
    for c in mine:
        groups.setdefault(c.path[0], []).extend(c.path[1:2])
        if len(c.path) == 1:
            bare.add(c.path[0])
    names = []
    for first, rest in groups.items():
        subs = "|".join(rest)
        names.append(
            f"/{first}" + ("" if not rest else f" [{subs}]" if first in bare else f" {subs}")
        )
    lines: list[str] = []
    for name in names:
        if lines and len(lines[-1]) + 3 + len(name) <= LINE:
            lines[-1] += f" · {name}"
        else:
            lines.append(name)
    return tuple(lines)


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
