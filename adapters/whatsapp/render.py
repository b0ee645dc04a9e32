"""A ``Reply`` as WhatsApp messages: text with WhatsApp's own markup, split at 4096 characters,
and its buttons as reply buttons (at most 3) or a list message (more).

WhatsApp formats ``*bold*``, ``_italic_``, ``~strike~`` and ```` ```monospace``` ```` wherever
the markers sit at word boundaries, and has no escape character. Text taken from a reply (item
names, notes people typed, ERM's messages) may hold those markers, so every marker character in
it is wrapped in WORD JOINERs (U+2060): it shows as itself, touches no word boundary, and so
opens or closes nothing. The core strips zero-width characters from what people type
(``bot.messages.visible``), so text copied back from a message still works as a command. Our
own markup goes around the escaped text. Codes go in a monospace block, alone on their line:
nothing to escape there (keypad codes are digits, ``*`` and ``#``), and a long press copies it.

Lengths are counted in UTF-16 units, never fewer than WhatsApp's characters, so every part fits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.text_parts import Layout, Line
from bot.messages import Button, Reply, Tone

MAX_TEXT = 4096
MAX_BUTTON_BODY = 1024
MAX_LIST_BODY = 4096
MAX_REPLY_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_ROWS = 10
MAX_ROW_TITLE = 24
MAX_ROW_DESCRIPTION = 72
MAX_BUTTON_ID = 200  # a list row's id limit (reply buttons allow 256)
BUTTON_PREFIX = "b:"
LIST_LABEL = "Choose"
CHOOSE_TEXT = "Choose:"
_MARKERS = re.compile(r"[*_~`]")
_JOINER = "\u2060"
_TONE_MARK = {Tone.WARNING: "⚠️ ", Tone.ERROR: "⛔ "}
log = logging.getLogger(__name__)


def escape(text: str) -> str:
    """``text`` shown as itself: no marker in it can open or close WhatsApp formatting."""
    return _MARKERS.sub(lambda m: f"{_JOINER}{m.group()}{_JOINER}", text)


def units(text: str) -> int:
    """Length in UTF-16 units (at least WhatsApp's count of characters)."""
    return len(text.encode("utf-16-le")) // 2


_LAYOUT = Layout(escape, units)


def _bold(escaped: str) -> str:
    return f"*{escaped}*"


def _italic(escaped: str) -> str:
    return f"_{escaped}_"


def _block(text: str) -> Callable[[str], str]:
    # A code's own text, unescaped: nothing is formatted inside a monospace block.
    return lambda _escaped: f"```{text}```"


def _monospace(spans: Sequence[str]) -> Callable[[str], str]:
    """Each of ``spans`` (codes within a line) as monospace, as itself (nothing is formatted
    inside a monospace block, so no joiner is needed there): a long press copies it clean."""
    raw = {escape(s): s for s in spans if s.strip() and "`" not in s}
    if not raw:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(s) for s in sorted(raw, key=len, reverse=True)))
    return lambda text: pattern.sub(lambda m: f"```{raw[m.group()]}```", text)


def _lines(reply: Reply) -> list[Line | None]:
    """The reply as lines; None is a blank line between sections."""
    out: list[Line | None] = []
    if reply.title:
        out.append(Line(_TONE_MARK.get(reply.tone, "") + reply.title, _bold))
    spans = _monospace(reply.monospace)
    out += [Line(line, spans) for line in reply.lines]
    out += [Line(f"{f.label}: {f.value}") for f in reply.fields]
    for code in reply.codes:
        out.append(None)
        if code.label:
            out.append(Line(code.label))
        out.append(Line(code.keypad, _block(code.keypad)))
    if reply.notes:
        out.append(None)
        out += [Line(note, _italic) for note in reply.notes]
    return out


def render(reply: Reply, limit: int = MAX_TEXT) -> list[str]:
    """The reply as one or more texts of at most ``limit`` units, cut between lines."""
    return _LAYOUT.parts(_lines(reply), limit) or [escape(reply.text())[:limit] or "(empty reply)"]


def cut(label: str, limit: int) -> str:
    """``label`` in at most ``limit`` characters: whole words where they fit, then "…"."""
    label = " ".join(label.split())
    if len(label) <= limit:
        return label
    room = label[: limit - 1]
    space = room.rfind(" ")
    if space >= limit // 2:  # a word boundary that keeps at least half of the room
        room = room[:space]
    return room.rstrip(" ,.;:-") + "…"


def button_payload(button: Button) -> str | None:
    """``b:`` + the button's stored id; None (left out) when it cannot fit."""
    payload = BUTTON_PREFIX + button.value
    if not button.value or len(payload) > MAX_BUTTON_ID:
        log.warning("button %.30r left out: its id does not fit", button.label)
        return None
    return payload


def button_id(payload: str | None) -> str | None:
    """The stored id in a tapped button's payload made by :func:`button_payload`, or None."""
    if not payload or not payload.startswith(BUTTON_PREFIX) or len(payload) == len(BUTTON_PREFIX):
        return None
    return payload[len(BUTTON_PREFIX) :]


def interactive(body: str, buttons: Sequence[Button]) -> dict[str, Any] | None:
    """The ``interactive`` object for ``buttons`` under ``body``: reply buttons for up to 3 (one
    tap), a list for more. ``body`` must fit the kind's limit (:func:`messages` sees to it).
    None when no button fits."""
    usable = [(b, p) for b in buttons if (p := button_payload(b)) is not None]
    if not usable:
        return None
    titles = [cut(b.label, MAX_BUTTON_TITLE) or "·" for b, _ in usable]
    # Reply buttons need distinct titles; cut labels may collide: then a list.
    if len(usable) <= MAX_REPLY_BUTTONS and len(set(titles)) == len(titles):
        return {
            "type": "button",
            "body": {"text": body},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": p, "title": t}}
                    for (_, p), t in zip(usable, titles, strict=True)
                ]
            },
        }
    if len(usable) > MAX_ROWS:
        log.warning("%d buttons: only the first %d fit a list", len(usable), MAX_ROWS)
        usable = usable[:MAX_ROWS]
    rows: list[dict[str, str]] = []
    for button, payload in usable:
        label = " ".join(button.label.split()) or "·"
        row = {"id": payload, "title": cut(label, MAX_ROW_TITLE)}
        if len(label) > MAX_ROW_TITLE:
            row["description"] = cut(label, MAX_ROW_DESCRIPTION)
        rows.append(row)
    return {
        "type": "list",
        "body": {"text": body},
        "action": {"button": LIST_LABEL, "sections": [{"title": LIST_LABEL, "rows": rows}]},
    }


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Cloud API message: its ``type`` and the object sent under that key."""

    type: str
    content: dict[str, Any]


def messages(reply: Reply) -> list[Outgoing]:
    """The reply as the messages to send, in order; its buttons ride on the last text when it
    fits the interactive body limit, else on a short "Choose:" message of their own."""
    parts = render(reply)
    out = [Outgoing("text", {"body": part, "preview_url": False}) for part in parts]
    if not reply.buttons:
        return out
    last = parts[-1]
    attached = interactive(last, reply.buttons)
    if attached is None:
        return out
    limit = MAX_LIST_BODY if attached["type"] == "list" else MAX_BUTTON_BODY
    if units(last) <= limit:
        return [*out[:-1], Outgoing("interactive", attached)]
    separate = interactive(CHOOSE_TEXT, reply.buttons)
    assert separate is not None
    return [*out, Outgoing("interactive", separate)]
