"""What arrives from WhatsApp, as pure functions: signatures, the handshake, parsing, commands."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from adapters.whatsapp.inbound import command_text, handshake, parse, signature_ok

SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
PHONE = "109876543210987"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_signature_of_the_exact_bytes_with_the_app_secret_is_accepted() -> None:
    assert signature_ok(SECRET, BODY, sign(BODY))
    assert signature_ok(SECRET, BODY, sign(BODY).upper().replace("SHA256=", "sha256="))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        sign(BODY)[len("sha256=") :],  # the digest without its prefix
        "sha1=" + sign(BODY)[len("sha256=") :],
        sign(BODY, "another secret"),
        sign(BODY + b" "),  # the same JSON, other bytes: a re-serialised body
        sign(BODY)[:-1],
        sign(BODY) + "0",
        "sha256=" + "z" * 64,
    ],
)
def test_anything_but_the_right_signature_is_refused(header: str | None) -> None:
    assert not signature_ok(SECRET, BODY, header)


def test_the_handshake_echoes_the_challenge_only_for_subscribe_with_our_token() -> None:
    good = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"}
    assert handshake("tok", good) == "1158201444"
    assert handshake("tok", {**good, "hub.verify_token": "tok2"}) is None
    assert handshake("tok", {**good, "hub.verify_token": ""}) is None
    assert handshake("tok", {**good, "hub.mode": "unsubscribe"}) is None
    assert handshake("tok", {k: v for k, v in good.items() if k != "hub.mode"}) is None
    assert handshake("tok", {**good, "hub.challenge": ""}) is None
    # Never a reflected script, nor a huge echo.
    assert handshake("tok", {**good, "hub.challenge": "<script>"}) is None
    assert handshake("tok", {**good, "hub.challenge": "1" * 201}) is None


def notification(value: dict[str, object], phone: str = PHONE) -> dict[str, object]:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": phone}, **value}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }


def test_texts_taps_and_statuses_are_parsed_in_order() -> None:
    data = notification(
        {
            "contacts": [{"profile": {"name": "Amina"}, "wa_id": "254700123456"}],
            "messages": [
                {
                    "from": "254700123456",
                    "id": "wamid.1",
                    "timestamp": "1764979200",
                    "type": "text",
                    "text": {"body": "code days X 30"},
                },
                {
                    "from": "254700123456",
                    "id": "wamid.2",
                    "timestamp": "1764979201",
                    "type": "interactive",
                    "interactive": {"type": "list_reply", "list_reply": {"id": "b:abc"}},
                },
                {"from": "254700123456", "id": "wamid.3", "timestamp": "1", "type": "image"},
            ],
            "statuses": [
                {"id": "wamid.9", "status": "failed", "recipient_id": "1", "errors": [{"code": 1}]}
            ],
        }
    )
    parsed = parse(data, PHONE)
    assert parsed is not None
    first, second, third = parsed.messages
    assert (first.wa_id, first.name, first.text) == ("254700123456", "Amina", "code days X 30")
    assert first.sent_at == datetime(2025, 12, 6, tzinfo=UTC)
    assert (second.message_id, second.button_id, second.text) == ("wamid.2", "b:abc", None)
    assert not third.supported
    [status] = parsed.statuses
    assert (status.status, status.error_codes) == ("failed", (1,))


def test_another_phone_numbers_notifications_are_not_ours() -> None:
    data = notification(
        {"messages": [{"from": "254700123456", "id": "w", "type": "text", "text": {"body": "x"}}]},
        phone="999",
    )
    parsed = parse(data, PHONE)
    assert parsed is not None
    assert parsed.messages == ()
    assert parsed.foreign == 1


@pytest.mark.parametrize(
    "message",
    [
        {"from": "254700123456", "type": "text", "text": {"body": "no id"}},
        {"from": "+254700123456", "id": "w", "type": "text", "text": {"body": "not a wa_id"}},
        {"from": ["254700123456"], "id": "w", "type": "text", "text": {"body": "x"}},
        {"from": "254700123456", "id": "w", "type": "text", "text": {"body": ["x"]}},
        {"from": "254700123456", "id": "w", "type": "interactive", "interactive": "x"},
        {
            "from": "254700123456",
            "id": "w",
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": 7}},
        },
    ],
)
def test_broken_or_forged_messages_are_skipped(message: dict[str, object]) -> None:
    parsed = parse(notification({"messages": [message, "junk"]}), PHONE)
    assert parsed is not None
    assert parsed.messages == ()


@pytest.mark.parametrize(
    "data", [None, [], "x", {"object": "page"}, {"object": "whatsapp_business_account"}]
)
def test_what_is_no_notification_at_all_is_none(data: object) -> None:
    assert parse(json.loads(json.dumps(data)), PHONE) is None


WORDS = {"code", "history", "help", "start"}


@pytest.mark.parametrize(
    ("typed", "text"),
    [
        ("code days ITEM 30", "/code days ITEM 30"),
        ("Code days ITEM 30", "/Code days ITEM 30"),  # a phone's capital: the core reads it
        ("  history ITEM ", "/history ITEM"),
        ("/history ITEM", "/history ITEM"),
        ("/nosuch x", "/nosuch x"),  # the core suggests what was meant
        ("start K7QX2MBD9R", "/start K7QX2MBD9R"),
        ("hello", None),
        ("thanks!", None),
        ("   ", None),
    ],
)
def test_commands_are_typed_with_or_without_a_slash(typed: str, text: str | None) -> None:
    assert command_text(typed, lambda word: word in WORDS) == text
