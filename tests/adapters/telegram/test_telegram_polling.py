"""Long polling end to end: fake Bot API -> PTB -> adapter -> core -> sandbox ERM -> reply."""

from __future__ import annotations

import time

import pytest
from fakes.telegram import FakeTelegram, User, parse_html, utf16_length
from telegram_rig import AGENT, STRANGER, AdapterFactory, StackLike

from adapters.telegram.render import MAX_MESSAGE, render
from bot.commands import COMMANDS
from bot.messages import Reply, Request
from bot.registry import Command
from bot.roles import Role
from erm.sandbox.seed import OPEN_ACP1_OEM_ID, OPEN_OPENTOKEN_OEM_ID

REFUSALS = ("needs the", "don't have access")


async def test_start_checks_the_token_publishes_the_menu_and_polls(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    adapter = await make_adapter(stack.dispatcher, stack.engine)

    await fake.wait_until(lambda: len(fake.calls_to("getUpdates")) >= 1, what="a poll")
    assert [c.method for c in fake.calls[:2]] == ["getMe", "setMyCommands"]
    assert fake.calls_to("deleteWebhook"), "polling starts by removing any webhook"
    words = {c["command"] for c in fake.commands}
    assert {"code", "history", "fleet", "items", "account", "resend", "help", "whoami"} <= words
    assert {"grant", "revoke", "users", "audit", "invite", "start"} <= words
    assert adapter.polling
    assert stack.dispatcher.core.deep_links["telegram"] == (
        f"https://t.me/{fake.username}?start={{code}}"
    )


async def test_a_code_comes_back_in_code_tags(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await make_adapter(stack.dispatcher, stack.engine)
    before = stack.code_events(OPEN_OPENTOKEN_OEM_ID)

    [reply] = await fake.send(AGENT, f"/code days {OPEN_OPENTOKEN_OEM_ID} 30 paid <cash> & more")

    assert stack.code_events(OPEN_OPENTOKEN_OEM_ID) == before + 1
    assert reply.chat_id == AGENT.id
    assert "<code>*" in reply.text
    assert "paid <cash> & more" in reply.plain  # escaped on the way out, literal on screen


def _example_cases() -> list[tuple[Command, str]]:
    return [(c, c.example) for c in COMMANDS]


@pytest.mark.parametrize(("command", "text"), _example_cases(), ids=lambda v: str(v)[:30])
async def test_every_command_answers_an_allowed_and_a_refused_user(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory, command: Command, text: str
) -> None:
    allowed, refused = User(3001, "Allowed"), User(3002, "Refused")
    await stack.grant(f"telegram:{allowed.id}", command.role)
    if command.role > Role.VIEWER:
        await stack.grant(f"telegram:{refused.id}", Role(command.role - 1))
    await make_adapter(stack.dispatcher, stack.engine)

    [yes] = await fake.send(allowed, text)
    [no] = await fake.send(refused, text)

    assert yes.chat_id == allowed.id
    assert not any(refusal in yes.plain for refusal in REFUSALS), yes.plain
    if not command.anyone:  # anyone may /start, /link and /unlink their own identity
        assert any(refusal in no.plain for refusal in REFUSALS), no.plain


async def test_a_redelivered_update_runs_once_and_is_not_answered_twice(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await make_adapter(stack.dispatcher, stack.engine)
    before = stack.code_events(OPEN_OPENTOKEN_OEM_ID)
    update = fake.message(AGENT, f"/code days {OPEN_OPENTOKEN_OEM_ID} 7")
    [first] = await fake.wait_for_messages(1)
    await fake.wait_until(lambda: update not in fake.pending, what="confirmation")

    fake.queue(update)  # Telegram delivers it again (e.g. the confirmation was lost)
    fake.message(AGENT, "/whoami")  # something after it, to know the redelivery was processed
    messages = await fake.wait_for_messages(2)

    assert stack.code_events(OPEN_OPENTOKEN_OEM_ID) == before + 1
    assert [m.plain.split("\n")[0] for m in messages][1] == "Who you are to erm-bot"
    assert len(messages) == 2
    assert first.plain.count("*") >= 1


async def test_a_redelivered_update_after_a_restart_issues_no_second_code(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    adapter = await make_adapter(stack.dispatcher, stack.engine)
    before = stack.code_events(OPEN_OPENTOKEN_OEM_ID)
    update = fake.message(AGENT, f"/code days {OPEN_OPENTOKEN_OEM_ID} 7")
    [first] = await fake.wait_for_messages(1)
    await adapter.stop()

    fake.queue(update)  # the new process gets the update again (confirmation lost in the crash)
    await make_adapter(stack.dispatcher, stack.engine)
    messages = await fake.wait_for_messages(2)

    assert stack.code_events(OPEN_OPENTOKEN_OEM_ID) == before + 1
    # The stored reply is shown again (the user may never have seen it): same code, no new one.
    assert messages[1].text == first.text


async def test_429_on_send_waits_retry_after_and_sends_once_more(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await make_adapter(stack.dispatcher, stack.engine)
    fake.fail("sendMessage", status=429, retry_after=1)

    [reply] = await fake.send(AGENT, "/whoami")

    sends = fake.calls_to("sendMessage")
    assert [c.status for c in sends] == [429, 200]
    assert sends[1].at - sends[0].at >= 0.9  # waited retry_after before the one retry
    assert reply.plain.startswith("Who you are")


async def test_a_second_429_is_not_retried_again(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await make_adapter(stack.dispatcher, stack.engine)
    fake.fail("sendMessage", status=429, retry_after=1, times=2)

    fake.message(AGENT, "/whoami")
    fake.message(AGENT, "/start")  # the next update of the chat still gets through
    await fake.wait_for_messages(1)

    assert [c.status for c in fake.calls_to("sendMessage")] == [429, 429, 200]


async def test_plain_text_in_a_private_chat_gets_a_hint(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await make_adapter(stack.dispatcher, stack.engine)

    [reply] = await fake.send(STRANGER, "hello bot")

    assert "/help" in reply.plain


async def test_a_reply_over_4096_characters_is_split_and_accepted(
    stack: StackLike,
    fake: FakeTelegram,
    make_adapter: AdapterFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = tuple(f"line {i:04d} <&> {'é' * 50}" for i in range(300))

    async def long_answer(request: Request) -> Reply:
        return Reply(title="Long", lines=lines)

    monkeypatch.setattr(stack.dispatcher, "handle", long_answer)
    await make_adapter(stack.dispatcher, stack.engine)

    parts = len(render(Reply(title="Long", lines=lines)))

    fake.message(AGENT, "/items")
    sent = await fake.wait_for_messages(parts, AGENT.id)

    assert parts > 1
    assert all(c.status == 200 for c in fake.calls_to("sendMessage"))
    assert all(utf16_length(parse_html(m.text)) <= MAX_MESSAGE for m in sent)
    shown = [line for m in sent for line in m.plain.split("\n") if line.startswith("line ")]
    assert shown == list(lines)


async def test_stop_finishes_updates_in_flight(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    stack.sandbox.faults.latency_ms = 300
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    adapter = await make_adapter(stack.dispatcher, stack.engine)
    fake.message(AGENT, f"/history {OPEN_ACP1_OEM_ID}")
    await fake.wait_until(lambda: adapter.processor.busy_chats == 1, what="work in flight")

    started = time.monotonic()
    await adapter.stop()

    assert len(fake.sent(AGENT.id)) == 1
    assert time.monotonic() - started < 10
