"""Onboarding without typing ids: /invite, then /start CODE (typed or from a t.me deep link)."""

from __future__ import annotations

import re

from fakes.telegram import FakeTelegram, User
from telegram_rig import ADMIN, TEAM, AdapterFactory, StackLike

from bot.roles import Role
from erm.sandbox.seed import OPEN_OPENTOKEN_OEM_ID

LINK = re.compile(r"https://t\.me/(\w+)\?start=(\w+)")


async def _invite(fake: FakeTelegram, role: str = "agent") -> tuple[str, str]:
    [reply] = await fake.send(ADMIN, f"/invite {role} acme")
    match = LINK.search(reply.plain)
    assert match is not None, reply.plain
    return match.group(1), match.group(2)


async def test_an_invite_carries_a_deep_link_to_this_bot(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{ADMIN.id}", Role.ADMIN)
    await make_adapter(stack.dispatcher, stack.engine)

    username, code = await _invite(fake)

    assert username == fake.username
    assert len(code) >= 8


async def test_start_with_the_code_grants_the_role_once(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    newcomer, latecomer = User(7001, "Neema"), User(7002, "Late")
    await stack.grant(f"telegram:{ADMIN.id}", Role.ADMIN)
    await make_adapter(stack.dispatcher, stack.engine)
    _, code = await _invite(fake)

    # What Telegram sends when the newcomer opens https://t.me/<bot>?start=<code>:
    [welcome] = await fake.send(newcomer, f"/start {code}")
    [code_reply] = await fake.send(newcomer, f"/code days {OPEN_OPENTOKEN_OEM_ID} 30")
    [refused] = await fake.send(latecomer, f"/start {code}")

    assert "agent" in welcome.plain
    assert "<code>" in code_reply.text
    assert "unknown, used already or expired" in refused.plain
    grants = await stack.dispatcher.core.grants.grants_of("telegram", str(newcomer.id))
    assert grants == {"acme": Role.AGENT}


async def test_start_without_a_code_explains_how_to_get_access(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await make_adapter(stack.dispatcher, stack.engine)

    [reply] = await fake.send(User(7003, "Curious"), "/start")

    assert "invite" in reply.plain
    assert "telegram:7003" in reply.plain


async def test_an_invite_asked_for_in_a_group_goes_to_the_admins_private_chat(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{ADMIN.id}", Role.ADMIN)
    fake.start_private(ADMIN)
    await make_adapter(stack.dispatcher, stack.engine)

    fake.message(ADMIN, f"/invite@{fake.username} agent acme", group=TEAM)
    await fake.wait_for_messages(2)

    [private] = fake.sent(ADMIN.id)
    [in_group] = fake.sent(TEAM.id)
    assert LINK.search(private.plain)
    assert not LINK.search(in_group.plain)
    assert "private chat" in in_group.plain
