"""One privacy rule: what Slack shows only to the asker never lands in a Telegram group.

Accounts (client name, phone, balance), the user list, the audit trail, approval lists and
``/whoami`` asked for in a group go to the asker's private chat, and the group gets a short note;
someone who never started a private chat with the bot gets a note telling them how.
"""

from __future__ import annotations

import pytest
from fakes.telegram import FakeTelegram, SentMessage
from telegram_rig import ADMIN, AGENT, TEAM, AdapterFactory, StackLike

from bot.roles import Role
from erm.sandbox.seed import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID

PRIVATE_ANSWERS = [
    (f"/account {ITEM}", "Account of"),
    ("/users", "Users ("),
    (f"/audit {ITEM}", "Audit of"),
    ("/audit", "Audit of"),
    ("/approvals", "approval"),
    ("/whoami", "Who you are"),
]


def private_lines(message: SentMessage) -> list[str]:
    """The lines of a private answer that say something about someone (not blank, not a title)."""
    return [line for line in message.plain.splitlines()[1:] if len(line.strip()) > 3]


@pytest.fixture
async def admin_in_team(stack: StackLike) -> None:
    await stack.grant(f"telegram:{ADMIN.id}", Role.ADMIN)
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)


@pytest.mark.parametrize(("text", "title"), PRIVATE_ANSWERS, ids=[t for t, _ in PRIVATE_ANSWERS])
async def test_a_private_answer_asked_for_in_a_group_goes_to_the_private_chat(
    stack: StackLike,
    fake: FakeTelegram,
    make_adapter: AdapterFactory,
    admin_in_team: None,
    text: str,
    title: str,
) -> None:
    fake.start_private(ADMIN)
    await make_adapter(stack.dispatcher, stack.engine)
    # Something for /audit and /users to show.
    await fake.send(ADMIN, f"/history {ITEM} 1")

    update = fake.message(ADMIN, text, group=TEAM)
    [in_group] = await fake.wait_for_messages(1, TEAM.id)
    answers = await fake.wait_for_messages(2, ADMIN.id)
    private = answers[-1]

    assert title in private.plain
    assert "private chat" in in_group.plain
    assert in_group.reply_to == update["message"]["message_id"]
    assert [m.chat_id for m in fake.sent(TEAM.id)] == [TEAM.id]
    for line in private_lines(private):
        assert line not in in_group.plain


@pytest.mark.parametrize(("text", "title"), PRIVATE_ANSWERS, ids=[t for t, _ in PRIVATE_ANSWERS])
async def test_a_private_answer_for_someone_who_never_started_the_bot_is_not_posted(
    stack: StackLike,
    fake: FakeTelegram,
    make_adapter: AdapterFactory,
    admin_in_team: None,
    text: str,
    title: str,
) -> None:
    await make_adapter(stack.dispatcher, stack.engine)
    await fake.send(ADMIN, f"/history {ITEM} 1", group=TEAM)  # something for /audit to show

    fake.message(ADMIN, text, group=TEAM)
    [_, in_group] = await fake.wait_for_messages(2, TEAM.id)

    assert fake.sent(ADMIN.id) == []
    assert title not in in_group.plain
    assert f"https://t.me/{fake.username}?start" in in_group.text
    assert "press Start" in in_group.plain


async def test_an_account_in_a_private_chat_is_answered_there(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory, admin_in_team: None
) -> None:
    fake.start_private(AGENT)
    await make_adapter(stack.dispatcher, stack.engine)

    [answer] = await fake.send(AGENT, f"/account {ITEM}")

    assert answer.chat_id == AGENT.id
    assert "Account of" in answer.plain


async def test_an_answer_with_nothing_private_stays_in_the_group(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory, admin_in_team: None
) -> None:
    await make_adapter(stack.dispatcher, stack.engine)

    [answer] = await fake.send(AGENT, "/fleet", group=TEAM)

    assert answer.chat_id == TEAM.id
    assert "fleets" in answer.plain.lower()


async def test_a_viewer_reads_history_with_codes_masked_on_telegram(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory, admin_in_team: None
) -> None:
    viewer = type(AGENT)(1098, "Wanjiru")
    await stack.grant(f"telegram:{viewer.id}", Role.VIEWER)
    fake.start_private(AGENT)
    fake.start_private(viewer)
    await make_adapter(stack.dispatcher, stack.engine)
    [issued] = await fake.send(AGENT, f"/code days {ITEM} 30")
    keypad = issued.text.split("<code>")[1].split("</code>")[0]

    [answer] = await fake.send(viewer, f"/history {ITEM} 3")

    digits = "".join(ch for ch in keypad if ch.isdigit())
    assert keypad not in answer.text
    assert digits not in answer.text
    assert f"••• {digits[-3:]}" in answer.plain
