"""Forged inbound requests are refused before any work: no dispatcher call, no row, no message.

Slack: forged (another secret), tampered, stale, future and malformed signatures and timestamps,
for slash commands and button clicks. Telegram: a webhook post without the right secret token.
WhatsApp: a notification without the right ``X-Hub-Signature-256`` (missing, forged, replayed
over another body, malformed), the subscription handshake without our verify token or with a
challenge that is not plain, status callbacks for messages never sent, notifications for another
phone number id and profile names that claim to be someone else.
Each refusal is checked on the whole path (real HTTP to the bot's app) and after it: the core
never saw the request, the database holds no request claim, audit row, code or button, and no
message went out. A correctly signed request is the control: it does all of those things.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from fakes.slack import (
    SIGNING_SECRET,
    block_actions_payload,
    command_form,
    encode_form,
    encode_payload,
    signed_headers,
)
from fakes.whatsapp import FakeWhatsApp
from security_rig import (
    TELEGRAM_AGENT,
    WEBHOOK_SECRET,
    WHATSAPP_AGENT,
    WHATSAPP_STRANGER,
    SlackSide,
    Spy,
    TelegramSide,
    WhatsAppSide,
    rows,
    settle,
)

from bot.audit import AuditLog
from bot.messages import Request
from erm.models import keypad_format
from erm.sandbox import OPEN_ACP1_OEM_ID

NOTHING = {"requests": 0, "audit": 0, "codes": 0, "buttons": 0}
ITEM = OPEN_ACP1_OEM_ID


def sign(body: str, timestamp: int | str, secret: str = SIGNING_SECRET) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def code_body() -> str:
    """A slash command that would issue a code if it got through."""
    form = command_form("/code", f"days {ITEM} 30", response_url="http://127.0.0.1:9/r/x")
    return encode_form(form)


Forgery = Callable[[str], tuple[str, dict[str, str]]]


def headers_with(body: str, **changes: str | None) -> dict[str, str]:
    headers = signed_headers(body)
    for name, value in changes.items():
        header = {"ts": "X-Slack-Request-Timestamp", "sig": "X-Slack-Signature"}[name]
        if value is None:
            del headers[header]
        else:
            headers[header] = value
    return headers


def _ts(offset: int) -> int:
    return int(time.time()) + offset


# Grouped by kind: each test sends every forgery of its kind and checks nothing happened.
SLACK_FORGERIES: dict[str, dict[str, Forgery]] = {
    "forged": {
        "signed-with-another-secret": lambda b: (b, signed_headers(b, secret="attackers-guess")),
        "tampered-body": lambda b: (b.replace("U1", "U0ADMIN"), signed_headers(b)),
        "signature-of-another-request": lambda b: (b, headers_with(b, sig=sign("x=1", _ts(0)))),
        "timestamp-swapped": lambda b: (b, headers_with(b, ts=str(_ts(-1)), sig=sign(b, 1))),
    },
    "stale": {
        "301s-old": lambda b: (b, headers_with(b, ts=str(_ts(-301)), sig=sign(b, _ts(-301)))),
        "1h-old": lambda b: (b, headers_with(b, ts=str(_ts(-3600)), sig=sign(b, _ts(-3600)))),
        "1970": lambda b: (b, headers_with(b, ts="1", sig=sign(b, 1))),
    },
    "future": {
        "301s-ahead": lambda b: (b, headers_with(b, ts=str(_ts(301)), sig=sign(b, _ts(301)))),
        "1h-ahead": lambda b: (b, headers_with(b, ts=str(_ts(3600)), sig=sign(b, _ts(3600)))),
        "year-9999": lambda b: (b, headers_with(b, ts="253402300799", sig=sign(b, 253402300799))),
    },
    "malformed": {
        "no-signature": lambda b: (b, headers_with(b, sig=None)),
        "no-timestamp": lambda b: (b, headers_with(b, ts=None)),
        "empty-signature": lambda b: (b, headers_with(b, sig="")),
        "bare-v0": lambda b: (b, headers_with(b, sig="v0=")),
        "not-hex": lambda b: (b, headers_with(b, sig="v0=" + "zz" * 32)),
        "v1-scheme": lambda b: (b, headers_with(b, sig="v1=" + sign(b, _ts(0))[3:])),
        "uppercase-hex": lambda b: (b, headers_with(b, sig="v0=" + sign(b, _ts(0))[3:].upper())),
        "truncated": lambda b: (b, headers_with(b, sig=sign(b, _ts(0))[:-2])),
        "10k-signature": lambda b: (b, headers_with(b, sig="v0=" + "a" * 10_000)),
        "non-numeric-timestamp": lambda b: (b, headers_with(b, ts="1.7e9")),
        "negative-timestamp": lambda b: (b, headers_with(b, ts="-1")),
        "40-digit-timestamp": lambda b: (b, headers_with(b, ts="9" * 40)),
    },
}


async def assert_slack_refuses(
    stack: Any, slack_side: SlackSide, spy: Spy, forgeries: dict[str, Forgery], body: str
) -> None:
    before = stack.code_events(ITEM)
    statuses = {}
    for name, forgery in forgeries.items():
        forged_body, headers = forgery(body)
        response = await slack_side.post(forged_body, headers)
        statuses[name] = (response.status_code, response.json())
    await settle()

    assert statuses == dict.fromkeys(forgeries, (401, {"error": "invalid request"}))
    assert spy.seen == []
    assert await rows(stack.engine) == NOTHING
    assert slack_side.fake.posts() == []
    assert stack.code_events(ITEM) == before


@pytest.mark.parametrize("kind", SLACK_FORGERIES)
async def test_slack_command_with_a_bad_signature_is_refused_before_any_work(
    stack: Any, slack_side: SlackSide, spy: Spy, kind: str
) -> None:
    await assert_slack_refuses(stack, slack_side, spy, SLACK_FORGERIES[kind], code_body())


@pytest.mark.parametrize("kind", SLACK_FORGERIES)
async def test_slack_button_click_with_a_bad_signature_is_refused_before_any_work(
    stack: Any, slack_side: SlackSide, spy: Spy, kind: str
) -> None:
    click = encode_payload(block_actions_payload("erm:run", "AAAAAAAAAAAA"))
    await assert_slack_refuses(stack, slack_side, spy, SLACK_FORGERIES[kind], click)


async def test_a_correctly_signed_command_does_the_work_the_forgeries_could_not(
    stack: Any, slack_side: SlackSide, spy: Spy
) -> None:
    """The control: the rig would notice work done."""
    before = stack.code_events(ITEM)

    text = await slack_side.ask(f"/code days {ITEM} 30")

    assert "30-day code" in text
    assert len(spy.seen) == 1
    assert (await rows(stack.engine))["codes"] == 1
    assert stack.code_events(ITEM) == before + 1


TELEGRAM_FORGERIES: dict[str, str | None] = {
    "no-secret": None,
    "empty-secret": "",
    "wrong-secret": "guessed-secret",
    "prefix-of-the-secret": WEBHOOK_SECRET[:-1],
    "secret-plus-one": WEBHOOK_SECRET + "x",
    "other-case": WEBHOOK_SECRET.upper(),
    "4k-secret": "s" * 4096,
}


async def test_telegram_webhook_post_without_the_right_secret_is_refused_before_any_work(
    stack: Any, telegram_side: TelegramSide, spy: Spy
) -> None:
    fake = telegram_side.fake
    statuses = {}
    for name, secret in TELEGRAM_FORGERIES.items():
        update = fake.message_update(TELEGRAM_AGENT, f"/code days {ITEM} 30")
        statuses[name] = (await telegram_side.post(update, secret)).status_code
    await settle()

    assert statuses == dict.fromkeys(TELEGRAM_FORGERIES, 403)
    assert spy.seen == []
    assert await rows(stack.engine) == NOTHING
    assert fake.calls_to("sendMessage") == []


async def test_telegram_webhook_refuses_a_huge_body_without_the_secret_unread(
    stack: Any, telegram_side: TelegramSide, spy: Spy
) -> None:
    response = await telegram_side.post(None, "wrong", raw=b"{" + b" " * 2_000_000 + b"}")

    assert response.status_code == 403
    assert spy.seen == []
    assert await rows(stack.engine) == NOTHING


async def test_telegram_webhook_with_the_secret_does_the_work(
    stack: Any, telegram_side: TelegramSide, spy: Spy
) -> None:
    """The control for the Telegram refusals."""
    update = telegram_side.fake.message_update(TELEGRAM_AGENT, f"/code days {ITEM} 30")

    response = await telegram_side.post(update)
    [reply] = await telegram_side.fake.wait_for_messages(1, within=15.0)

    assert response.status_code == 200
    assert "30-day code" in reply.plain
    assert len(spy.seen) == 1
    assert (await rows(stack.engine))["codes"] == 1


# -- WhatsApp: X-Hub-Signature-256 -------------------------------------------------------------


def wa_hex(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def wa_code_body(side: WhatsAppSide, wa_id: str = WHATSAPP_AGENT) -> bytes:
    """A text message that would issue a code if it got through (a fresh message id each time)."""
    return side.fake.body(side.fake.user_message(wa_id, f"code days {ITEM} 30"))


def wa_tap_body(side: WhatsAppSide) -> bytes:
    """A tap on a (made-up) button of ours: would press it if it got through."""
    payload = side.fake.button_reply(WHATSAPP_AGENT, "b:AAAAAAAAAAAA", "Confirm", context_id="w")
    return side.fake.body(payload)


# A forgery turns (the fake, the body Meta would send) into (the body sent, the header value or
# None for no header, extra headers). Grouped by the answer expected: 401 without a signature at
# all, 403 with one that is wrong.
WaForgery = Callable[[FakeWhatsApp, bytes], tuple[bytes, str | None, dict[str, str]]]


def _right(fake: FakeWhatsApp, body: bytes) -> str:
    return wa_hex(body, fake.app_secret)


def _stranger_body(fake: FakeWhatsApp, body: bytes) -> bytes:
    return body.replace(WHATSAPP_AGENT.encode(), WHATSAPP_STRANGER.encode())


WHATSAPP_FORGERIES: dict[str, dict[str, WaForgery]] = {
    "missing": {
        "no-signature": lambda f, b: (b, None, {}),
        "empty-signature": lambda f, b: (b, "", {}),
        # The legacy SHA-1 header alone, correctly made: not the one we check.
        "legacy-sha1-header-only": lambda f, b: (
            b,
            None,
            {"X-Hub-Signature": "sha1=" + hmac.new(f.app_secret.encode(), b, "sha1").hexdigest()},
        ),
    },
    "forged": {
        "signed-with-another-secret": lambda f, b: (b, "sha256=" + wa_hex(b, "guessed"), {}),
        "signed-with-the-verify-token": lambda f, b: (
            b,
            "sha256=" + wa_hex(b, f.verify_token),
            {},
        ),
        "signed-with-the-access-token": lambda f, b: (b, "sha256=" + wa_hex(b, f.token), {}),
        # A real signature of an earlier notification, replayed over a new body.
        "signature-of-another-notification": lambda f, b: (
            b,
            f.sign(f.body(f.user_message(WHATSAPP_AGENT, "help"))),
            {},
        ),
        "signature-of-an-empty-body": lambda f, b: (b, f.sign(b""), {}),
        # Signed for the agent, sent as a stranger (and the other way round): the identity moved.
        "identity-swapped": lambda f, b: (_stranger_body(f, b), f.sign(b), {}),
        "same-json-other-bytes": lambda f, b: (b + b" ", f.sign(b), {}),
        "all-zero": lambda f, b: (b, "sha256=" + "0" * 64, {}),
    },
    "malformed": {
        "no-sha256-prefix": lambda f, b: (b, _right(f, b), {}),
        "sha1-scheme": lambda f, b: (b, "sha1=" + _right(f, b), {}),
        "uppercase-scheme": lambda f, b: (b, "SHA256=" + _right(f, b), {}),
        "0x-hex": lambda f, b: (b, "sha256=0x" + _right(f, b), {}),
        "space-after-equals": lambda f, b: (b, "sha256= " + _right(f, b), {}),
        "truncated": lambda f, b: (b, "sha256=" + _right(f, b)[:-1], {}),
        "one-char-extra": lambda f, b: (b, "sha256=" + _right(f, b) + "0", {}),
        "doubled": lambda f, b: (b, f"sha256={_right(f, b)},sha256={_right(f, b)}", {}),
        "base64-digest": lambda f, b: (
            b,
            "sha256=" + base64.b64encode(bytes.fromhex(_right(f, b))).decode(),
            {},
        ),
        "not-hex": lambda f, b: (b, "sha256=" + "zz" * 32, {}),
        "bare-prefix": lambda f, b: (b, "sha256=", {}),
        "10k-signature": lambda f, b: (b, "sha256=" + "a" * 10_000, {}),
    },
}
WHATSAPP_REFUSAL = {"missing": 401, "forged": 403, "malformed": 403}


async def assert_whatsapp_refuses(
    stack: Any, side: WhatsAppSide, spy: Spy, kind: str, make_body: Callable[[], bytes]
) -> None:
    before = stack.code_events(ITEM)
    forgeries = WHATSAPP_FORGERIES[kind]
    statuses = {}
    for name, forgery in forgeries.items():
        body, signature, headers = forgery(side.fake, make_body())
        statuses[name] = (await side.post(body, signature, headers)).status_code
    await side.settle()
    await settle()

    assert statuses == dict.fromkeys(forgeries, WHATSAPP_REFUSAL[kind])
    assert spy.seen == []
    assert await rows(stack.engine) == NOTHING
    assert side.fake.sent() == []
    assert stack.code_events(ITEM) == before


@pytest.mark.parametrize("kind", WHATSAPP_FORGERIES)
async def test_whatsapp_message_with_a_bad_signature_is_refused_before_any_work(
    stack: Any, whatsapp_side: WhatsAppSide, spy: Spy, kind: str
) -> None:
    await assert_whatsapp_refuses(
        stack, whatsapp_side, spy, kind, lambda: wa_code_body(whatsapp_side)
    )


@pytest.mark.parametrize("kind", WHATSAPP_FORGERIES)
async def test_whatsapp_button_tap_with_a_bad_signature_is_refused_before_any_work(
    stack: Any, whatsapp_side: WhatsAppSide, spy: Spy, kind: str
) -> None:
    await assert_whatsapp_refuses(
        stack, whatsapp_side, spy, kind, lambda: wa_tap_body(whatsapp_side)
    )


async def test_two_signature_headers_are_refused_when_the_first_is_wrong(
    stack: Any, whatsapp_side: WhatsAppSide, spy: Spy
) -> None:
    body = wa_code_body(whatsapp_side)
    headers = [
        ("Content-Type", "application/json"),
        ("X-Hub-Signature-256", "sha256=" + wa_hex(body, "guessed")),
        ("X-Hub-Signature-256", whatsapp_side.fake.sign(body)),
    ]

    response = await whatsapp_side.http.post(whatsapp_side.url, content=body, headers=headers)
    await whatsapp_side.settle()

    assert response.status_code == 403
    assert spy.seen == []
    assert await rows(stack.engine) == NOTHING


# The same HMAC written differently: HTTP header names are case-insensitive, and a hex digest in
# capitals is the same digest (Meta sends lower case).
WHATSAPP_EQUIVALENT_SIGNATURES: dict[str, Callable[[FakeWhatsApp, bytes], dict[str, str]]] = {
    "as-meta-sends-it": lambda f, b: {"X-Hub-Signature-256": f.sign(b)},
    "lowercase-header-name": lambda f, b: {"x-hub-signature-256": f.sign(b)},
    "uppercase-hex": lambda f, b: {"X-Hub-Signature-256": "sha256=" + _right(f, b).upper()},
}


@pytest.mark.parametrize("variant", WHATSAPP_EQUIVALENT_SIGNATURES)
async def test_a_correctly_signed_whatsapp_message_does_the_work_the_forgeries_could_not(
    stack: Any, whatsapp_side: WhatsAppSide, spy: Spy, variant: str
) -> None:
    """The control: the rig would notice work done."""
    before = stack.code_events(ITEM)
    body = wa_code_body(whatsapp_side)
    headers = {"Content-Type": "application/json"}
    headers.update(WHATSAPP_EQUIVALENT_SIGNATURES[variant](whatsapp_side.fake, body))

    response = await whatsapp_side.http.post(whatsapp_side.url, content=body, headers=headers)
    await whatsapp_side.settle()

    assert response.status_code == 200
    [reply] = whatsapp_side.fake.sent(WHATSAPP_AGENT)
    assert "```" in reply.text
    assert len(spy.seen) == 1
    assert (await rows(stack.engine))["codes"] == 1
    assert stack.code_events(ITEM) == before + 1


# -- WhatsApp: the subscription handshake -----------------------------------------------------

VERIFY = "erm-whatsapp-verify-token"  # the fake's, as configured in conftest.py
GOOD_HANDSHAKE = {
    "hub.mode": "subscribe",
    "hub.verify_token": VERIFY,
    "hub.challenge": "1158201444",
}
HANDSHAKE_CHANGES: dict[str, dict[str, str | None]] = {
    "no-mode": {"hub.mode": None},
    "wrong-mode": {"hub.mode": "unsubscribe"},
    "mode-in-capitals": {"hub.mode": "SUBSCRIBE"},
    "no-token": {"hub.verify_token": None},
    "empty-token": {"hub.verify_token": ""},
    "wrong-token": {"hub.verify_token": "guessed-token"},
    "token-prefix": {"hub.verify_token": VERIFY[:-1]},
    "token-plus-one": {"hub.verify_token": VERIFY + "x"},
    "token-other-case": {"hub.verify_token": VERIFY.upper()},
    "app-secret-as-token": {"hub.verify_token": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"},
    "no-challenge": {"hub.challenge": None},
    "empty-challenge": {"hub.challenge": ""},
    "huge-challenge": {"hub.challenge": "1" * 5000},
    "201-digit-challenge": {"hub.challenge": "1" * 201},
    "markup-challenge": {"hub.challenge": "<script>alert(1)</script>"},
    "header-injection": {"hub.challenge": "1\r\nSet-Cookie: session=x"},
    "spaced-challenge": {"hub.challenge": "115 820"},
    "negative-challenge": {"hub.challenge": "-1158201444"},
    "arabic-indic-digits": {"hub.challenge": "\u0661\u0662\u0663"},
    "fullwidth-digits": {"hub.challenge": "\uff11\uff12\uff13"},
}


def handshake_params(changes: dict[str, str | None]) -> dict[str, str]:
    params: dict[str, str | None] = {**GOOD_HANDSHAKE, **changes}
    return {name: value for name, value in params.items() if value is not None}


async def test_the_whatsapp_handshake_is_refused_unless_subscribing_with_our_token(
    stack: Any, whatsapp_side: WhatsAppSide, spy: Spy
) -> None:
    assert whatsapp_side.fake.verify_token == VERIFY
    answers = {}
    for name, changes in HANDSHAKE_CHANGES.items():
        params = handshake_params(changes)
        response = await whatsapp_side.http.get(whatsapp_side.url, params=params)
        echoed = bool(params.get("hub.challenge")) and params["hub.challenge"] in response.text
        answers[name] = (response.status_code, echoed, "set-cookie" in response.headers)

    assert answers == dict.fromkeys(HANDSHAKE_CHANGES, (403, False, False))
    assert spy.seen == []
    assert await rows(stack.engine) == NOTHING


@pytest.mark.parametrize("challenge", ["1158201444", "0", "1" * 200])
async def test_the_whatsapp_handshake_echoes_exactly_a_plain_challenge_as_text(
    whatsapp_side: WhatsAppSide, challenge: str
) -> None:
    params = handshake_params({"hub.challenge": challenge})

    response = await whatsapp_side.http.get(whatsapp_side.url, params=params)

    assert response.status_code == 200
    assert response.text == challenge
    assert response.headers["content-type"].startswith("text/plain")


# -- WhatsApp: callbacks and notifications that are not what they claim ------------------------


@pytest.mark.parametrize(
    ("status", "errors"),
    [("sent", None), ("delivered", None), ("read", None), ("failed", [131047]), ("failed", [1])],
)
async def test_a_status_for_a_message_never_sent_does_nothing(
    stack: Any, whatsapp_side: WhatsAppSide, spy: Spy, status: str, errors: list[int] | None
) -> None:
    fake = whatsapp_side.fake
    never_sent = fake.new_message_id(WHATSAPP_AGENT)

    response = await whatsapp_side.deliver(
        fake.status(never_sent, WHATSAPP_AGENT, status, errors=errors)
    )
    await whatsapp_side.settle()

    assert response.status_code == 200  # Meta would redeliver anything else for days
    assert spy.seen == []
    assert await rows(stack.engine) == NOTHING
    assert fake.sent() == []
    # A "window closed" report only looks its message up among those the bot started.
    assert whatsapp_side.adapter.runner.peak == (1 if errors == [131047] else 0)


def _retarget(payload: dict[str, Any], phone_number_id: Any) -> dict[str, Any]:
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = phone_number_id
    return payload


@pytest.mark.parametrize("number", ["1", "", None, "109876543210987 ", " 109876543210987"])
async def test_a_notification_for_another_phone_number_id_runs_nothing(
    stack: Any, whatsapp_side: WhatsAppSide, spy: Spy, number: str | None
) -> None:
    fake = whatsapp_side.fake
    payload = _retarget(fake.user_message(WHATSAPP_AGENT, f"code days {ITEM} 30"), number)

    response = await whatsapp_side.deliver(payload)
    await whatsapp_side.settle()

    assert response.status_code == 200  # not an error of Meta's: it is not retried
    assert spy.seen == []
    assert await rows(stack.engine) == NOTHING
    assert fake.sent() == []


async def test_only_our_phone_numbers_part_of_a_mixed_notification_runs(
    stack: Any, whatsapp_side: WhatsAppSide, spy: Spy
) -> None:
    fake = whatsapp_side.fake
    before = stack.code_events(ITEM)
    foreign = _retarget(fake.user_message(WHATSAPP_AGENT, f"code days {ITEM} 30"), "1")
    ours = fake.user_message(WHATSAPP_AGENT, "whoami")
    ours["entry"] = foreign["entry"] + ours["entry"]

    response = await whatsapp_side.deliver(ours)
    await whatsapp_side.settle()

    assert response.status_code == 200
    assert [type(seen) for seen in spy.seen] == [Request]
    assert [seen.text for seen in spy.seen if isinstance(seen, Request)] == ["/whoami"]
    assert stack.code_events(ITEM) == before
    assert (await rows(stack.engine))["codes"] == 0


SPOOFED_NAMES = {
    "the-agents-name": "Neema Wanjiru",
    "an-identity-key": f"whatsapp:{WHATSAPP_AGENT}",
    "another-platforms-admin": "slack:U0ADMIN",
    "a-role": "admin",
    "markup": "*Admin* _(supervisor)_ ```x```",
}


@pytest.mark.parametrize("name", SPOOFED_NAMES.values(), ids=list(SPOOFED_NAMES))
async def test_a_profile_name_claiming_someone_else_is_no_identity(
    stack: Any, whatsapp_side: WhatsAppSide, spy: Spy, name: str
) -> None:
    """The identity is the wa_id Meta puts in ``from``; the profile name (set by the user) and a
    ``contacts`` entry naming another wa_id change nothing."""
    fake = whatsapp_side.fake
    before = stack.code_events(ITEM)
    payload = fake.user_message(WHATSAPP_STRANGER, f"code days {ITEM} 30", name=name)
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"].append({"profile": {"name": name}, "wa_id": WHATSAPP_AGENT})

    response = await whatsapp_side.deliver(payload)
    await whatsapp_side.settle()

    assert response.status_code == 200
    [request] = spy.seen
    assert isinstance(request, Request)
    assert (request.identity.platform, request.identity.user_id) == ("whatsapp", WHATSAPP_STRANGER)
    assert stack.code_events(ITEM) == before
    assert (await rows(stack.engine))["codes"] == 0
    [row] = await AuditLog(stack.engine).recent(limit=1)
    assert (row.platform, row.user_id, row.outcome) == ("whatsapp", WHATSAPP_STRANGER, "denied")
    assert fake.sent(WHATSAPP_AGENT) == []
    [refusal] = fake.sent(WHATSAPP_STRANGER)
    assert "```" not in refusal.text.replace(name, "")  # no code, only the name echoed (if at all)


async def test_an_agent_named_like_an_admin_is_still_only_an_agent(
    whatsapp_side: WhatsAppSide,
) -> None:
    reply = await whatsapp_side.ask("whoami", name="admin (slack:U0ADMIN)")

    assert f"whatsapp:{WHATSAPP_AGENT}" in reply.text
    assert "agent" in reply.text
    assert "slack:U0ADMIN" not in reply.text.replace("admin (slack:U0ADMIN)", "")


# -- WhatsApp: logs ---------------------------------------------------------------------------


async def test_no_code_token_app_secret_or_verify_token_reaches_a_log_line(
    stack: Any, whatsapp_side: WhatsAppSide, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = whatsapp_side.fake
    for kind in WHATSAPP_FORGERIES.values():
        for forgery in kind.values():
            body, signature, headers = forgery(fake, wa_code_body(whatsapp_side))
            await whatsapp_side.post(body, signature, headers)
    for changes in HANDSHAKE_CHANGES.values():
        await whatsapp_side.http.get(whatsapp_side.url, params=handshake_params(changes))
    await whatsapp_side.http.get(whatsapp_side.url, params=GOOD_HANDSHAKE)
    signed = wa_code_body(whatsapp_side)
    await whatsapp_side.post(signed, fake.sign(signed))
    await whatsapp_side.settle()

    [reply] = fake.sent(WHATSAPP_AGENT)
    code = keypad_format(
        stack.sandbox.item_by_oem_id(ITEM).code_generator.events[-1].code_dec_string
    )
    assert code in reply.text
    # The test's own client logs the URLs it calls (the handshake's query): not the bot's lines.
    bots = [
        record
        for record in caplog.records
        if not (record.name.startswith("httpx") and whatsapp_side.url in record.getMessage())
    ]
    logged = "".join(f"{record.getMessage()} {record.__dict__}" for record in bots)
    secrets = {
        "code": code,
        "code-digits": code.replace(" ", ""),
        "token": fake.token,
        "app-secret": fake.app_secret,
        "verify-token": fake.verify_token,
        "signature": fake.sign(signed),
    }
    assert [name for name, secret in secrets.items() if secret in logged] == []
