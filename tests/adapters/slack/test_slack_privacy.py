"""One privacy rule: accounts, users, audit, approval lists and /whoami reach only the asker.

On Slack that is an ephemeral answer, in a channel as in a DM, and still ephemeral (never
``chat.postMessage``) when the command's response_url is used up.
"""

from __future__ import annotations

from typing import Any

import pytest
from slack_rig import SlackRig

from bot.roles import Role
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
ADMIN = "U7"

PRIVATE_ANSWERS = [
    ("/account", ITEM),
    ("/erm", "users"),
    ("/erm", f"audit {ITEM}"),
    ("/erm", "approvals"),
    ("/erm", "whoami"),
]


@pytest.fixture
async def admin(stack: Any) -> str:
    await stack.grant(f"slack:{ADMIN}", Role.ADMIN)
    return ADMIN


@pytest.mark.parametrize(("command", "text"), PRIVATE_ANSWERS, ids=[t for _, t in PRIVATE_ANSWERS])
async def test_a_private_answer_in_a_channel_is_ephemeral(
    slack: SlackRig, admin: str, command: str, text: str
) -> None:
    await slack.ask("/history", f"{ITEM} 1", user_id=admin)  # something for /audit to show

    answer = await slack.ask(command, text, user_id=admin, channel_id="C1", channel_name="ops")

    assert answer.body["response_type"] == "ephemeral"
    assert ":warning:" not in answer.text


@pytest.mark.parametrize(("command", "text"), PRIVATE_ANSWERS, ids=[t for _, t in PRIVATE_ANSWERS])
async def test_a_private_answer_stays_ephemeral_when_the_response_url_is_used_up(
    slack: SlackRig, admin: str, command: str, text: str
) -> None:
    url = slack.fake.response_url()
    while slack.adapter.outbound.urls.take(url):  # every use spent
        pass

    sent = await slack.command(command, text, user_id=admin, channel_id="C1", response_url=url)

    assert sent.response.status_code == 200
    (fallback,) = await slack.fake.wait_for("chat.postEphemeral")
    assert fallback.body["user"] == admin
    await slack.adapter.drain()
    assert slack.fake.calls_to("chat.postMessage") == []
