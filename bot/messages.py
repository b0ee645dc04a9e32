"""Request and Reply: what adapters hand to the core and what they get back.

A ``Reply`` is data. Adapters render it (rich blocks, HTML, terminal text) and escape what
needs escaping; nothing here knows any platform's markup. ``Reply.text()`` is the plain-text form,
used as a platform's plain-text fallback, by terminal adapters and in tests.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

CONTROLS_TO_SPACES = str.maketrans(dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], " "))
"""For ``str.translate``: control characters (NUL, escapes, C1) become spaces."""

_BIDI_CONTROLS = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
_ZERO_WIDTH = [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF]
_INVISIBLE = str.maketrans(dict.fromkeys([*_BIDI_CONTROLS, *_ZERO_WIDTH]))


def visible(text: str) -> str:
    """``text`` without bidi controls and zero-width characters, and control characters as spaces.

    Applied where a person's text enters (display names, command text: notes, deny reasons):
    a right-to-left override can make "Dennis (chat:UADMA)" read as another name on a card, and a
    zero-width space makes two names that look the same compare different.
    """
    return text.translate(_INVISIBLE).translate(CONTROLS_TO_SPACES)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking: a user id on one platform (the adapters name the platforms)."""

    platform: str
    user_id: str
    name: str | None = None

    def __post_init__(self) -> None:
        # A display name is whatever the platform says: control characters (NUL, which
        # PostgreSQL refuses in text), bidi controls and zero-width characters never reach a
        # stored row or a message through it.
        if self.name is not None:
            cleaned = " ".join(visible(self.name).split())[:128]
            object.__setattr__(self, "name", cleaned or None)

    @property
    def key(self) -> str:
        """``platform:user_id``, the form admins type in ``/grant`` and ``ERM_BOT_ADMINS``."""
        return f"{self.platform}:{self.user_id}"

    @property
    def label(self) -> str:
        return self.name or self.key


@dataclass(frozen=True, slots=True)
class Request:
    """One command as typed, with where it came from and the platform's request key."""

    identity: Identity
    text: str
    request_key: str
    chat_id: str = ""
    private_chat: bool = True
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # When the user sent it, if the platform says (a phone may hold a message in its outbox for an
    # hour): code commands sent long ago ask for confirmation instead of running.
    sent_at: datetime | None = None
    confirmed: bool = False  # set by the core only, when the user confirmed a stale command
    # Set by the core only: the approval this request carries out (it skips the approval policy
    # and quotas; the request key "approval:<id>" makes it run once).
    approval_id: str | None = None


@dataclass(frozen=True, slots=True)
class Click:
    """A button pressed: who pressed which stored button, with the platform's request key."""

    identity: Identity
    button_id: str
    request_key: str
    chat_id: str = ""
    private_chat: bool = True


class Visibility(enum.StrEnum):
    PRIVATE = "private"  # only the requester sees it (an ephemeral message, or the private chat)
    PUBLIC = "public"  # everyone in the chat sees it


class Tone(enum.StrEnum):
    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Field:
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Code:
    """An unlock code as a distinct element: ``keypad`` is what the client types."""

    keypad: str
    digits: str
    label: str = ""


class Action(enum.StrEnum):
    """What a pressed button does (the registry of :mod:`bot.buttons` maps each to its code)."""

    RUN = "run"  # run the stored command as the presser (paging, "Older")
    CONFIRM = "confirm"  # run a stale code command after all
    CANCEL = "cancel"  # ...or not
    APPROVE = "approve"  # an approval card's buttons
    DENY = "deny"


class Style(enum.StrEnum):
    DEFAULT = "default"
    PRIMARY = "primary"
    DANGER = "danger"


@dataclass(frozen=True, slots=True)
class Button:
    """A button. Commands put what it does in ``value`` (e.g. the command to run); the dispatcher
    stores that server-side and hands adapters a short opaque id (``[A-Za-z0-9_-]``, at most 16
    characters) in its place, so it fits the smallest button payload (64 bytes)."""

    label: str
    action: Action
    value: str
    style: Style = Style.DEFAULT
    # What a person can type instead of pressing it (a ``run`` button's command): kept when the
    # dispatcher swaps ``value`` for a stored id, for surfaces without buttons (a terminal).
    typed: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    title: str | None = None
    lines: tuple[str, ...] = ()
    fields: tuple[Field, ...] = ()
    codes: tuple[Code, ...] = ()
    notes: tuple[str, ...] = ()  # small print: context lines under the body
    # Exact pieces of ``lines`` that are codes (a history's): shown as code, which a tap copies
    # where the platform can; the text stays as it is.
    monospace: tuple[str, ...] = ()
    buttons: tuple[Button, ...] = ()
    visibility: Visibility = Visibility.PRIVATE
    tone: Tone = Tone.OK
    # Declared by the command: shown only to the requester, like a code (an invite, an account's
    # client and balance, the user list, the audit trail, approval lists, someone's roles).
    confidential: bool = False
    # What a repeat of the request (a redelivery, a retried request key) is shown instead of this
    # reply, which is then never stored: an invite code is shown once and never kept.
    replay: Reply | None = None

    @property
    def private_only(self) -> bool:
        """Never shown in a group or channel: it carries a code or is confidential.

        The one privacy rule every adapter honours: an adapter answers ephemerally where it can,
        or sends it to the requester's private chat with a short note in the group; a terminal
        prints it.
        """
        return self.confidential or bool(self.codes)

    @classmethod
    def error(cls, message: str, *, tone: Tone = Tone.ERROR) -> Reply:
        first, _, rest = message.partition("\n")
        lines = tuple(line for line in rest.split("\n") if line)
        return cls(title=first, lines=lines, tone=tone)

    def text(self) -> str:
        """Plain text, one short block, readable on a phone."""
        out: list[str] = []
        if self.title:
            out.append(self.title)
        out.extend(self.lines)
        out.extend(f"{f.label}: {f.value}" for f in self.fields)
        for code in self.codes:
            out.append(f"{code.label}: {code.keypad}" if code.label else code.keypad)
        out.extend(self.notes)
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored with the request key: what a redelivery gets (the same reply,
        or its ``replay`` when it has one)."""
        if self.replay is not None:
            return self.replay.to_dict()
        data = asdict(self)
        del data["replay"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        return cls(
            title=data.get("title"),
            lines=tuple(data.get("lines") or ()),
            fields=tuple(Field(**f) for f in data.get("fields") or ()),
            codes=tuple(Code(**c) for c in data.get("codes") or ()),
            notes=tuple(data.get("notes") or ()),
            monospace=tuple(data.get("monospace") or ()),
            buttons=tuple(
                Button(
                    b["label"],
                    Action(b["action"]),
                    b["value"],
                    Style(b.get("style") or "default"),
                    b.get("typed"),
                )
                for b in data.get("buttons") or ()
            ),
            visibility=Visibility(data.get("visibility") or Visibility.PRIVATE),
            tone=Tone(data.get("tone") or Tone.OK),
            confidential=bool(data.get("confidential")),
        )


@dataclass(frozen=True, slots=True)
class Pressed:
    """What a button press changes.

    ``card`` replaces the message that holds the button (``None``: leave it; a card without
    buttons removes them). ``reply`` is a new message for the presser (visibility rules apply).
    ``notice`` is a short note only the presser sees (an ephemeral message, a callback answer).
    """

    reply: Reply | None = None
    card: Reply | None = None
    notice: str | None = None


def plural(count: int, unit: str) -> str:
    """``1 day``, ``2 days``: replies are read aloud and typed from, so the grammar matters."""
    return f"{count} {unit}{'' if count == 1 else 's'}"
