"""Guided codes and short replies as Telegram shows them (issue 16, items 1 and 2): two taps from
``/code`` to a 30-day code, history codes a tap copies, replies sized for a phone."""

from __future__ import annotations

from fakes.telegram import FakeTelegram
from telegram_rig import AGENT, AdapterFactory, StackLike

from bot.roles import Role
from erm.sandbox.seed import OPEN_OPENTOKEN_OEM_ID

ITEM = OPEN_OPENTOKEN_OEM_ID


async def test_two_taps_from_code_to_a_code(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await make_adapter(stack.dispatcher, stack.engine)
    fake.start_private(AGENT)
    await fake.send(AGENT, f"/code days {ITEM} 2")  # an item worked on before
    before = stack.code_events(ITEM)

    [items] = await fake.send(AGENT, "/code")
    assert [b["text"] for b in items.buttons] == [ITEM]
    fake.press(AGENT, items, ITEM)  # tap 1: the item
    await fake.wait_until(lambda: len(fake.answers()) == 1, what="item tapped")
    assert items.plain.startswith(f"Which code for {ITEM}?")  # the card became the code menu
    assert [b["text"] for b in items.buttons][:2] == ["7 days", "30 days"], items.plain
    # 7 days: 30 more within a day of the first code would go to a supervisor (the rig's policy).
    fake.press(AGENT, items, "7 days")  # tap 2: the code
    await fake.wait_until(
        lambda: any("7-day code" in m.plain for m in fake.sent(AGENT.id)), what="the code"
    )

    assert stack.code_events(ITEM) == before + 1
    [code] = [m for m in fake.sent(AGENT.id) if "7-day code" in m.plain]
    assert "<code>" in code.text
    assert all(len(b["callback_data"].encode()) <= 64 for b in items.buttons)


async def test_history_codes_are_tap_to_copy(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await make_adapter(stack.dispatcher, stack.engine)
    fake.start_private(AGENT)
    await fake.send(AGENT, f"/code days {ITEM} 3")

    [history] = await fake.send(AGENT, f"/history {ITEM} 2")

    rows = [line for line in history.text.splitlines() if "3d" in line]
    assert rows, history.text
    assert "<code>" in rows[0]
    assert rows[0].endswith("</code>")
