"""Privacy is declared by the core, once: replies about people and accounts are private only.

``Reply.private_only`` is the one rule every adapter honours (Slack: ephemeral; Telegram: the
asker's private chat, with a note in the group; the console prints). These commands declare it.
"""

from __future__ import annotations

import pytest
from approval_harness import with_approvals
from bot_harness import Bot

from bot.messages import Reply, Visibility
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID


@pytest.mark.parametrize(
    "text",
    [
        f"/account {ITEM}",
        "/items",
        "/users",
        f"/audit {ITEM}",
        "/audit",
        "/approvals",
        "/whoami",
        "/start",
    ],
)
async def test_answers_about_people_and_accounts_are_private_only(bot: Bot, text: str) -> None:
    with_approvals(bot)
    await bot.say("admin", f"/history {ITEM} 1")  # something for /audit to show

    reply = await bot.say("admin", text)

    assert reply.title is not None
    assert reply.tone.value in ("ok", "info"), reply.text()
    assert reply.private_only, text
    # Stored for a redelivery: the declaration survives the round trip.
    assert Reply.from_dict(reply.to_dict()).private_only


@pytest.mark.parametrize("text", ["/help", "/fleet"])
async def test_answers_with_nothing_private_may_be_shown_where_asked(bot: Bot, text: str) -> None:
    reply = await bot.say("viewer", text)

    assert not reply.private_only, text
    assert reply.visibility is Visibility.PRIVATE  # still only the asker, where the platform can
