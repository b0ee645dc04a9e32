"""A Reply as WhatsApp messages: markup, escaping, the 4096 split, buttons and lists."""

from __future__ import annotations

from adapters.whatsapp.render import (
    MAX_TEXT,
    button_id,
    cut,
    escape,
    interactive,
    messages,
    render,
    units,
)
from bot.messages import Action, Button, Code, Field, Reply, Tone

JOINER = "\u2060"


def test_title_bold_code_monospace_fields_and_notes_italic() -> None:
    reply = Reply(
        title="Code issued",
        fields=(Field("Item", "X1"),),
        codes=(Code("*123 456#", "123456", "Days code"),),
        notes=("Valid once.",),
    )
    [text] = render(reply)
    assert text == "*Code issued*\nItem: X1\n\nDays code\n```*123 456#```\n\n_Valid once._"


def test_a_warning_is_marked() -> None:
    [text] = render(Reply(title="Careful", tone=Tone.WARNING))
    assert text.startswith("*⚠️ Careful*")


def test_markers_in_reply_text_cannot_format_anything() -> None:
    [text] = render(Reply(lines=("*not bold* _not italic_ ~no~ ```no```",)))
    for marked in ("*not", "_not", "~no", "```"):
        assert marked not in text
    # Shown as typed once the invisible joiners are taken out (what the core does on input).
    assert text.replace(JOINER, "") == "*not bold* _not italic_ ~no~ ```no```"
    assert escape("ITEM_1") == f"ITEM{JOINER}_{JOINER}1"


def test_codes_within_a_line_are_monospace() -> None:
    [text] = render(Reply(lines=("2025-12-01 *111 222#",), monospace=("*111 222#",)))
    assert text == "2025-12-01 ```*111 222#```"


def test_long_replies_are_split_between_lines_within_the_limit() -> None:
    lines = tuple(f"line {i} " + "x" * 90 for i in range(120))
    parts = render(Reply(title="History", lines=lines))
    assert len(parts) > 1
    assert all(units(p) <= MAX_TEXT for p in parts)
    joined = "\n".join(parts)
    assert all(line in joined.split("\n") for line in lines)  # no line was cut


def test_a_single_line_longer_than_a_message_is_cut_inside() -> None:
    parts = render(Reply(lines=("é" * 5000,)))
    assert [len(p) for p in parts] == [MAX_TEXT, 5000 - MAX_TEXT]


def test_emoji_count_as_two_units() -> None:
    parts = render(Reply(lines=("😀" * 3000,)))
    assert all(units(p) <= MAX_TEXT for p in parts)
    assert "".join(parts) == "😀" * 3000


def run(label: str, stored: str) -> Button:
    return Button(label, Action.RUN, stored)


def test_up_to_three_buttons_are_reply_buttons_on_the_text() -> None:
    reply = Reply(title="Approve?", buttons=(run("Approve", "id1"), run("Deny", "id2")))
    [message] = messages(reply)
    assert message.type == "interactive"
    assert message.content["type"] == "button"
    assert message.content["body"]["text"] == "*Approve?*"
    buttons = message.content["action"]["buttons"]
    assert [(b["reply"]["id"], b["reply"]["title"]) for b in buttons] == [
        ("b:id1", "Approve"),
        ("b:id2", "Deny"),
    ]
    assert button_id(buttons[0]["reply"]["id"]) == "id1"


def test_long_button_titles_are_cut_at_a_word() -> None:
    assert cut("Older entries of the history", 20) == "Older entries of…"
    assert cut("Supercalifragilisticexpialidocious", 20) == "Supercalifragilisti…"
    assert len(cut("a" * 50, 20)) == 20


def test_more_than_three_buttons_become_a_list_of_at_most_ten_rows() -> None:
    buttons = tuple(run(f"Choice number {i} with a long description", f"id{i}") for i in range(12))
    content = interactive("Pick one", buttons)
    assert content is not None
    assert content["type"] == "list"
    [section] = content["action"]["sections"]
    rows = section["rows"]
    assert len(rows) == 10
    assert all(len(r["title"]) <= 24 and len(r["description"]) <= 72 for r in rows)
    assert len(content["action"]["button"]) <= 20


def test_titles_that_collide_once_cut_become_a_list() -> None:
    same = "A very long label that ends in "
    content = interactive("x", (run(same + "one", "a"), run(same + "two", "b")))
    assert content is not None
    assert content["type"] == "list"


def test_buttons_ride_on_a_message_of_their_own_when_the_text_is_too_long() -> None:
    reply = Reply(lines=("y" * 2000,), buttons=(run("Older", "id1"),))
    first, second = messages(reply)
    assert first.type == "text"
    assert second.type == "interactive"
    assert second.content["body"]["text"] == "Choose:"


def test_buttons_whose_id_cannot_fit_are_left_out() -> None:
    assert interactive("x", (run("Too long", "z" * 300),)) is None
    [message] = messages(Reply(title="t", buttons=(run("Too long", "z" * 300),)))
    assert message.type == "text"


def test_payloads_not_made_by_us_are_no_button() -> None:
    assert button_id("b:") is None
    assert button_id("other") is None
    assert button_id(None) is None
