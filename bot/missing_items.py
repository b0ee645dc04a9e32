"""An item that is not where the person looked: which distributor was searched, how to find it,
and the exact command when it belongs to another of the person's distributors.

Agents who serve two distributors type an item id under the wrong one more than any other
mistake; saying "no such item" alone sends them to a supervisor. The other distributors are
asked only after a miss, a few at most, and a failure there only makes the answer plainer.
"""

from __future__ import annotations

import asyncio
import logging
import re

from bot.core import Context
from bot.errors import UserError
from bot.parse import normalise
from erm.errors import ErmError, ItemNotFoundError
from erm.models import ERM_ID_PATTERN

log = logging.getLogger(__name__)
OTHERS_ASKED = 3  # distributors tried after a miss: each costs an ERM lookup or two
PATIENCE = 5.0  # seconds for all of them together
_DIST = re.compile(r"\s--dist(?:=|\s+)\S+", re.IGNORECASE)


class MissingItemError(UserError):
    """No such item at the distributor; ``str()`` says where it was looked for and what next."""


async def explain_missing(
    ctx: Context, ref: str, exc: ItemNotFoundError
) -> UserError | ItemNotFoundError:
    """The refusal of an item ``ref`` not found at ``ctx.distributor``; ``exc`` itself when it
    cannot be explained better (the refusal must never fail)."""
    try:
        return await _explained(ctx, ref, exc)
    except Exception:
        log.warning("an unknown item could not be explained further", exc_info=True)
        return exc


async def _explained(ctx: Context, ref: str, exc: ItemNotFoundError) -> UserError:
    here = ctx.distributor
    if "several" in str(exc):  # ambiguous, not missing: ERM's own words say what to type
        return MissingItemError(f"At {here}, {exc}.")
    erm_id = bool(ERM_ID_PATTERN.match(ref))
    lines = [f"No item {'with ERM id ' if erm_id else ''}{ref} at {here}."]
    elsewhere = await _elsewhere(ctx, ref)
    if elsewhere is not None:
        lines.append(f"It is at {elsewhere}. Type:")
        lines.append(_with_dist(ctx.request.text, elsewhere))
    elif erm_id:  # a database id: no part of it finds anything, the id on the device does
        lines.append(f"Find it by the id on the device: /items PART-OF-ID{ctx.dist_option}")
    else:
        part = ref[:8] if len(ref) > 8 else ref[: max(len(ref) - 2, 3)]
        lines.append(f"Find it by part of its id: /items {part}{ctx.dist_option}")
    return MissingItemError("\n".join(lines))


async def _elsewhere(ctx: Context, ref: str) -> str | None:
    """Another of the person's distributors that has the item, if one of the first few does."""
    others = sorted(d for d in ctx.access.roles if d != ctx.distributor)[:OTHERS_ASKED]
    if not others:
        return None

    async def has(distributor: str) -> str | None:
        try:
            await ctx.erm.resolve_item(distributor, ref)
        except ErmError:
            return None
        return distributor

    try:
        async with asyncio.timeout(PATIENCE):
            found = await asyncio.gather(*(has(d) for d in others))
    except TimeoutError:
        log.info("looking for a missing item at other distributors took too long")
        return None
    return next((d for d in found if d is not None), None)


def _with_dist(text: str, distributor: str) -> str:
    """The command as typed, aimed at ``distributor``."""
    command = _DIST.sub("", " " + normalise(text)).strip()
    return f"{command} --dist {distributor}"
