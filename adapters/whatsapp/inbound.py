"""What arrives from WhatsApp: the webhook's signature, Meta's handshake, and the notification's
messages, button taps and delivery statuses, parsed without trusting any of it.

No pywa here: this module is imported by the route before a byte is trusted, and everything in it
is a pure function the tests call directly. Parsing is ours, not pywa's ``types``, because a
notification is untrusted JSON until checked and we need only four shapes of it; each is checked
field by field (a forged or broken one is skipped, never a traceback).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_WA_ID = re.compile(r"[1-9][0-9]{5,14}")  # E.164: at most 15 digits
MAX_TEXT = 4096  # WhatsApp's own limit on a text message


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    """``header`` is ``sha256=<hex HMAC-SHA256 of body keyed with app_secret>``, compared in
    constant time over the exact bytes received (before any parsing)."""
    if not header:
        return False
    match = _SIGNATURE.fullmatch(header.strip())
    if match is None:
        return False
    wanted = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(wanted, match.group(1).lower())


def handshake(verify_token: str, params: Mapping[str, str]) -> str | None:
    """The challenge to echo when Meta subscribes the webhook with our verify token; else None.

    Constant-time on the token; the challenge is echoed only when it is a short plain string
    (Meta sends digits), so the route can never be made to reflect markup.
    """
    mode = params.get("hub.mode", "")
    given = params.get("hub.verify_token", "")
    challenge = params.get("hub.challenge", "")
    if mode != "subscribe" or not challenge or len(challenge) > 200:
        return None
    if not challenge.isascii() or not challenge.isalnum():
        return None
    if not hmac.compare_digest(given.encode(), verify_token.encode()):
        return None
    return challenge


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message from a person: typed text, or a tap on one of our buttons (``button_id``)."""

    message_id: str
    wa_id: str
    name: str | None
    sent_at: datetime | None
    text: str | None = None
    button_id: str | None = None

    @property
    def supported(self) -> bool:
        return self.text is not None or self.button_id is not None


@dataclass(frozen=True, slots=True)
class Status:
    """What became of a message we sent: sent, delivered, read or failed (with error codes)."""

    message_id: str
    status: str
    wa_id: str
    error_codes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Notification:
    """One webhook post's contents for our phone number, in the order they came."""

    messages: tuple[Incoming, ...] = ()
    statuses: tuple[Status, ...] = ()
    foreign: int = 0  # changes for another phone number id of the same business account


def parse(data: object, phone_number_id: str) -> Notification | None:
    """The notification in ``data`` (decoded JSON); None when it is not one at all."""
    if not isinstance(data, dict) or data.get("object") != "whatsapp_business_account":
        return None
    entries = data.get("entry")
    if not isinstance(entries, list):
        return None
    messages: list[Incoming] = []
    statuses: list[Status] = []
    foreign = 0
    for value in _values(entries):
        metadata = value.get("metadata")
        number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
        if str(number) != phone_number_id:
            foreign += 1
            continue
        names = _names(value.get("contacts"))
        for raw in _dicts(value.get("messages")):
            message = _message(raw, names)
            if message is not None:
                messages.append(message)
        for raw in _dicts(value.get("statuses")):
            status = _status(raw)
            if status is not None:
                statuses.append(status)
    return Notification(tuple(messages), tuple(statuses), foreign)


def _values(entries: list[Any]) -> Iterator[dict[str, Any]]:
    for entry in _dicts(entries):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if change.get("field") == "messages" and isinstance(value, dict):
                yield value


def _dicts(items: object) -> Iterator[dict[str, Any]]:
    if isinstance(items, list):
        yield from (item for item in items if isinstance(item, dict))


def _names(contacts: object) -> dict[str, str]:
    """Display names by wa_id: chosen by the user, shown only, never trusted."""
    names: dict[str, str] = {}
    for contact in _dicts(contacts):
        wa_id, profile = contact.get("wa_id"), contact.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        if isinstance(wa_id, str) and isinstance(name, str):
            names[wa_id] = name
    return names


def _message(raw: dict[str, Any], names: Mapping[str, str]) -> Incoming | None:
    message_id, wa_id = raw.get("id"), raw.get("from")
    if not isinstance(message_id, str) or not 0 < len(message_id) <= 200:
        return None
    if not isinstance(wa_id, str) or not _WA_ID.fullmatch(wa_id):
        return None
    made = _Made(message_id, wa_id, names.get(wa_id), _timestamp(raw.get("timestamp")))
    kind = raw.get("type")
    if kind == "text":
        body = _get(raw, "text", "body")
        return made(text=body[:MAX_TEXT]) if isinstance(body, str) else None
    if kind == "interactive":
        interactive = raw.get("interactive")
        reply_kind = interactive.get("type") if isinstance(interactive, dict) else None
        if reply_kind in ("button_reply", "list_reply"):
            pressed = _get(raw, "interactive", str(reply_kind), "id")
            if isinstance(pressed, str) and 0 < len(pressed) <= 256:
                return made(button_id=pressed)
        return None
    return made()  # an image, a voice note, a location: answered with what to send instead


@dataclass(frozen=True, slots=True)
class _Made:
    message_id: str
    wa_id: str
    name: str | None
    sent_at: datetime | None

    def __call__(self, *, text: str | None = None, button_id: str | None = None) -> Incoming:
        return Incoming(
            self.message_id, self.wa_id, self.name, self.sent_at, text=text, button_id=button_id
        )


def _status(raw: dict[str, Any]) -> Status | None:
    message_id, status = raw.get("id"), raw.get("status")
    if not isinstance(message_id, str) or not isinstance(status, str):
        return None
    recipient = raw.get("recipient_id")
    codes = tuple(
        error["code"] for error in _dicts(raw.get("errors")) if isinstance(error.get("code"), int)
    )
    return Status(message_id, status, recipient if isinstance(recipient, str) else "", codes)


def _get(data: dict[str, Any], *path: str) -> object:
    value: object = data
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _timestamp(value: object) -> datetime | None:
    """Meta's ``timestamp``: Unix seconds as a string."""
    try:
        seconds = int(str(value))
    except ValueError:
        return None
    if not 0 < seconds < 2**33:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def command_text(text: str, ours: Callable[[str], bool]) -> str | None:
    """The core's command text for a typed message, or None when it is not a command.

    Agents type without a slash (``code days ITEM 30``; a phone capitalises it to ``Code ...``):
    a first word that ``ours`` knows gets one. A slash form is the core's to judge (it suggests
    the command meant); any other chat ("hello", "thanks") is not a command.
    """
    stripped = text.strip()
    if not stripped:
        return None
    if stripped.startswith("/"):
        return stripped
    word = stripped.split(maxsplit=1)[0]
    return f"/{stripped}" if ours(word.lower()) else None
