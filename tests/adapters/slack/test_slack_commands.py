"""Slash commands end to end: signed HTTP request -> ack -> core -> answer on the response_url.

U1 is an agent at acme, U2 a viewer, U9 has no role (see conftest).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fakes.slack import command_form, encode_form, shown, signed_headers
from slack_rig import SlackRig

from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID
REFUSED = (":warning:", ":x:")


def header(call: Any) -> str:
    blocks = [b for b in call.blocks if b["type"] == "header"]
    return str(blocks[0]["text"]["text"]) if blocks else ""


# (slash command, its text, a user allowed to run it, what the answer's header starts with)
EVERY_COMMAND = [
    ("/code", f"days {ITEM} 30", "U1", f"30-day code for {ITEM}"),
    ("/history", ITEM, "U2", "Last"),
    ("/fleet", "", "U2", "Item fleets of acme"),
    ("/items", "", "U2", "Items of acme"),
    ("/account", ITEM, "U2", f"Account of {ITEM}"),
    ("/resend", ITEM, "U1", f"erm-bot has issued no code for {ITEM}"),
    ("/erm", "whoami", "U2", "Who you are to erm-bot"),
    ("/erm", "help", "U2", "Your commands ("),
    ("/erm", f"code days {ITEM} 7", "U1", f"7-day code for {ITEM}"),
    ("/erm", f"/history {ITEM}", "U2", "Last"),
]


@pytest.mark.parametrize(
    ("command", "text", "user", "expected"),
    EVERY_COMMAND,
    ids=[f"{c}-{t.split(' ')[0] or 'none'}" for c, t, _, _ in EVERY_COMMAND],
)
async def test_command_runs_for_an_allowed_user(
    slack: SlackRig, command: str, text: str, user: str, expected: str
) -> None:
    answer = await slack.ask(command, text, user_id=user)
    assert header(answer).startswith(expected), shown(answer)
    assert answer.body["response_type"] == "ephemeral"
    assert answer.body["replace_original"] is False


@pytest.mark.parametrize(
    ("command", "text", "user", "expected"),
    EVERY_COMMAND,
    ids=[f"{c}-{t.split(' ')[0] or 'none'}" for c, t, _, _ in EVERY_COMMAND],
)
async def test_command_is_refused_for_a_user_without_a_role(
    slack: SlackRig, stack: Any, command: str, text: str, user: str, expected: str
) -> None:
    before = stack.code_events(ITEM)
    answer = await slack.ask(command, text, user_id="U9", user_name="eve")
    assert header(answer).startswith(REFUSED)
    assert "slack:U9" in shown(answer)  # tells whom to grant what
    assert stack.code_events(ITEM) == before


async def test_a_viewer_may_not_issue_codes(slack: SlackRig, stack: Any) -> None:
    before = stack.code_events(ITEM)
    answer = await slack.ask("/code", f"days {ITEM} 30", user_id="U2")
    assert header(answer).startswith(":warning:")
    assert "needs the agent role" in shown(answer)
    assert stack.code_events(ITEM) == before


async def test_code_reply_is_ephemeral_with_the_code_in_its_own_monospace_section(
    slack: SlackRig,
) -> None:
    answer = await slack.ask("/code", f"days {ITEM} 30", channel_id="C1", channel_name="ops")
    assert answer.body["response_type"] == "ephemeral"
    code_sections = [
        b
        for b in answer.blocks
        if b["type"] == "section" and "```" in b.get("text", {}).get("text", "")
    ]
    assert len(code_sections) == 1
    keypad = code_sections[0]["text"]["text"].split("```")[1]
    assert keypad.startswith("*")
    assert keypad.endswith("#")
    assert keypad in answer.text  # the plain-text fallback carries it too


async def test_codes_never_reach_a_channel_message(slack: SlackRig) -> None:
    """With the response_url used up, a code still goes ephemeral to the requester only."""
    url = slack.fake.response_url()
    answer = await slack.ask("/code", f"days {ITEM} 30", channel_id="C1", response_url=url)
    keypad = shown(answer).split("```")[1]
    while slack.adapter.outbound.urls.take(url):  # the other four uses
        pass
    sent = await slack.command("/resend", ITEM, channel_id="C1", response_url=url)
    assert sent.response.status_code == 200
    (fallback,) = await slack.fake.wait_for("chat.postEphemeral")
    assert fallback.body["user"] == "U1"
    assert fallback.body["channel"] == "C1"
    assert keypad in fallback.dump()
    await slack.adapter.drain()
    assert len(slack.fake.calls_to("response")) == 1
    assert slack.fake.calls_to("chat.postMessage") == []


async def test_ack_is_an_empty_200_and_fast(slack: SlackRig) -> None:
    sent = await slack.command("/items")
    assert sent.response.status_code == 200
    assert sent.response.content == b""
    assert sent.seconds < 1.0
    await slack.answer(sent)


async def test_slow_erm_is_acked_in_time_and_answered_later(slack: SlackRig, stack: Any) -> None:
    before = stack.code_events(ITEM)
    stack.sandbox.faults.latency_ms = 2000
    sent = await slack.command("/code", f"days {ITEM} 30")
    assert sent.response.status_code == 200
    assert sent.seconds < 3.0  # Slack's deadline; the work takes at least 2 s
    assert slack.fake.calls_to("response") == []  # answered later, not in the ack
    answer = await slack.answer(sent, within=30.0)
    assert header(answer).startswith(f"30-day code for {ITEM}")
    assert stack.code_events(ITEM) == before + 1


async def test_same_trigger_id_twice_issues_one_code_and_resends_it(
    slack: SlackRig, stack: Any
) -> None:
    before = stack.code_events(ITEM)
    first = await slack.command("/code", f"days {ITEM} 30", trigger_id="13345224609.738474920.8088")
    first_answer = await slack.answer(first)
    second = await slack.command(
        "/code", f"days {ITEM} 30", trigger_id="13345224609.738474920.8088"
    )
    second_answer = await slack.answer(second)
    assert stack.code_events(ITEM) == before + 1
    assert second_answer.blocks == first_answer.blocks


async def test_a_redelivery_with_retry_headers_issues_no_second_code(
    slack: SlackRig, stack: Any
) -> None:
    before = stack.code_events(ITEM)
    url = slack.fake.response_url()
    body = encode_form(command_form("/code", f"days {ITEM} 30", response_url=url))
    assert (await slack.post(body)).status_code == 200
    await slack.fake.wait_calls(lambda c: c.method == "response")
    retry = signed_headers(body)
    retry |= {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert (await slack.post(body, retry)).status_code == 200
    first, second = await slack.fake.wait_calls(lambda c: c.method == "response", count=2)
    assert stack.code_events(ITEM) == before + 1
    assert second.blocks == first.blocks  # the stored reply is sent again


async def test_same_trigger_id_in_parallel_issues_one_code(slack: SlackRig, stack: Any) -> None:
    before = stack.code_events(ITEM)
    sent = await asyncio.gather(
        *(slack.command("/code", f"days {ITEM} 30", trigger_id="555.666.777") for _ in range(5))
    )
    assert [s.response.status_code for s in sent] == [200] * 5
    for one in sent:
        await slack.answer(one)
    assert stack.code_events(ITEM) == before + 1


@pytest.mark.parametrize(
    "text",
    ["payload", "help payload", f"code days {ITEM} 30 payload", "payload=1&x=2"],
)
async def test_text_containing_payload_still_routes(slack: SlackRig, text: str) -> None:
    sent = await slack.command("/erm", text)
    assert sent.response.status_code == 200
    answer = await slack.answer(sent)
    assert answer.status == 200
    assert header(answer)  # a real answer from the core, whatever it says


async def test_payload_in_a_code_note_issues_the_code(slack: SlackRig, stack: Any) -> None:
    before = stack.code_events(ITEM)
    answer = await slack.ask("/code", f"days {ITEM} 30 payload from cash")
    assert header(answer).startswith(f"30-day code for {ITEM}")
    assert stack.code_events(ITEM) == before + 1


async def test_erm_umbrella_without_text_is_help(slack: SlackRig) -> None:
    answer = await slack.ask("/erm", "", user_id="U2")
    assert header(answer).startswith("Your commands (")


def mrkdwn_texts(call: Any) -> list[str]:
    """The top-level text and every mrkdwn text object: what Slack parses for <...> markup."""
    found = [call.text]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(call.blocks)
    return found


async def test_user_text_is_escaped_for_mrkdwn(slack: SlackRig) -> None:
    answer = await slack.ask("/items", "<!channel> & <@U2>", user_id="U2")
    texts = mrkdwn_texts(answer)
    assert all("<" not in t and ">" not in t for t in texts)
    assert any("&lt;!channel&gt; &amp; &lt;@U2&gt;" in t for t in texts)


async def test_help_escapes_angle_brackets_of_usage_lines(slack: SlackRig) -> None:
    answer = await slack.ask("/erm", "help code", user_id="U1")
    text = shown(answer)
    assert "&lt;item&gt;" in text
    assert "<item>" not in text


async def test_slash_command_in_a_dm_is_private_chat(slack: SlackRig, stack: Any) -> None:
    """A DM (channel D...) reaches the core as a private chat; the reply stays ephemeral."""
    seen: list[Any] = []
    handle = stack.dispatcher.handle

    async def spy(request: Any) -> Any:
        seen.append(request)
        return await handle(request)

    stack.dispatcher.handle = spy
    answer = await slack.ask("/items", "", channel_id="D024BE91L", channel_name="directmessage")
    await slack.ask("/items", "", channel_id="C2", channel_name="ops")
    assert [r.private_chat for r in seen] == [True, False]
    assert seen[0].chat_id == "D024BE91L"
    assert seen[0].request_key.startswith("slack:cmd:")
    assert seen[0].identity.key == "slack:U1"
    assert seen[0].identity.name == "ann"
    assert seen[0].text == "/items"
    assert answer.body["response_type"] == "ephemeral"
