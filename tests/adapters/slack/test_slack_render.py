"""Block Kit rendering of the core's Reply: layout, escaping and Slack's limits."""

from __future__ import annotations

from typing import Any

import pytest
from fakes.slack import message_problem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.slack.render import MAX_BLOCKS, escape, render, render_blocks, respell
from bot.messages import Button, Code, Field, Reply, Tone


def kinds(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["type"] for b in blocks]


def test_a_full_reply_in_order_header_lines_fields_code_notes_buttons() -> None:
    reply = Reply(
        title="30-day code for TEST2503000001",
        lines=("First line",),
        fields=(Field("Item", "TEST2503000001"), Field("Client", "Ruth")),
        codes=(Code("*991 319 554 625 952 929 100#", "991319554625952929100", "Code"),),
        notes=("Type it on the keypad.",),
        buttons=(Button("Next page", "run", "abc123", "primary"),),
    )
    message = render(reply)
    blocks = message["blocks"]
    assert kinds(blocks) == ["header", "section", "section", "section", "context", "actions"]
    assert blocks[0]["text"] == {
        "type": "plain_text",
        "text": "30-day code for TEST2503000001",
        "emoji": True,
    }
    assert blocks[2]["fields"] == [
        {"type": "mrkdwn", "text": "*Item*\nTEST2503000001"},
        {"type": "mrkdwn", "text": "*Client*\nRuth"},
    ]
    assert blocks[3]["text"]["text"] == "*Code*\n```*991 319 554 625 952 929 100#```"
    assert blocks[4]["elements"] == [{"type": "mrkdwn", "text": "Type it on the keypad."}]
    assert blocks[5]["elements"] == [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": "Next page", "emoji": True},
            "action_id": "erm:run",
            "value": "abc123",
            "style": "primary",
        }
    ]
    assert message["text"] == reply.text()
    assert message_problem(message) is None


def test_each_code_gets_its_own_section() -> None:
    reply = Reply(codes=(Code("*1 2#", "12", "First"), Code("*3 4#", "34")))
    blocks = render_blocks(reply)
    assert [b["text"]["text"] for b in blocks] == ["*First*\n```*1 2#```", "```*3 4#```"]


@pytest.mark.parametrize(("tone", "prefix"), [(Tone.WARNING, ":warning: "), (Tone.ERROR, ":x: ")])
def test_warnings_and_errors_are_marked_in_the_header(tone: Tone, prefix: str) -> None:
    (block,) = render_blocks(Reply(title="Nope", tone=tone))
    assert block["text"]["text"] == prefix + "Nope"


def test_user_text_is_escaped_everywhere_it_is_mrkdwn() -> None:
    nasty = "<!channel> <@U1> <https://evil|click> & co"
    reply = Reply(
        title=nasty,
        lines=(nasty,),
        fields=(Field(nasty, nasty),),
        codes=(Code("*1#", "1", nasty),),
        notes=(nasty,),
    )
    message = render(reply)
    escaped = "&lt;!channel&gt; &lt;@U1&gt; &lt;https://evil|click&gt; &amp; co"
    assert message["text"].startswith(escaped)
    mrkdwn: list[str] = []
    for block in message["blocks"][1:]:
        if "text" in block:
            mrkdwn.append(block["text"]["text"])
        mrkdwn += [f["text"] for f in block.get("fields", ())]
        mrkdwn += [e["text"] for e in block.get("elements", ())]
    assert all("<" not in t and ">" not in t for t in mrkdwn)
    assert all(escaped in t for t in mrkdwn)
    assert message["blocks"][0]["text"]["text"] == nasty  # plain_text shows it literally


def test_escape() -> None:
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_header_is_cut_to_150_characters() -> None:
    (block,) = render_blocks(Reply(title="x" * 400))
    assert len(block["text"]["text"]) == 150


def test_more_than_ten_fields_take_several_sections() -> None:
    reply = Reply(fields=tuple(Field(f"F{i}", str(i)) for i in range(25)))
    blocks = render_blocks(reply)
    assert [len(b["fields"]) for b in blocks] == [10, 10, 5]


def test_long_field_values_are_cut_without_splitting_an_entity() -> None:
    (block,) = render_blocks(Reply(fields=(Field("Note", "&" * 3000),)))
    text = block["fields"][0]["text"]
    assert len(text) <= 2000
    assert text.endswith("&amp;…")


def test_lines_are_packed_into_sections_of_at_most_3000_characters() -> None:
    lines = tuple(f"line {i:03} " + "x" * 90 for i in range(80))
    blocks = render_blocks(Reply(lines=lines))
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks)
    assert "\n".join(b["text"]["text"] for b in blocks) == "\n".join(lines)
    assert len(blocks) == 3


def test_one_huge_line_is_split() -> None:
    blocks = render_blocks(Reply(lines=("<" * 5000,)))
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks)
    assert "".join(b["text"]["text"] for b in blocks) == "&lt;" * 5000


def test_a_reply_past_fifty_blocks_is_shortened_with_a_note_and_keeps_its_buttons() -> None:
    lines = tuple("y" * 2900 for _ in range(80))
    reply = Reply(
        title="Long",
        lines=lines,
        codes=(Code("*1#", "1"),),
        buttons=(Button("Next page", "run", "nxt"),),
    )
    message = render(reply)
    blocks = message["blocks"]
    assert len(blocks) == MAX_BLOCKS
    assert kinds(blocks)[-1] == "actions"
    assert any("```*1#```" in b.get("text", {}).get("text", "") for b in blocks)
    (note,) = [b for b in blocks if b["type"] == "context"]
    assert "more lines did not fit" in note["elements"][0]["text"]
    assert message_problem(message) is None


def test_many_notes_take_several_context_blocks() -> None:
    blocks = render_blocks(Reply(notes=tuple(f"n{i}" for i in range(12))))
    assert [len(b["elements"]) for b in blocks] == [10, 2]


def test_buttons_are_cut_to_slacks_limits_and_get_unique_action_ids() -> None:
    reply = Reply(
        buttons=tuple(Button("L" * 100, "run", f"id{i}") for i in range(30)),
    )
    blocks = render_blocks(reply)
    assert [len(b["elements"]) for b in blocks] == [25, 5]
    elements = [e for b in blocks for e in b["elements"]]
    assert all(len(e["text"]["text"]) == 75 for e in elements)
    ids = [e["action_id"] for e in elements]
    assert len(set(ids)) == 30
    assert all(i.startswith("erm:run") for i in ids)
    assert all("style" not in e for e in elements)


def test_a_button_value_over_2000_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="2000"):
        render(Reply(buttons=(Button("x", "run", "v" * 2001),)))


def test_an_empty_reply_still_has_text_and_a_block() -> None:
    message = render(Reply())
    assert message["text"] == "(nothing to show)"
    assert len(message["blocks"]) == 1
    assert message_problem(message) is None


def test_fallback_text_is_cut_to_3000_characters() -> None:
    message = render(Reply(lines=("z" * 10_000,)))
    assert len(message["text"]) == 3000


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400)
replies = st.builds(
    Reply,
    title=st.none() | texts,
    lines=st.lists(texts, max_size=120).map(tuple),
    fields=st.lists(st.builds(Field, texts, texts), max_size=30).map(tuple),
    codes=st.lists(st.builds(Code, texts, st.just("1"), texts), max_size=3).map(tuple),
    notes=st.lists(texts, max_size=15).map(tuple),
    buttons=st.lists(
        st.builds(
            Button,
            texts,
            st.sampled_from(["run", "confirm", "cancel"]),
            st.text("abcdefghijklmnop0123456789_-", min_size=1, max_size=16),
            st.sampled_from(["default", "primary", "danger"]),
        ),
        max_size=30,
    ).map(tuple),
    tone=st.sampled_from(list(Tone)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=replies)
def test_every_reply_renders_within_slacks_limits(reply: Reply) -> None:
    message = render(reply)
    assert message_problem(message) is None
    assert len(message["blocks"]) <= MAX_BLOCKS
    assert message["text"]


def test_commands_without_a_slash_command_are_spelled_under_the_umbrella() -> None:
    reply = Reply(
        title="Type /help for the list.",
        lines=("Ask an admin to run: /grant slack:U9 agent", "/history X works as it is"),
        notes=("Set one with /use NAME; a/use stays.",),
    )

    spelled = respell(reply, {"help", "grant", "use"})

    assert spelled.title == "Type /erm help for the list."
    assert spelled.lines == (
        "Ask an admin to run: /erm grant slack:U9 agent",
        "/history X works as it is",
    )
    assert spelled.notes == ("Set one with /erm use NAME; a/use stays.",)
