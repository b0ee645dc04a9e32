"""Forged inbound requests are refused before any work: no dispatcher call, no row, no message.

Slack: forged (another secret), tampered, stale, future and malformed signatures and timestamps,
for slash commands and button clicks. Telegram: a webhook post without the right secret token.
Each refusal is checked on the whole path (real HTTP to the bot's app) and after it: the core
never saw the request, the database holds no request claim, audit row, code or button, and no
message went out. A correctly signed request is the control: it does all of those things.
"""

from __future__ import annotations

import hashlib
import hmac
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
from security_rig import (
    TELEGRAM_AGENT,
    WEBHOOK_SECRET,
    SlackSide,
    Spy,
    TelegramSide,
    rows,
    settle,
)

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
