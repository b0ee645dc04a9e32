"""Invites keep their promises (issue 14, item 10): the code is shown once and never kept in a
stored reply, and an invite stops working when its admin is no longer an admin. On SQLite and
PostgreSQL."""

from __future__ import annotations

import re

from bot_harness import Bot
from sqlalchemy import text

from bot.messages import Tone
from bot.roles import Role
from erm import db
from erm.sandbox import ACME, SUNBRIGHT

STALE = "This invite is no longer valid. Ask an admin for a new one."


def _code(reply_text: str) -> str:
    match = re.search(r"/start ([A-Z0-9]{10})", reply_text)
    assert match, reply_text
    return match.group(1)


async def _stored(bot: Bot, sql: str) -> list[str]:
    rows = await db.transaction(bot.engine, lambda c: c.execute(text(sql)).all())
    return [str(value) for row in rows for value in row]


async def test_a_retried_invite_makes_no_second_invite_and_shows_no_code(any_bot: Bot) -> None:
    first = await any_bot.say("admin", "/invite agent", key="invite-1")
    code = _code(first.text())

    again = await any_bot.say("admin", "/invite agent", key="invite-1")

    assert code not in again.text()
    assert again.fields == ()
    assert again.text().splitlines() == [
        f"Invite: agent at acme, valid until {first.fields[1].value}",
        "Its code was shown once, in the first answer, and is not kept.",
        "Lost it? Make a new one: /invite agent acme",
    ]
    assert again.confidential
    assert await _stored(any_bot, "SELECT count(*) FROM bot_invites") == ["1"]


async def test_the_stored_reply_holds_no_invite_code(any_bot: Bot) -> None:
    first = await any_bot.say("admin", "/invite viewer", key="invite-2")
    code = _code(first.text())

    replies = await _stored(any_bot, "SELECT reply FROM bot_requests WHERE reply IS NOT NULL")
    audit = await _stored(any_bot, "SELECT arguments, detail FROM bot_audit_log")

    assert replies
    assert not [r for r in replies if code in r]
    assert not [a for a in audit if code in a]
    # ...and the code still works once: the reply stored is not the invite.
    joined = await any_bot.say("newcomer", f"/start {code}")
    assert joined.title == "Welcome! You are now viewer at acme."


async def test_an_invite_by_an_admin_who_lost_the_role_no_longer_works(any_bot: Bot) -> None:
    await any_bot.grant("boss", Role.ADMIN)
    code = _code((await any_bot.say("boss", "/invite agent")).text())
    await any_bot.grant("boss", Role.AGENT)  # demoted

    reply = await any_bot.say("newcomer", f"/start {code}")

    assert reply.text() == STALE
    assert reply.tone is Tone.WARNING
    assert await any_bot.core.grants.grants_of("console", "newcomer") == {}


async def test_an_invite_by_an_admin_whose_grant_was_revoked_no_longer_works(
    any_bot: Bot,
) -> None:
    await any_bot.grant("boss", Role.ADMIN)
    code = _code((await any_bot.say("boss", "/invite agent")).text())
    await any_bot.core.grants.revoke("console", "boss", ACME.name)

    reply = await any_bot.say("newcomer", f"/start {code}")

    assert reply.text() == STALE
    assert await any_bot.core.grants.grants_of("console", "newcomer") == {}


async def test_an_invite_needs_its_admin_at_that_distributor(any_bot: Bot) -> None:
    """Admin elsewhere is not enough: the invite grants a role at acme."""
    await any_bot.core.erm.add_distributor(SUNBRIGHT.name, SUNBRIGHT.email, SUNBRIGHT.password)
    await any_bot.grant("boss", Role.ADMIN)
    await any_bot.grant("boss", Role.ADMIN, SUNBRIGHT.name)
    code = _code((await any_bot.say("boss", "/invite agent acme")).text())
    await any_bot.core.grants.revoke("console", "boss", ACME.name)

    reply = await any_bot.say("newcomer", f"/start {code}")

    assert reply.text() == STALE


async def test_an_invite_by_an_admin_still_in_office_works(any_bot: Bot) -> None:
    await any_bot.grant("boss", Role.ADMIN)
    code = _code((await any_bot.say("boss", "/invite agent")).text())

    reply = await any_bot.say("newcomer", f"/start {code}")

    assert reply.title == "Welcome! You are now agent at acme."
    assert await any_bot.core.grants.grants_of("console", "newcomer") == {ACME.name: Role.AGENT}
    again = await any_bot.say("other", f"/start {code}")
    assert "unknown, used already or expired" in again.text()


async def test_a_bootstrap_admins_invite_works(any_bot: Bot) -> None:
    any_bot.core.permissions.bootstrap_admins = frozenset({"console:root"})
    code = _code((await any_bot.say("root", "/invite agent acme")).text())

    reply = await any_bot.say("newcomer", f"/start {code}")

    assert reply.title == "Welcome! You are now agent at acme."


async def test_an_invite_code_typed_is_not_kept_in_the_audit_trail(any_bot: Bot) -> None:
    """A /start refused (its admin lost the role; a retry later could still redeem it if they
    get it back) must not leave a usable code in the audit trail."""
    await any_bot.grant("boss", Role.ADMIN)
    code = _code((await any_bot.say("boss", "/invite agent")).text())
    await any_bot.grant("boss", Role.AGENT)
    await any_bot.say("newcomer", f"/start {code}")

    audit = await _stored(any_bot, "SELECT arguments, detail FROM bot_audit_log")

    assert not [a for a in audit if code in a]
    assert "code=(given)" in audit
