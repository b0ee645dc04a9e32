"""One person, several chat apps: ``/link`` joins two identities, ``/unlink`` parts them.

Why a link code cannot be used to take someone's roles is in :mod:`bot.people`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.commands.admin import _user
from bot.core import Context
from bot.errors import PermissionDeniedError, RateLimitedError
from bot.messages import Field, Identity, Reply, Tone
from bot.people import LINK_TTL
from bot.ports import NotifyError
from bot.registry import Kind, Secret, Word, command
from bot.roles import Role

log = logging.getLogger(__name__)

LINK_MINUTES = int(LINK_TTL.total_seconds() // 60)


@command(
    "link",
    role=Role.VIEWER,
    example="/link K7QX2MBD9R",
    per_distributor=False,
    kind=Kind.META,
    anyone=True,
)
async def link(ctx: Context, code: Secret | None = None) -> Reply:
    """Link your chat apps: /link shows a code, /link CODE on your other app joins them."""
    if code is None:
        return await _make_code(ctx)
    await _count_attempt(ctx)
    identity = ctx.request.identity
    linked = await ctx.core.people.redeem(identity, code, now=ctx.now())
    ctx.audit_always = True  # a change of who may do what: audited even for a stranger
    ctx.detail = f"linked {linked.identity} to {linked.maker} (person {linked.person})"
    together = " and ".join(linked.identities)
    undo = f"Not you? Unlink it: /unlink {linked.identity} (you or an admin)."
    unreached = await _tell(
        ctx,
        [k for k in linked.identities if k != linked.identity],
        Reply(
            title=f"Linked: {together}",
            lines=(f"{linked.identity} used the link code you made.", undo),
            tone=Tone.WARNING,
            confidential=True,
        ),
    )
    lines = [
        f"You joined {linked.maker}: one person now, with the same roles, limits and approvals.",
        undo,
    ]
    lines += [f"{key} could not be told; tell them yourself." for key in unreached]
    return Reply(title=f"Linked: {together}", lines=tuple(lines), confidential=True)


async def _make_code(ctx: Context) -> Reply:
    code = await ctx.core.people.start_link(ctx.request.identity, now=ctx.now())
    ctx.detail = "link code made"  # never the code
    # Shown once: a retried request (its reply kept 24 hours) says a code was made, not which.
    again = Reply(
        title="Link code made",
        lines=(
            "Its code was shown once, in the first answer, and is not kept.",
            "Lost it? Make a new one: /link",
        ),
        tone=Tone.INFO,
        confidential=True,
    )
    return Reply(
        title="Link another chat app to this one",
        lines=(
            f"Send on your other chat app: /link {code}, valid {LINK_MINUTES} min.",
            "It works once. Give it to no one: it shares your roles.",
        ),
        fields=(Field("Link code", code),),
        confidential=True,
        replay=again,
    )


@command(
    "unlink",
    role=Role.VIEWER,
    example="/unlink <id-from-whoami>",
    per_distributor=False,
    kind=Kind.ADMIN,
    anyone=True,
)
async def unlink(ctx: Context, user: Word) -> Reply:
    """Unlink an identity from the others (one of yours, or as an admin)."""
    platform, user_id = _user(user)
    target = Identity(platform, user_id)
    me = ctx.request.identity
    if target.key not in await ctx.core.people.identities(ctx.person):
        await _check_admin_of(ctx, target)
    parted = await ctx.core.people.unlink(target, by=me.key, now=ctx.now())
    if parted is None:
        return Reply(
            title=f"{target.key} is not linked to another identity.",
            lines=("/whoami lists yours.",),
            tone=Tone.INFO,
        )
    ctx.audit_always = True
    ctx.detail = f"unlinked {parted.identity} from {', '.join(parted.others)}"[:300]
    unreached = await _tell(
        ctx,
        [k for k in (parted.identity, *parted.others) if k != me.key],
        Reply(
            title=f"Unlinked: {parted.identity}",
            lines=(
                f"{me.key} unlinked it; it has only its own roles and limits now.",
                "Link again: /link on one app, then /link CODE on the other.",
            ),
            tone=Tone.INFO,
            confidential=True,
        ),
    )
    lines = [f"It was linked to {', '.join(parted.others)}; it has only its own roles now."]
    lines += [f"{key} could not be told." for key in unreached]
    return Reply(title=f"Unlinked {parted.identity}.", lines=tuple(lines))


async def _check_admin_of(ctx: Context, target: Identity) -> None:
    """Someone else's identity: only an admin of a distributor where its person has a role."""
    admin_of = {d for d, r in ctx.access.roles.items() if r >= Role.ADMIN}
    theirs = await ctx.core.people.roles_of(target)  # a UsageError for an impossible id
    if ctx.access.bootstrap_admin or admin_of & set(theirs):
        return
    raise PermissionDeniedError(
        f"{target.key} is not one of your identities (/whoami lists yours).\n"
        f"Only an admin where it has a role can unlink it: ask them to send /unlink {target.key}",
        missing_role=Role.ADMIN.label,
        distributor=None,
    )


async def _tell(ctx: Context, keys: Iterable[str], reply: Reply) -> list[str]:
    """Send ``reply`` privately to each identity; the ones that could not be reached."""
    unreached: list[str] = []
    for key in keys:
        platform, _, user_id = key.partition(":")
        notifier = ctx.core.notifiers.get(platform)
        if notifier is None:
            unreached.append(key)
            continue
        try:
            await notifier.send_private(user_id, reply)
        except Exception as exc:  # the link is made: a lost message must not undo the answer
            log.warning(
                "%s not told of a link change: %s",
                key,
                exc if isinstance(exc, NotifyError) else type(exc).__name__,
            )
            unreached.append(key)
    return unreached


async def _count_attempt(ctx: Context) -> None:
    """Count a link code tried by this identity: guessing codes must be slow."""
    limit = ctx.core.limits.invite_attempts_per_user_hour
    key = ctx.request.identity.key
    decision = await ctx.core.rate.hit("links:user", key, limit, 3600, now=ctx.now())
    if not decision.allowed:
        wait = max(1, round(decision.retry_after / 60))
        raise RateLimitedError(
            f"Too many link codes tried: {limit} an hour.\n"
            f"Try again in {wait} min: /link CODE, with the code exactly as your other app shows "
            "it.",
            decision.retry_after,
        )
