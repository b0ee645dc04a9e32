"""Guided codes: ``/code`` alone offers recent items, ``/code ITEM`` the codes for one.

A field agent on a cheap phone taps instead of typing: ``/code`` lists the items they were last
issued codes for, a tap on one offers its common codes (7 and 30 days, its last count, free,
reset), and a tap on one of those asks for it as if typed. Nothing here makes a code: every
button runs the whole ``/code ...`` command, with its checks, quotas and approvals.
"""

from __future__ import annotations

from bot.core import Context
from bot.errors import UsageError
from bot.messages import Action, Button, Reply, Style, Tone, plural
from bot.registry import Extra, ItemRef, Kind, command
from bot.roles import Role
from erm.errors import InvalidInputError
from erm.inputs import check_item_ref

COMMON_DAYS = (7, 30)
RECENT_ITEMS = 5


@command("code", role=Role.AGENT, example="/code TEST2503000017", kind=Kind.LOOKUP)
async def code_menu(ctx: Context, item: ItemRef | None = None, rest: Extra | None = None) -> Reply:
    """Pick a code (days, free, reset) with buttons; alone, your recent items first."""
    if rest is not None:
        raise UsageError(_which_code(item or "", rest, ctx.dist_option))
    if item is None:
        return await _recent(ctx)
    found = await ctx.erm.resolve_item(ctx.distributor, item)
    ctx.item_id = found.id
    ref, dist = found.oem_item_id, ctx.dist_option
    last = await ctx.core.codes.last_days(ctx.distributor, found.id)
    counts = [*COMMON_DAYS, *([last] if last and last not in COMMON_DAYS else [])]
    buttons = [
        Button(
            plural(days, "day") + (" (last)" if days == last else ""),
            Action.RUN,
            f"/code days {ref} {days}{dist}",
            Style.PRIMARY if days == (last or 30) else Style.DEFAULT,
        )
        for days in counts
    ]
    if ctx.core.approvals is not None or (ctx.access.role or Role.AGENT) >= Role.SUPERVISOR:
        buttons.append(Button("Free", Action.RUN, f"/code free {ref}{dist}"))
        buttons.append(Button("Reset", Action.RUN, f"/code reset {ref}{dist}", Style.DANGER))
    return Reply(
        title=f"Which code for {found.label}?",
        notes=(f"Or type: /code days {ref} 30{dist}",),
        buttons=tuple(buttons),
    )


async def _recent(ctx: Context) -> Reply:
    """The items this person was issued codes for most recently, one button each."""
    identity, dist = ctx.request.identity, ctx.dist_option
    recent = await ctx.core.codes.recent_items(
        ctx.distributor, identity.platform, identity.user_id, limit=RECENT_ITEMS
    )
    if not recent:
        return Reply(
            title="Which item?",
            lines=(
                f"Type: /code ITEM{dist}",
                f"Find an item: /items PART-OF-ID{dist}",
            ),
            tone=Tone.INFO,
        )
    buttons = []
    for item_id, label in recent:
        ref = _typed_ref(item_id, label)
        buttons.append(Button(label.split(" ", 1)[0], Action.RUN, f"/code {ref}{dist}"))
    return Reply(
        title="Which item? Your recent ones:",
        notes=(f"Another: /code ITEM{dist}",),
        buttons=tuple(buttons),
    )


def _typed_ref(item_id: str, label: str) -> str:
    """What to type for a recorded item: its OEM id (the label's first word), else its ERM id."""
    try:
        return check_item_ref(label.split(" ", 1)[0])
    except InvalidInputError:
        return item_id


def _which_code(item: str, rest: str, dist: str) -> str:
    """``/code ITEM 30`` says no code type: refused with the command it most likely means."""
    first = rest.split()[0].lower()
    if first in {"free", "reset"}:
        return f"Say which code first. Type:\n/code {first} {item}{dist}"
    return f"Say which code first. For days, type:\n/code days {item} {rest}{dist}"
