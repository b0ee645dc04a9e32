"""A core ``Reply`` as a Slack message: Block Kit blocks plus the plain-text ``text`` fallback.

Layout: a header (the title), the lines as mrkdwn sections, the fields two columns wide, each code
in its own section in monospace, the notes as a context block and the buttons as an actions block.
Everything a user typed is escaped for mrkdwn (``&``, ``<``, ``>``: otherwise ``<!channel>`` or a
``<url|label>`` in an item name would ping or link). Slack's limits are kept here, in one place:
a reply that would not fit one message is shortened with a note saying so (long lists come paged
by the core, with its own Next button, so this is a safety net rather than the paging).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

from bot.messages import Button, Field, Reply, Tone

MAX_BLOCKS = 50  # per message
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10  # per section
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_CONTEXT_TEXT = 2000
MAX_ACTIONS = 25  # elements per actions block
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTION_ID = 255
MAX_FALLBACK_TEXT = 3000  # the top-level text is only a notification and screen-reader fallback

EMPTY_TEXT = "(nothing to show)"
ACTION_PREFIX = "erm:"  # every button's action_id starts with it; the click handler matches it

_TONE_EMOJI = {Tone.WARNING: ":warning: ", Tone.ERROR: ":x: "}

Block = dict[str, Any]


def escape(text: str) -> str:
    """Text made literal for Slack mrkdwn and the ``text`` field (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shorten(escaped: str, limit: int) -> str:
    """Shorten already-escaped text without splitting an entity such as ``&amp;``."""
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _cut_escaped(text: str, limit: int) -> str:
    return _shorten(escape(text), limit)


def fallback_text(reply: Reply) -> str:
    """The message's top-level ``text``: the reply's plain-text form, escaped."""
    text = _cut_escaped(reply.text(), MAX_FALLBACK_TEXT)
    return text if text.strip() else EMPTY_TEXT


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _line_sections(lines: tuple[str, ...]) -> list[Block]:
    """Lines packed into as few sections as fit 3000 characters each, split at line ends."""
    chunks: list[str] = []
    current = ""
    for raw in lines:
        line = escape(raw)
        while len(line) > MAX_SECTION_TEXT:  # one very long line: split it hard
            if current:
                chunks.append(current)
                current = ""
            cut = line[:MAX_SECTION_TEXT]
            amp = cut.rfind("&")
            if amp > 0 and ";" not in cut[amp:]:
                cut = cut[:amp]
            chunks.append(cut)
            line = line[len(cut) :]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > MAX_SECTION_TEXT:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current:
        chunks.append(current)
    return [{"type": "section", "text": _mrkdwn(chunk)} for chunk in chunks if chunk.strip()]


def _field_text(label: str, value: str) -> dict[str, str]:
    text = f"*{escape(label)}*\n{escape(value)}" if label else escape(value)
    return _mrkdwn(_shorten(text, MAX_FIELD_TEXT))


def _field_sections(reply: Reply) -> list[Block]:
    texts = [_field_text(f.label, f.value) for f in reply.fields if (f.label + f.value).strip()]
    return [
        {"type": "section", "fields": texts[i : i + MAX_FIELDS]}
        for i in range(0, len(texts), MAX_FIELDS)
    ]


def _code_section(label: str, keypad: str) -> Block:
    code = f"```{escape(keypad)}```"
    text = f"*{_cut_escaped(label, 200)}*\n{code}" if label.strip() else code
    return {"type": "section", "text": _mrkdwn(_cut(text, MAX_SECTION_TEXT))}


def _context_blocks(notes: tuple[str, ...]) -> list[Block]:
    elements = [_mrkdwn(_cut_escaped(note, MAX_CONTEXT_TEXT)) for note in notes if note.strip()]
    return [
        {"type": "context", "elements": elements[i : i + MAX_CONTEXT_ELEMENTS]}
        for i in range(0, len(elements), MAX_CONTEXT_ELEMENTS)
    ]


def action_id(action: str, taken: set[str]) -> str:
    """``erm:<action>``, made unique within the message (Slack requires it per block)."""
    base = f"{ACTION_PREFIX}{action}"[: MAX_ACTION_ID - 4]
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}:{n}"
    taken.add(candidate)
    return candidate


def _button(button: Button, taken: set[str]) -> Block:
    if len(button.value) > MAX_BUTTON_VALUE:
        raise ValueError(f"button value of {len(button.value)} characters (Slack allows 2000)")
    element: Block = {
        "type": "button",
        "text": {
            "type": "plain_text",
            "text": _cut(button.label.strip() or button.action, MAX_BUTTON_TEXT),
            "emoji": True,
        },
        "action_id": action_id(button.action, taken),
        "value": button.value,
    }
    if button.style in ("primary", "danger"):
        element["style"] = button.style
    return element


def _action_blocks(buttons: tuple[Button, ...]) -> list[Block]:
    taken: set[str] = set()
    elements = [_button(b, taken) for b in buttons]
    return [
        {"type": "actions", "elements": elements[i : i + MAX_ACTIONS]}
        for i in range(0, len(elements), MAX_ACTIONS)
    ]


def render_blocks(reply: Reply) -> list[Block]:
    """The reply's blocks, at most 50; the body is shortened (with a note) when it would not fit."""
    head: list[Block] = []
    if reply.title and reply.title.strip():
        title = _TONE_EMOJI.get(reply.tone, "") + reply.title.replace("\n", " ")
        head.append(
            {
                "type": "header",
                "text": {"type": "plain_text", "text": _cut(title, MAX_HEADER_TEXT), "emoji": True},
            }
        )
    lines = _line_sections(reply.lines)
    fields = _field_sections(reply)
    codes = [_code_section(c.label, c.keypad or c.digits) for c in reply.codes]
    notes = _context_blocks(reply.notes)
    actions = _action_blocks(reply.buttons)
    fixed = len(head) + len(codes) + len(notes) + len(actions)
    room = MAX_BLOCKS - fixed
    if len(lines) + len(fields) > room:
        room -= 1  # for the note that says what was left out
        fields = fields[: max(room, 0)]
        shown_lines = lines[: max(room - len(fields), 0)]
        hidden = sum(b["text"]["text"].count("\n") + 1 for b in lines[len(shown_lines) :])
        lines = shown_lines
        notes = [
            *notes,
            {
                "type": "context",
                "elements": [
                    _mrkdwn(f"… {hidden} more lines did not fit in one Slack message.")
                    if hidden
                    else _mrkdwn("… some fields did not fit in one Slack message.")
                ],
            },
        ]
    blocks = [*head, *lines, *fields, *codes, *notes, *actions]
    if not blocks:
        blocks = [{"type": "section", "text": _mrkdwn(fallback_text(reply))}]
    return blocks[:MAX_BLOCKS]


def render(reply: Reply) -> dict[str, Any]:
    """The message body for chat.postMessage, chat.postEphemeral, chat.update or a response_url."""
    return {"text": fallback_text(reply), "blocks": render_blocks(reply)}


def respell(reply: Reply, umbrella_words: Iterable[str], umbrella: str = "erm") -> Reply:
    """Commands Slack serves only under the umbrella, spelled as Slack users type them.

    The core writes ``/help`` or ``/grant ...``; in Slack those are ``/erm help``, ``/erm grant``.
    """
    words = sorted(set(umbrella_words), key=len, reverse=True)
    if not words:
        return reply
    pattern = re.compile(r"(?<![\w/])/(" + "|".join(map(re.escape, words)) + r")\b")

    def fix(text: str) -> str:
        return pattern.sub(rf"/{umbrella} \1", text)

    return dataclasses.replace(
        reply,
        title=fix(reply.title) if reply.title else reply.title,
        lines=tuple(map(fix, reply.lines)),
        fields=tuple(Field(f.label, fix(f.value)) for f in reply.fields),
        notes=tuple(map(fix, reply.notes)),
    )
