"""A ``Reply`` as Telegram messages: HTML parse mode, split at 4096, inline keyboards.

Everything taken from the reply is escaped with ``html.escape`` (Telegram's HTML mode knows only
``&lt; &gt; &amp; &quot;``), so user-typed notes, client names and ERM messages never break a
message. Codes go in ``<code>`` so a tap copies them; notes are italic small print.

Telegram counts the 4096-character limit after entity parsing, in UTF-16 code units. The HTML
we send is never shorter than what Telegram counts, so measuring the HTML in UTF-16 units keeps
every part under the limit without parsing it again. Parts are cut between lines; only a single
line longer than a whole message is cut inside, between characters of its unescaped text.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from adapters.text_parts import Layout, Line
from bot.messages import Button, Reply, Tone

MAX_MESSAGE = 4096
MAX_CALLBACK_DATA = 64  # bytes of UTF-8
BUTTON_PREFIX = "b:"
BUTTONS_PER_ROW = 3
log = logging.getLogger(__name__)
_TONE_MARK = {Tone.WARNING: "⚠️ ", Tone.ERROR: "⛔ "}


def escape(text: str) -> str:
    """Text as literal characters in Telegram HTML."""
    return html.escape(text, quote=False)


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


_LAYOUT = Layout(escape, utf16_length)


def _bold(escaped: str) -> str:
    return f"<b>{escaped}</b>"


def _italic(escaped: str) -> str:
    return f"<i>{escaped}</i>"


def _code(escaped: str) -> str:
    return f"<code>{escaped}</code>"


def _monospace(spans: Sequence[str]) -> Callable[[str], str]:
    """Each of ``spans`` (codes in a line, say) in ``<code>``: a tap copies it."""
    escaped_spans = sorted({escape(s) for s in spans if s.strip()}, key=len, reverse=True)
    if not escaped_spans:
        return lambda escaped: escaped
    pattern = re.compile("|".join(re.escape(s) for s in escaped_spans))
    return lambda escaped: pattern.sub(lambda m: _code(m.group()), escaped)


def _field(label: str) -> Callable[[str], str]:
    return lambda escaped: f"{escape(label)}: <b>{escaped}</b>"


def _lines(reply: Reply) -> list[Line | None]:
    """The reply as lines; ``None`` is a blank line between sections."""
    out: list[Line | None] = []
    if reply.title:
        out.append(Line(_TONE_MARK.get(reply.tone, "") + reply.title, _bold))
    spans = _monospace(reply.monospace)
    body: list[Line] = [Line(line, spans) for line in reply.lines]
    body += [Line(f.value, _field(f.label)) for f in reply.fields]
    if body:
        out += body
    for code in reply.codes:
        out.append(None)
        if code.label:
            out.append(Line(code.label))
        out.append(Line(code.keypad, _code))
    if reply.notes:
        out.append(None)
        out += [Line(note, _italic) for note in reply.notes]
    return out


def render(reply: Reply, limit: int = MAX_MESSAGE) -> list[str]:
    """The reply as one or more HTML messages, each at most ``limit`` UTF-16 units."""
    return _LAYOUT.parts(_lines(reply), limit) or [escape(reply.text()) or "(empty reply)"]


def callback_data(button: Button) -> str:
    """``b:`` + the button's opaque id; ValueError when over Telegram's 64 bytes."""
    data = BUTTON_PREFIX + button.value
    if not button.value or len(data.encode()) > MAX_CALLBACK_DATA:
        raise ValueError(
            f"button id of {len(button.value.encode())} bytes does not fit in callback_data"
        )
    return data


def button_id(data: str | None) -> str | None:
    """The opaque id in ``callback_data`` made by :func:`callback_data`, or None."""
    if not data or not data.startswith(BUTTON_PREFIX) or len(data) == len(BUTTON_PREFIX):
        return None
    return data[len(BUTTON_PREFIX) :]


def keyboard(buttons: Sequence[Button]) -> InlineKeyboardMarkup | None:
    """Inline keyboard for the buttons; buttons whose id cannot fit are left out."""
    usable: list[InlineKeyboardButton] = []
    for button in buttons:
        try:
            data = callback_data(button)
        except ValueError as exc:
            log.warning("button %.30r left out of the keyboard: %s", button.label, exc)
            continue
        usable.append(InlineKeyboardButton(button.label[:64] or "·", callback_data=data))
    if not usable:
        return None
    rows = [usable[i : i + BUTTONS_PER_ROW] for i in range(0, len(usable), BUTTONS_PER_ROW)]
    return InlineKeyboardMarkup(rows)


def plain(text: str) -> str:
    """A short text of ours (not a Reply) as escaped HTML."""
    return escape(text)
