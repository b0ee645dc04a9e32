"""What arrives from Slack, checked before bolt sees it: the signature, and the payload's shape."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qsl

from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest

SIGNATURE_MAX_AGE = 300  # seconds, either way (Slack's replay window)


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: float | None = None,
) -> bool:
    """Slack's v0 signature over the raw body, within 300 s; never raises on malformed input."""
    if not timestamp or not signature or not signature.startswith("v0="):
        return False
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > SIGNATURE_MAX_AGE:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode(errors="replace"))


def is_direct_message(channel_id: str, channel_name: str = "") -> bool:
    """A DM: channel ids of IMs start with D; slash commands also say ``directmessage``."""
    return channel_id.startswith("D") or channel_name == "directmessage"


def form_body_quirk(request: AsyncBoltRequest) -> None:
    """Bolt reads any form body containing the text "payload" as an interactivity payload; a
    slash command like ``/erm payload`` then parses to ``{}`` and goes unhandled. Re-read it."""
    if request.body or not request.raw_body:
        return
    if request.content_type != "application/x-www-form-urlencoded":
        return
    form = dict(parse_qsl(request.raw_body, keep_blank_values=True))
    if "payload" in form:
        return
    request.body = form
    request.context = build_async_context(AsyncBoltContext({}), form)


_PASSED_TO_BOLT = frozenset({"url_verification", "event_callback", "ssl_check"})
_OBJECT_FIELDS = ("user", "container", "channel", "team", "message", "enterprise")


def payload_problem(body: object) -> str | None:
    """Why a (signed) body cannot be a slash command or a button click of ours, or None.

    Bolt trusts the shape of a signed body: a payload that is not an object, or a button click
    whose ``actions`` or ``user`` are not objects, makes it fail with a 500. Interactivity other
    than button clicks is never configured for this app.
    """
    if not isinstance(body, dict):
        return "the body is not an object"
    kind = body.get("type")
    if kind is None or (isinstance(kind, str) and kind in _PASSED_TO_BOLT):
        return None  # a slash command (form fields), or what bolt answers itself
    if kind != "block_actions":
        return f"unexpected payload type {str(kind)[:40]!r}"
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions:
        return "a button click without actions"
    if not all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions):
        return "a button click with malformed actions"
    for name in _OBJECT_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], dict):
            return f"a button click whose {name} is not an object"
    return None
