"""Redelivered and out-of-order WhatsApp notifications: each message runs once, on every database.

Meta retries a notification for days and may post the same one again while the first post is
still being worked on, in parallel, in one batch, or out of order. Every copy is correctly signed
(a replay needs no forgery), so only the database stands between a copy and a second code. What
the adapter promises (``adapters/whatsapp/app.py``): one person's messages are answered in the
order they arrived, each message runs once and is answered once, whatever its copies.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from security_rig import WHATSAPP_AGENT, WhatsAppSide, rows

from bot.audit import AuditLog
from bot.roles import Role
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
SECOND_AGENT = "255700999888"


def _messages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = payload["entry"][0]["changes"][0]["value"]["messages"]
    return messages


async def test_copies_of_a_message_posted_at_once_issue_one_code_and_one_reply(
    any_stack: Any, any_whatsapp_side: WhatsAppSide
) -> None:
    side = any_whatsapp_side
    before = any_stack.code_events(ITEM)
    body = side.fake.body(side.fake.user_message(WHATSAPP_AGENT, f"code days {ITEM} 30"))

    answers = await asyncio.gather(*(side.deliver(body) for _ in range(6)))
    await side.settle()

    assert [answer.status_code for answer in answers] == [200] * 6
    [reply] = side.fake.sent(WHATSAPP_AGENT)
    assert "```" in reply.text
    assert any_stack.code_events(ITEM) == before + 1
    assert (await rows(any_stack.engine))["codes"] == 1
    # The copies are audited as such: they ran nothing and sent nothing.
    outcomes = sorted(r.outcome for r in await AuditLog(any_stack.engine).recent(limit=10))
    assert outcomes == sorted(["ok"] + ["duplicate"] * 5)


async def test_a_message_repeated_inside_one_notification_runs_once(
    any_stack: Any, any_whatsapp_side: WhatsAppSide
) -> None:
    side = any_whatsapp_side
    before = any_stack.code_events(ITEM)
    payload = side.fake.user_message(WHATSAPP_AGENT, f"code days {ITEM} 30")
    messages = _messages(payload)
    messages.extend([dict(messages[0]), dict(messages[0])])

    assert (await side.deliver(payload)).status_code == 200
    await side.settle()

    assert len(side.fake.sent(WHATSAPP_AGENT)) == 1
    assert any_stack.code_events(ITEM) == before + 1


async def test_out_of_order_posts_keep_each_persons_arrival_order_and_run_once(
    any_stack: Any, any_whatsapp_side: WhatsAppSide
) -> None:
    """Posts for two people, the later messages first (by Meta's timestamps): each person is
    answered in arrival order; every copy posted again, shuffled, runs nothing more."""
    side = any_whatsapp_side
    fake = side.fake
    await any_stack.grant(f"whatsapp:{SECOND_AGENT}", Role.AGENT)
    now = time.time()
    typed = ["whoami", f"history {ITEM}", "help"]
    posts = [
        fake.user_message(wa_id, text, timestamp=now - 10 * position)
        for position, text in enumerate(typed)
        for wa_id in (WHATSAPP_AGENT, SECOND_AGENT)
    ]

    for post in posts:
        assert (await side.deliver(post)).status_code == 200
    await side.settle()
    audited = len(await AuditLog(any_stack.engine).recent(limit=50))
    random.Random(17).shuffle(posts)
    for post in posts + posts:
        assert (await side.deliver(post)).status_code == 200
    await side.settle()

    for wa_id in (WHATSAPP_AGENT, SECOND_AGENT):
        first, second, third = fake.sent(wa_id)
        assert f"whatsapp:{wa_id}" in first.text
        assert ITEM in second.text
        assert "code" in third.text.lower()
    assert audited == len(typed) * 2
    after = await AuditLog(any_stack.engine).recent(limit=50)
    assert [r.outcome for r in after[: len(posts) * 2]] == ["duplicate"] * len(posts) * 2
    assert len(after) == audited + len(posts) * 2


async def test_a_redelivered_confirmation_tap_issues_one_code(
    any_stack: Any, any_whatsapp_side: WhatsAppSide
) -> None:
    """A tap is a message too: its copies press the button once."""
    side = any_whatsapp_side
    fake = side.fake
    before = any_stack.code_events(ITEM)
    an_hour_ago = time.time() - 3600
    question = await side.ask(f"code days {ITEM} 30", timestamp=an_hour_ago)
    assert question.interactive_type == "button"
    tap = fake.body(fake.reply_to(question, "Confirm"))

    answers = await asyncio.gather(*(side.deliver(tap) for _ in range(4)))
    await side.settle()
    assert (await side.deliver(tap)).status_code == 200
    await side.settle()

    assert [answer.status_code for answer in answers] == [200] * 4
    assert any_stack.code_events(ITEM) == before + 1
    assert [("```" in sent.text) for sent in fake.sent(WHATSAPP_AGENT)] == [False, True]
