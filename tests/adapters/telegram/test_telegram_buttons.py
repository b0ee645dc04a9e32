"""Inline keyboards: the stale-message guard, paging, double taps, and always answering."""

from __future__ import annotations

import time

import pytest
from fakes.telegram import FakeTelegram, SentMessage, User
from telegram_rig import AGENT, TEAM, AdapterFactory, StackLike

from bot.messages import Click, Pressed
from bot.roles import Role
from erm.sandbox.seed import OPEN_OPENTOKEN_OEM_ID

ITEM = OPEN_OPENTOKEN_OEM_ID
HOUR_AGO = time.time() - 3600


async def _stale_card(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory, *, group: bool = False
) -> SentMessage:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await make_adapter(stack.dispatcher, stack.engine)
    fake.start_private(AGENT)
    [card] = await fake.send(
        AGENT, f"/code days {ITEM} 30", date=HOUR_AGO, group=TEAM if group else None
    )
    return card


async def test_a_code_command_sent_an_hour_ago_asks_first(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    before_events = stack.code_events(ITEM)
    card = await _stale_card(stack, fake, make_adapter)

    assert stack.code_events(ITEM) == before_events
    assert [b["text"] for b in card.buttons] == ["Confirm", "Cancel"]
    assert all(len(b["callback_data"].encode()) <= 64 for b in card.buttons)
    assert "<code>" not in card.text


async def test_confirm_issues_exactly_one_code_and_a_double_tap_changes_nothing(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    before = stack.code_events(ITEM)
    card = await _stale_card(stack, fake, make_adapter)

    fake.press(AGENT, card, "Confirm")
    fake.press(AGENT, card, "Confirm")  # the phone was slow, the agent tapped again
    await fake.wait_until(lambda: len(fake.answers()) == 2, what="both presses answered")

    assert stack.code_events(ITEM) == before + 1
    codes = [m for m in fake.sent(AGENT.id) if "<code>" in m.text]
    assert len(codes) == 1
    assert card.buttons == []  # the card was replaced, buttons gone
    assert card.plain.startswith("Confirmed")
    notices = [c.params.get("text") for c in fake.answers()]
    assert notices[0] in (None, "")
    assert "Already confirmed" in str(notices[1])
    assert fake.unanswered_queries() == []


async def test_cancel_issues_nothing(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    before = stack.code_events(ITEM)
    card = await _stale_card(stack, fake, make_adapter)
    confirm = card.button("Confirm")["callback_data"]

    fake.press(AGENT, card, "Cancel")
    await fake.wait_until(lambda: len(fake.answers()) == 1)
    # Too late: the card was decided (a second phone still showing the old buttons).
    fake.queue(fake.callback_update(AGENT, card, confirm))
    await fake.wait_until(lambda: len(fake.answers()) == 2)

    assert stack.code_events(ITEM) == before
    assert card.plain.startswith("Cancelled")
    assert "Already cancelled" in str(fake.answers()[1].params.get("text"))


async def test_only_the_requester_can_confirm_in_a_group(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    before = stack.code_events(ITEM)
    card = await _stale_card(stack, fake, make_adapter, group=True)
    other = User(1077, "Wanjiru")
    await stack.grant(f"telegram:{other.id}", Role.SUPERVISOR)

    assert card.chat_id == TEAM.id
    fake.press(other, card, "Confirm")
    await fake.wait_until(lambda: len(fake.answers()) == 1)
    assert stack.code_events(ITEM) == before
    assert "Only the person" in str(fake.answers()[0].params.get("text"))
    assert [b["text"] for b in card.buttons] == ["Confirm", "Cancel"]  # untouched

    fake.press(AGENT, card, "Confirm")
    await fake.wait_until(lambda: len(fake.answers()) == 2)
    await fake.wait_for_messages(3)
    assert stack.code_events(ITEM) == before + 1
    assert all("<code>" not in m.text for m in fake.sent(TEAM.id))
    assert any("<code>" in m.text for m in fake.sent(AGENT.id))


async def test_paging_replaces_the_card_with_the_next_page(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await make_adapter(stack.dispatcher, stack.engine)
    [page] = await fake.send(AGENT, "/items SHSA")
    first = page.plain

    fake.press(AGENT, page, "Next page")
    await fake.wait_until(lambda: len(fake.answers()) == 1)

    assert page.edits == 1
    assert page.plain != first
    assert len(fake.sent(AGENT.id)) == 1


async def test_an_unknown_button_is_answered(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await make_adapter(stack.dispatcher, stack.engine)
    [message] = await fake.send(AGENT, "/whoami")

    fake.queue(fake.callback_update(AGENT, message, "b:doesnotexist"))
    fake.queue(fake.callback_update(AGENT, message, "legacy-data"))
    await fake.wait_until(lambda: len(fake.answers()) == 2)

    texts = [str(c.params.get("text")) for c in fake.answers()]
    assert "expired" in texts[0]
    assert "no longer works" in texts[1]


async def test_a_press_that_fails_is_still_answered(
    stack: StackLike,
    fake: FakeTelegram,
    make_adapter: AdapterFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(click: Click) -> Pressed:
        raise RuntimeError("database went away")

    card = await _stale_card(stack, fake, make_adapter)
    monkeypatch.setattr(stack.dispatcher, "press", broken)

    fake.press(AGENT, card, "Confirm")
    await fake.wait_until(lambda: len(fake.answers()) == 1)

    assert "did not work" in str(fake.answers()[0].params.get("text"))
    assert "button press" in caplog.text


async def test_an_edit_that_telegram_refuses_still_answers_the_press(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    card = await _stale_card(stack, fake, make_adapter)
    fake.fail("editMessageText", status=400, description="Bad Request: message to edit not found")

    fake.press(AGENT, card, "Cancel")
    await fake.wait_until(lambda: len(fake.answers()) == 1)

    assert "did not work" in str(fake.answers()[0].params.get("text"))


async def test_message_is_not_modified_counts_as_success(
    stack: StackLike,
    fake: FakeTelegram,
    make_adapter: AdapterFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    card = await _stale_card(stack, fake, make_adapter)
    fake.fail(
        "editMessageText",
        status=400,
        description="Bad Request: message is not modified: specified new message content and "
        "reply markup are exactly the same as a current content and reply markup of the message",
    )

    fake.press(AGENT, card, "Cancel")
    await fake.wait_until(lambda: len(fake.answers()) == 1)

    assert fake.answers()[0].params.get("text") in (None, "")
    assert "failed" not in caplog.text


async def test_429_on_answer_is_retried_once(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    card = await _stale_card(stack, fake, make_adapter)
    fake.fail("answerCallbackQuery", status=429, retry_after=1)

    fake.press(AGENT, card, "Cancel")
    await fake.wait_until(lambda: len(fake.answers()) == 1)

    assert [c.status for c in fake.calls_to("answerCallbackQuery")] == [429, 200]
    assert fake.unanswered_queries() == []
