"""Rendering a Reply as Telegram HTML, checked by the fake's parser (the real API's rules)."""

from __future__ import annotations

import warnings
from datetime import timedelta

import pytest
from fakes.telegram import ApiError, parse_html, utf16_length
from telegram.error import RetryAfter
from telegram.warnings import PTBDeprecationWarning

from adapters.telegram.inbound import bot_commands, command_text
from adapters.telegram.outbound import retry_seconds
from adapters.telegram.render import (
    MAX_CALLBACK_DATA,
    MAX_MESSAGE,
    button_id,
    callback_data,
    keyboard,
    render,
)
from bot.commands import COMMANDS
from bot.messages import Button, Code, Field, Reply, Tone

NASTY = "<b>Mama & Sons</b> <script>alert(1)</script> a<b &amp; x>y ._-!()[]{}*~`#+=|"


def test_user_text_with_html_characters_renders_literally() -> None:
    reply = Reply(
        title=f"Client {NASTY}",
        lines=(NASTY,),
        fields=(Field("Note <&>", NASTY),),
        codes=(Code("*024 413 975#", "024413975", label="Code <1>"),),
        notes=(NASTY,),
        tone=Tone.WARNING,
    )

    [html] = render(reply)
    plain = parse_html(html)  # raises like Telegram's 400 "can't parse entities"

    assert plain.count(NASTY) == 4
    assert "Note <&>: " in plain
    assert "<code>*024 413 975#</code>" in html
    assert html.startswith("<b>")


def test_the_code_is_on_a_line_of_its_own_in_code_tags() -> None:
    reply = Reply(title="30-day code", codes=(Code("*111 222#", "111222"),), notes=("Type it",))

    lines = render(reply)[0].split("\n")

    assert "<code>*111 222#</code>" in lines
    assert lines[-1] == "<i>Type it</i>"


def test_a_long_reply_is_split_between_lines_and_every_part_fits() -> None:
    lines = tuple(f"{i:04d} item <&> {'x' * 60}" for i in range(400))
    reply = Reply(title="Many items", lines=lines, buttons=(Button("Next page", "run", "abc"),))

    parts = render(reply)

    assert len(parts) > 1
    seen: list[str] = []
    for part in parts:
        plain = parse_html(part)
        assert utf16_length(plain) <= MAX_MESSAGE
        seen += plain.split("\n")
    assert [line for line in seen if line[:4].isdigit()] == list(lines)


def test_a_single_line_longer_than_a_message_is_cut_without_breaking_entities() -> None:
    line = "&<>é😀" * 3000  # emoji count twice in UTF-16, entities five times in HTML

    parts = render(Reply(lines=(line,)))

    assert len(parts) >= 2
    plains = [parse_html(part) for part in parts]
    assert all(utf16_length(p) <= MAX_MESSAGE for p in plains)
    assert "".join(plains) == line


def test_every_rendered_part_is_accepted_by_telegram_limits() -> None:
    reply = Reply(title="T" * 5000, fields=(Field("F", "v" * 5000),), notes=("n" * 5000,))

    for part in render(reply):
        assert utf16_length(part) <= MAX_MESSAGE
        parse_html(part)


@pytest.mark.parametrize("label", ["Confirm ✅", "Подтвердить", "确认发放代码", "✔️" * 40])
def test_callback_data_is_the_opaque_id_whatever_the_label(label: str) -> None:
    button = Button(label, "confirm", "Ab3_-xYz90Qw")

    markup = keyboard([button])

    assert markup is not None
    [[rendered]] = markup.inline_keyboard
    assert rendered.callback_data == "b:Ab3_-xYz90Qw"
    assert len(str(rendered.callback_data).encode()) <= MAX_CALLBACK_DATA
    assert button_id(str(rendered.callback_data)) == "Ab3_-xYz90Qw"


def test_callback_data_over_64_utf8_bytes_is_refused_not_sent() -> None:
    fits = Button("ok", "run", "é" * 31)  # 62 bytes + "b:" = 64
    too_long = Button("too long", "run", "é" * 32)  # 66 bytes, though only 34 characters

    assert len(callback_data(fits).encode()) == MAX_CALLBACK_DATA
    with pytest.raises(ValueError, match="callback_data"):
        callback_data(too_long)
    markup = keyboard([fits, too_long])
    assert markup is not None
    assert [b.text for row in markup.inline_keyboard for b in row] == ["ok"]


def test_button_id_ignores_data_it_did_not_make() -> None:
    assert button_id(None) is None
    assert button_id("") is None
    assert button_id("b:") is None
    assert button_id("something-else") is None


def test_menu_has_one_valid_entry_per_command_word() -> None:
    menu = bot_commands(COMMANDS)

    words = [c.command for c in menu]
    assert len(words) == len(set(words)) == len({c.path[0] for c in COMMANDS})
    assert "code" in words
    for entry in menu:
        assert 1 <= len(entry.description) <= 256
    code = next(c for c in menu if c.command == "code")
    assert "days" in code.description


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/code days X 30", "/code days X 30"),
        ("/code@erm_test_bot days X 30", "/code days X 30"),
        ("/code@ERM_Test_Bot days X 30", "/code days X 30"),
        ("/code@other_bot days X 30", None),
        ("  /whoami@erm_test_bot  ", "/whoami"),
        ("/history X\n10", "/history X\n10"),
        ("hello", None),
        ("/", None),
        ("/foo", None),  # not one of ours, without @bot: another bot's command in a group
        ("/foo@erm_test_bot", "/foo"),  # addressed to us: the core answers "unknown command"
    ],
)
def test_command_text_maps_telegram_commands_to_core_text(text: str, expected: str | None) -> None:
    ours = {"code", "whoami", "history"}

    assert command_text(text, "erm_test_bot", ours=lambda w: w in ours) == expected


@pytest.mark.parametrize(
    "html",
    ["a < b", "<foo>x</foo>", "<b>x", "x</b>", "fish & chips", "a > b", '<a title="x">y</a>'],
)
def test_the_fake_refuses_html_that_telegram_refuses(html: str) -> None:
    with pytest.raises(ApiError, match="can't parse entities"):
        parse_html(html)


def test_retry_after_is_read_in_both_ptb_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    assert retry_seconds(RetryAfter(timedelta(seconds=3))) == 3.0

    monkeypatch.delenv("PTB_TIMEDELTA")  # PTB 22's default: ints, with a deprecation warning
    with pytest.warns(PTBDeprecationWarning):
        old_style = RetryAfter(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert retry_seconds(old_style) == 5.0
