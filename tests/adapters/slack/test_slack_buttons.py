"""Buttons end to end: signed block_actions -> ack -> dispatcher.press -> card, reply, notice.

Paging runs on /items' Next button; the decide-once plumbing runs on the core's Confirm/Cancel
card (which the core gives a code command sent long ago).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes.slack import shown
from slack_rig import SlackRig, buttons

from adapters.slack.outbound import Target
from adapters.slack.render import render
from bot.messages import Code, Identity, Pressed, Reply, Request, Visibility
from erm.sandbox import OPEN_ACP1_OEM_ID

ITEM = OPEN_ACP1_OEM_ID


def header(call: Any) -> str:
    blocks = [b for b in call.blocks if b["type"] == "header"]
    return str(blocks[0]["text"]["text"]) if blocks else ""


def notes(call: Any) -> str:
    return " ".join(e["text"] for b in call.blocks if b["type"] == "context" for e in b["elements"])


async def stale_card(slack: SlackRig, stack: Any, *, user: str = "U1") -> tuple[Reply, str]:
    """A Confirm/Cancel card for a code command sent an hour ago, posted in channel C1."""
    reply = await stack.dispatcher.handle(
        Request(
            Identity("slack", user, "ann"),
            f"/code days {ITEM} 30",
            request_key=f"slack:cmd:stale-{user}",
            chat_id="C1",
            private_chat=False,
            sent_at=datetime.now(UTC) - timedelta(hours=1),
        )
    )
    assert [b.action for b in reply.buttons] == ["confirm", "cancel"]
    posted = await slack.adapter.outbound.post_message("C1", render(reply))
    return reply, str(posted["ts"])


def button_id(reply: Reply, action: str) -> str:
    return next(b.value for b in reply.buttons if b.action == action)


async def test_next_page_replaces_the_owners_card(slack: SlackRig) -> None:
    first = await slack.ask("/items", "", user_id="U2")
    (next_button,) = buttons(first)
    assert next_button["action_id"] == "erm:run"
    assert next_button["text"]["text"] == "Next page"
    sent = await slack.click(
        next_button["action_id"], next_button["value"], user_id="U2", ephemeral=True
    )
    assert sent.response.status_code == 200
    assert sent.response.content == b""
    assert sent.seconds < 1.0
    page = await slack.answer(sent)
    assert page.body["replace_original"] is True
    assert header(page) == "Items of acme"
    assert "Page 2 of" in notes(page)
    assert shown(page) != shown(first)
    assert [b["text"]["text"] for b in buttons(page)] == ["Next page"]


async def test_next_page_for_someone_else_is_a_new_message(slack: SlackRig) -> None:
    first = await slack.ask("/items", "", user_id="U2", channel_id="C1")
    (next_button,) = buttons(first)
    sent = await slack.click("erm:run", next_button["value"], user_id="U1", channel_id="C1")
    page = await slack.answer(sent)
    assert page.body["replace_original"] is False
    assert page.body["response_type"] == "ephemeral"
    assert "Page 2 of" in notes(page)


async def test_click_reaches_the_core_as_a_click(slack: SlackRig, stack: Any) -> None:
    seen: list[Any] = []
    press = stack.dispatcher.press

    async def spy(click: Any) -> Any:
        seen.append(click)
        return await press(click)

    stack.dispatcher.press = spy
    sent = await slack.click(
        "erm:run",
        "nosuchbutton",
        user_id="U2",
        user_name="bob",
        channel_id="D77",
        trigger_id="9.8.7",
    )
    await slack.answer(sent)
    (click,) = seen
    assert click.identity == Identity("slack", "U2", "bob")
    assert click.button_id == "nosuchbutton"
    assert click.request_key == "slack:click:9.8.7"
    assert click.chat_id == "D77"
    assert click.private_chat is True


async def test_unknown_button_gets_a_private_notice(slack: SlackRig) -> None:
    sent = await slack.click("erm:run", "expired-id-123")
    notice = await slack.answer(sent)
    assert notice.body["response_type"] == "ephemeral"
    assert notice.body["replace_original"] is False
    assert "expired" in notice.text


async def test_confirm_issues_once_replaces_the_card_and_removes_its_buttons(
    slack: SlackRig, stack: Any
) -> None:
    before = stack.code_events(ITEM)
    card, ts = await stale_card(slack, stack)
    sent = await slack.click(
        "erm:confirm", button_id(card, "confirm"), channel_id="C1", message_ts=ts
    )
    assert sent.response.status_code == 200
    replaced, code_reply = await slack.answers(sent, count=2)
    assert replaced.body["replace_original"] is True
    assert header(replaced).startswith("Confirmed")
    assert buttons(replaced) == []
    assert code_reply.body["replace_original"] is False
    assert code_reply.body["response_type"] == "ephemeral"
    assert header(code_reply).startswith(f"30-day code for {ITEM}")
    assert stack.code_events(ITEM) == before + 1


async def test_second_click_on_a_decided_card_changes_nothing_and_is_told(
    slack: SlackRig, stack: Any
) -> None:
    before = stack.code_events(ITEM)
    card, ts = await stale_card(slack, stack)
    first = await slack.click(
        "erm:confirm", button_id(card, "confirm"), channel_id="C1", message_ts=ts
    )
    await slack.answers(first, count=2)
    for action in ("confirm", "cancel"):
        again = await slack.click(
            f"erm:{action}", button_id(card, action), channel_id="C1", message_ts=ts
        )
        (notice,) = await slack.answers(again)
        assert notice.body["response_type"] == "ephemeral"
        assert notice.body["replace_original"] is False
        assert "Already confirmed" in notice.text
    await slack.adapter.drain()
    assert stack.code_events(ITEM) == before + 1
    assert slack.fake.calls_to("chat.update") == []


async def test_two_clicks_at_once_issue_one_code(slack: SlackRig, stack: Any) -> None:
    before = stack.code_events(ITEM)
    card, ts = await stale_card(slack, stack)
    sent = await asyncio.gather(
        slack.click("erm:confirm", button_id(card, "confirm"), channel_id="C1", message_ts=ts),
        slack.click("erm:cancel", button_id(card, "cancel"), channel_id="C1", message_ts=ts),
        slack.click("erm:confirm", button_id(card, "confirm"), channel_id="C1", message_ts=ts),
    )
    await slack.adapter.drain()
    assert all(s.response.status_code == 200 for s in sent)
    replaced = [c for c in slack.fake.calls_to("response") if c.body.get("replace_original")]
    assert len(replaced) == 1  # one winner replaced the card
    told = [c for c in slack.fake.calls_to("response") if "Already" in c.text]
    assert len(told) == 2
    assert stack.code_events(ITEM) - before in (0, 1)  # 1 if confirm won, 0 if cancel did


async def test_someone_else_is_refused_privately_and_nothing_changes(
    slack: SlackRig, stack: Any
) -> None:
    before = stack.code_events(ITEM)
    card, ts = await stale_card(slack, stack)
    refused = await slack.click(
        "erm:confirm", button_id(card, "confirm"), user_id="U2", channel_id="C1", message_ts=ts
    )
    (notice,) = await slack.answers(refused)
    assert notice.body["response_type"] == "ephemeral"
    assert notice.body["replace_original"] is False
    assert "Only the person who sent this command" in notice.text
    await slack.adapter.drain()
    assert stack.code_events(ITEM) == before
    # The owner can still decide: the refusal changed no state.
    cancel = await slack.click(
        "erm:cancel", button_id(card, "cancel"), channel_id="C1", message_ts=ts
    )
    (replaced,) = await slack.answers(cancel)
    assert header(replaced).startswith("Cancelled")
    assert buttons(replaced) == []
    assert stack.code_events(ITEM) == before


async def test_card_is_updated_with_chat_update_when_the_response_url_is_used_up(
    slack: SlackRig, stack: Any
) -> None:
    card, ts = await stale_card(slack, stack)
    url = slack.fake.response_url()
    while slack.adapter.outbound.urls.take(url):
        pass
    await slack.click(
        "erm:cancel", button_id(card, "cancel"), channel_id="C1", message_ts=ts, response_url=url
    )
    (update,) = await slack.fake.wait_for("chat.update")
    assert update.body["channel"] == "C1"
    assert update.body["ts"] == ts
    assert update.answer["ok"] is True  # type: ignore[index]
    assert buttons(update) == []
    assert header(update).startswith("Cancelled")
    assert slack.fake.calls_to("response") == []


async def test_a_card_with_a_code_never_replaces_a_channel_message(slack: SlackRig) -> None:
    """Safety net: a confidential card for a shared message goes to the presser privately."""
    secret = Reply(title="Your code", codes=(Code("*123 456#", "123456", "Code"),))
    url = slack.fake.response_url()
    target = Target("C1", "U1", response_url=url, message_ts="1.2", ephemeral=False)
    await slack.adapter.apply(target, Pressed(card=secret))
    withheld, private = slack.fake.calls_to("response")
    assert withheld.body["replace_original"] is True
    assert "123 456" not in withheld.dump()
    assert private.body["replace_original"] is False
    assert private.body["response_type"] == "ephemeral"
    assert "*123 456#" in private.dump()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(title="Note for the team", visibility=Visibility.PUBLIC), "in_channel"),
        (Reply(title="Just you"), "ephemeral"),
        (
            Reply(title="Code", codes=(Code("*1#", "1"),), visibility=Visibility.PUBLIC),
            "ephemeral",
        ),
        (Reply(title="Invite", confidential=True, visibility=Visibility.PUBLIC), "ephemeral"),
    ],
    ids=["public", "private", "public-with-code", "public-confidential"],
)
async def test_only_public_replies_without_secrets_go_in_channel(
    slack: SlackRig, reply: Reply, expected: str
) -> None:
    url = slack.fake.response_url()
    await slack.adapter.send(Target("C1", "U1", response_url=url), reply)
    (call,) = slack.fake.calls_to("response")
    assert call.body["response_type"] == expected


async def test_older_history_replaces_the_private_card(slack: SlackRig) -> None:
    await slack.ask("/code", f"days {ITEM} 30")  # the item now has at least two code events
    first = await slack.ask("/history", f"{ITEM} 1", channel_id="C1")
    assert header(first).startswith("Last 1 code of")
    (older,) = buttons(first)
    assert older["text"]["text"] == "Older"
    sent = await slack.click(older["action_id"], older["value"], channel_id="C1", ephemeral=True)
    page = await slack.answer(sent)
    assert page.body["replace_original"] is True  # the ephemeral card, seen only by its owner
    assert header(page).startswith("2-2 code of")
    await slack.adapter.drain()
    assert slack.fake.calls_to("chat.postMessage", "chat.update") == []
