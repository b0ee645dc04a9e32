"""Read-only lookups: code history, fleets, items and asset accounts."""

from __future__ import annotations

import shlex

from bot.core import Context
from bot.errors import UsageError
from bot.masking import masked_code, sees_codes
from bot.messages import Action, Button, Field, Reply, Tone
from bot.registry import Count, ItemRef, Text, command, number
from bot.roles import Role
from erm.inputs import MAX_HISTORY
from erm.models import AssetAccount, CodeEvent, CodeType, FleetPolicy, Item, ItemFleet, Page
from erm.search import SEARCH_MATCHES

ITEMS_PAGE = 10
MAX_PAGE = 50
FLEET_ITEMS_SHOWN = 15
FLEETS_SHOWN = 30


@command("history", role=Role.VIEWER, example="/history TEST2503000017 10", flags=("page",))
async def history(ctx: Context, item: ItemRef, count: Count = 5) -> Reply:
    """The newest code events of an item, count a page (default 5; 50 events at most)."""
    page = _page_flag(ctx, MAX_HISTORY // count)
    wanted = min(MAX_HISTORY, count * page + 1)  # one more shows whether a next page exists
    found, events = await ctx.erm.code_history(ctx.distributor, item, wanted)
    ctx.item_id = found.id
    client = f" ({found.client_name})" if found.client_name else ""
    shown = events[count * (page - 1) : count * page]
    if not shown:
        what = "No codes yet" if page == 1 else f"No codes on page {page}"
        return Reply(title=f"{what} for {found.label}{client}.", tone=Tone.INFO)
    notes = ["Newest first. Times in UTC."]
    whole = sees_codes(ctx.access.role)
    if not whole:
        notes.append("Codes are masked for viewers; an agent or supervisor sees them whole.")
    buttons: tuple[Button, ...] = ()
    if len(events) > count * page:
        next_command = f"/history {_word(item)} {count} --page {page + 1}{ctx.dist_option}"
        notes.append(f"Older: {next_command}")
        buttons = (Button("Older", Action.RUN, next_command),)
    first = count * (page - 1) + 1
    span = f"{first}-{first + len(shown) - 1}" if page > 1 else f"Last {len(shown)}"
    return Reply(
        title=f"{span} code{'s' if len(shown) != 1 else ''} of {found.label}{client}",
        lines=tuple(_event_line(e, whole=whole) for e in shown),
        notes=tuple(notes),
        buttons=buttons,
        monospace=tuple(e.keypad for e in shown if e.code_dec) if whole else (),
        confidential=True,  # past codes are codes too: never shown to a group
    )


def _event_line(event: CodeEvent, *, whole: bool) -> str:
    when = f"{event.created_at:%Y-%m-%d %H:%M}" if event.created_at else "?"
    # By type: migrated free and reset events carry the ACP jumps (1096, 2192) as codeDays.
    if event.code_type is CodeType.DAYS:
        kind = f"{event.code_days}d"
    else:
        kind = event.code_type.name.lower() if event.code_type else "?"
    if not event.code_dec:
        code = "(no code kept)"
    else:
        code = event.keypad if whole else masked_code(event.code_dec)
    return f"{when}  {kind:<6} {code}"


@command("fleet", role=Role.VIEWER, example="/fleet Nairobi")
async def fleet(ctx: Context, name: Text | None = None) -> Reply:
    """The distributor's item fleets; with (part of) a name, that fleet's items and code policy."""
    if name is None:
        return await _fleets(ctx)
    matches = await ctx.erm.fleets_named(ctx.distributor, name)
    if not matches:
        return Reply(
            title=f"No fleet of {ctx.distributor} has {name!r} in its name.",
            lines=(f"All fleets: /fleet{ctx.dist_option}",),
            tone=Tone.WARNING,
        )
    if len(matches) > 1:
        return _several_fleets(ctx, name, matches)
    found = await ctx.erm.fleet_by_id(ctx.distributor, matches[0].id)
    shown = [i.label for i in found.items[:FLEET_ITEMS_SHOWN]]
    more = len(found.items) - len(shown)
    lines = [
        f"Items ({len(found.items)}): " + ", ".join(shown) + (f" and {more} more" if more else "")
    ]
    return Reply(
        title=f"Fleet {found.name}",
        lines=tuple(lines),
        fields=_policy_fields(found.policy),
        notes=(found.description,) if found.description else (),
    )


async def _fleets(ctx: Context) -> Reply:
    fleets = await ctx.erm.item_fleets(ctx.distributor)
    if not fleets:
        return Reply(title=f"{ctx.distributor} has no item fleets.", tone=Tone.INFO)
    shown_fleets = fleets[:FLEETS_SHOWN]
    notes = [f"Details: /fleet NAME{ctx.dist_option} (part of the name will do)"]
    if len(fleets) > len(shown_fleets):
        notes.insert(0, f"{len(fleets) - len(shown_fleets)} more not shown.")
    return Reply(
        title=f"Item fleets of {ctx.distributor} ({len(fleets)})",
        lines=tuple(f"{f.name}: {_policy_summary(f.policy)}" for f in shown_fleets),
        notes=tuple(notes),
    )


def _several_fleets(ctx: Context, name: str, matches: list[ItemFleet]) -> Reply:
    shown = matches[:FLEETS_SHOWN]
    names = [f.name.casefold() for f in matches]
    # Two fleets of one name are told apart by their ERM id.
    lines = tuple(
        f"/fleet {_fleet_name(f.name) if names.count(f.name.casefold()) == 1 else f.id}"
        f"{ctx.dist_option}"
        for f in shown
    )
    notes = (f"{len(matches) - len(shown)} more not shown.",) if len(matches) > len(shown) else ()
    return Reply(
        title=f"{len(matches)} fleets have {name!r} in their name. Type one of:",
        lines=lines,
        notes=notes,
        tone=Tone.INFO,
    )


def _fleet_name(name: str) -> str:
    """A fleet's name as typed after /fleet: in double quotes when it has spaces."""
    if shlex.quote(name) == name:
        return name
    return f'"{name}"' if not any(c in name for c in '"\\') else shlex.quote(name)


def _word(text: str) -> str:
    """``text`` as one argument of a command to type: quoted only when it has to be."""
    return shlex.quote(text)


def _policy_summary(policy: FleetPolicy) -> str:
    # Worded as in the detail (_policy_fields): a rule ERM leaves out or switches off (its
    # disable... flag, erm-api.md §3 and §8) is no limit, never "off" (free codes forbidden).
    return (
        f"free codes {_limit(policy.free_codes)}, reset codes {_limit(policy.reset_codes)}, "
        f"interval {_interval(policy.interval_ms)}"
    )


def _interval(ms: int | None) -> str:
    if ms is None:
        return "none"
    seconds = ms // 1000
    return f"{seconds // 60} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds} s"


def _limit(value: int | None, unit: str = "") -> str:
    return "no limit" if value is None else f"{value}{unit}"


def _policy_fields(policy: FleetPolicy) -> tuple[Field, ...]:
    return (
        Field("Free codes per item", _limit(policy.free_codes)),
        Field("Reset codes per item", _limit(policy.reset_codes)),
        Field("Interval between codes", _interval(policy.interval_ms)),
        Field("Codes per item per day", _limit(policy.day_code_limit)),
        Field("Codes per item in total", _limit(policy.total_code_limit)),
        Field("Max days of credit stacked", _limit(policy.max_credit_stack_days, " days")),
    )


@command("items", role=Role.VIEWER, example="/items SHSA --page 2", flags=("page",))
async def items(ctx: Context, search: Text | None = None) -> Reply:
    """The distributor's items, 10 a page; a search finds item ids, client names and phones."""
    if search is not None:
        return await _found_items(ctx, search)
    page_number = _page_flag(ctx)
    # ERM cursors are opaque: page N takes N calls, so it costs N lookups (one counted already).
    await ctx.charge_lookups(page_number - 1)
    page: Page[Item] = await ctx.erm.client_items(ctx.distributor, page_size=ITEMS_PAGE)
    for _ in range(page_number - 1):  # walk to the wanted page
        if not page.has_next:
            break
        page = await ctx.erm.client_items(
            ctx.distributor, after=page.end_cursor, page_size=ITEMS_PAGE
        )
    if not page.nodes:
        return Reply(title="No items.", tone=Tone.INFO)
    total = page.total or len(page.nodes)
    pages = max(1, -(-total // ITEMS_PAGE))
    notes = [f"Page {page_number} of {pages} ({total} items)."]
    more = page.has_next and page_number < MAX_PAGE
    return _items_reply(ctx, None, page.nodes, page_number, notes, more=more)


async def _found_items(ctx: Context, search: str) -> Reply:
    """Matches by item id and by client name or phone: two ERM lists read whole (one page of
    each, bounded), then paged here, so every page costs the same two lookups."""
    page_number = _page_flag(ctx)
    await ctx.charge_lookups(1)  # the dispatcher counted the first list
    found = await ctx.erm.find_items(ctx.distributor, search, limit=SEARCH_MATCHES)
    total = len(found.items)
    if not total:
        return Reply(
            title=f"No item or client matches {search!r}.",
            lines=(
                "Search by part of an item id, a client's name or phone number.",
                f"All items: /items{ctx.dist_option}",
            ),
            tone=Tone.INFO,
        )
    pages = -(-total // ITEMS_PAGE)
    if page_number > pages:
        return Reply(
            title=f"{total} items match {search!r}: {pages} page{'s' if pages > 1 else ''}.",
            lines=(f"First page: /items {_word(search)}{ctx.dist_option}",),
            tone=Tone.INFO,
        )
    shown = found.items[ITEMS_PAGE * (page_number - 1) : ITEMS_PAGE * page_number]
    notes = [f"Page {page_number} of {pages} ({total} items), by item id."]
    if not found.complete:
        notes.append(f"Only the first {SEARCH_MATCHES} matches of each kind: narrow the search.")
    return _items_reply(ctx, search, shown, page_number, notes, more=page_number < pages)


def _items_reply(
    ctx: Context,
    search: str | None,
    shown: tuple[Item, ...],
    page_number: int,
    notes: list[str],
    *,
    more: bool,
) -> Reply:
    lines = []
    for item in shown:
        extra = [x for x in (item.client_name, item.fleet.name if item.fleet else None) if x]
        lines.append(item.label + (" — " + ", ".join(extra) if extra else ""))
    buttons: tuple[Button, ...] = ()
    if more:
        # The exact command to type: the same search, the same distributor, the next page.
        words = f"{_word(search)} " if search else ""
        next_command = f"/items {words}--page {page_number + 1}{ctx.dist_option}"
        notes.append(f"Next page: {next_command}")
        buttons = (Button("Next page", Action.RUN, next_command),)
    return Reply(
        title=f"Items of {ctx.distributor}" + (f" matching {search!r}" if search else ""),
        lines=tuple(lines),
        notes=tuple(notes),
        buttons=buttons,
        confidential=True,  # who owns which device: a client's name is not for a group
    )


def _page_flag(ctx: Context, last: int = MAX_PAGE) -> int:
    raw = ctx.flags.get("page", "1")
    text = raw if isinstance(raw, str) else "1"
    try:
        return number(text, "--page", 1, last)
    except ValueError as exc:
        raise UsageError(f"{exc}.", ctx.command.usage) from None


@command("account", role=Role.VIEWER, example="/account TEST2503000017")
async def account(ctx: Context, item: ItemRef) -> Reply:
    """An item's asset account: stage, balance, status, pay plan and last payments."""
    found = await ctx.erm.asset_account(ctx.distributor, item)
    ctx.item_id = found.item.id
    return Reply(
        title=f"Account of {found.item.label}",
        fields=_account_fields(found),
        lines=tuple(
            f"Paid {p.amount:,.0f} {found.currency or ''} on {p.at:%Y-%m-%d}".replace("  ", " ")
            for p in found.payments[:3]
            if p.at
        ),
        notes=(f"Account id {found.id}",),
        confidential=True,  # a client's name, phone and balance: never shown to a group
    )


def _account_fields(found: AssetAccount) -> tuple[Field, ...]:
    fields = []
    if found.client_name:
        client = found.client_name + (f", {found.client_phone}" if found.client_phone else "")
        fields.append(Field("Client", client))
    if found.stage:
        fields.append(Field("Stage", found.stage.label))
    if found.status:
        fields.append(Field("Status", found.status.lower()))
    if found.balance is not None:
        fields.append(Field("Balance", f"{found.balance:,.2f} {found.currency or ''}".strip()))
    if found.pay_plan and found.pay_plan.name:
        fields.append(Field("Pay plan", found.pay_plan.name))
    return tuple(fields)
