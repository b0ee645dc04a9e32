"""Groups: /cmd@bot addressing, and codes never posted to a group."""

from __future__ import annotations

from fakes.telegram import FakeTelegram, Group
from telegram_rig import AGENT, TEAM, AdapterFactory, StackLike

from bot.roles import Role
from erm.sandbox.seed import OPEN_OPENTOKEN_OEM_ID

ITEM = OPEN_OPENTOKEN_OEM_ID


def _digits(keypad_html: str) -> str:
    start = keypad_html.index("<code>") + len("<code>")
    return keypad_html[start : keypad_html.index("</code>")]


async def test_a_code_asked_for_in_a_group_goes_to_the_private_chat(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    fake.start_private(AGENT)
    await make_adapter(stack.dispatcher, stack.engine)
    before = stack.code_events(ITEM)

    update = fake.message(AGENT, f"/code@{fake.username} days {ITEM} 30", group=TEAM)
    await fake.wait_for_messages(2)

    [private] = fake.sent(AGENT.id)
    [in_group] = fake.sent(TEAM.id)
    code = _digits(private.text)
    assert stack.code_events(ITEM) == before + 1
    assert code not in in_group.text
    assert "private chat" in in_group.plain
    assert in_group.reply_to == update["message"]["message_id"]
    assert all(code not in m.text for m in fake.sent(TEAM.id))


async def test_a_code_for_someone_who_never_started_the_bot_is_not_posted_anywhere(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await make_adapter(stack.dispatcher, stack.engine)

    fake.message(AGENT, f"/code days {ITEM} 30", group=TEAM)
    [in_group] = await fake.wait_for_messages(1, TEAM.id)

    assert [c.status for c in fake.calls_to("sendMessage")] == [403, 200]
    assert fake.sent(AGENT.id) == []
    assert "<code>" not in in_group.text
    assert f"https://t.me/{fake.username}?start" in in_group.text
    assert "private chat" in in_group.plain


async def test_after_starting_the_bot_the_same_command_shows_the_code_made_before(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await make_adapter(stack.dispatcher, stack.engine)
    before = stack.code_events(ITEM)
    fake.message(AGENT, f"/code days {ITEM} 30", group=TEAM)
    await fake.wait_for_messages(1, TEAM.id)

    [private] = await fake.send(AGENT, f"/code days {ITEM} 30")

    assert stack.code_events(ITEM) == before + 1
    assert "Already issued" in private.plain
    assert "<code>" in private.text


async def test_a_command_for_another_bot_is_ignored(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await make_adapter(stack.dispatcher, stack.engine)
    before = stack.code_events(ITEM)

    fake.message(AGENT, f"/code@other_bot days {ITEM} 30", group=TEAM)
    fake.message(AGENT, "/weather Nairobi", group=TEAM)  # another bot's command, no @
    fake.message(AGENT, "good morning team", group=TEAM)
    [marker] = await fake.send(AGENT, f"/help@{fake.username}", group=TEAM)

    assert stack.code_events(ITEM) == before
    assert fake.sent() == [marker]
    assert marker.chat_id == TEAM.id  # an answer with nothing private is answered in the group


async def test_lookups_in_a_group_are_answered_in_the_group(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await make_adapter(stack.dispatcher, stack.engine)

    update = fake.message(AGENT, f"/history {ITEM}", group=TEAM)
    [reply] = await fake.wait_for_messages(1)

    assert reply.chat_id == TEAM.id
    assert reply.reply_to == update["message"]["message_id"]


async def test_two_users_in_one_group_each_get_their_own_answer(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    other = type(AGENT)(1099, "Otieno")
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await stack.grant(f"telegram:{other.id}", Role.VIEWER)
    fake.start_private(AGENT)
    fake.start_private(other)
    await make_adapter(stack.dispatcher, stack.engine)

    fake.message(AGENT, "/whoami", group=TEAM)
    fake.message(other, "/whoami", group=TEAM)
    await fake.wait_for_messages(2, TEAM.id)
    [first] = await fake.wait_for_messages(1, AGENT.id)
    [second] = await fake.wait_for_messages(1, other.id)

    assert f"telegram:{AGENT.id}" in first.plain
    assert "agent" in first.plain
    assert f"telegram:{other.id}" in second.plain
    assert "viewer" in second.plain
    assert all("viewer" not in m.plain for m in fake.sent(TEAM.id))


async def test_a_basic_group_works_like_a_supergroup(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    basic = Group(-4242, "Old style group", type="group")
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    fake.start_private(AGENT)
    await make_adapter(stack.dispatcher, stack.engine)

    fake.message(AGENT, f"/code days {ITEM} 30", group=basic)
    await fake.wait_for_messages(2)

    assert "<code>" in fake.sent(AGENT.id)[0].text
    assert "<code>" not in fake.sent(basic.id)[0].text
