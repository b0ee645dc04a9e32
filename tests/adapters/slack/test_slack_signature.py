"""Request signing: only requests signed with the signing secret, within 300 s, run anything."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

import pytest
from fakes.slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    block_actions_payload,
    command_form,
    encode_form,
    encode_payload,
    signed_headers,
)
from slack_rig import SlackRig

from adapters.settings import Settings
from adapters.slack.app import SlackAdapter
from adapters.slack.config import SlackConfig, SlackConfigError
from adapters.slack.inbound import verify_signature


@pytest.fixture
def handled(stack: Any) -> list[Any]:
    """Every request and click that reached the core."""
    seen: list[Any] = []
    handle, press = stack.dispatcher.handle, stack.dispatcher.press

    async def spy_handle(request: Any) -> Any:
        seen.append(request)
        return await handle(request)

    async def spy_press(click: Any) -> Any:
        seen.append(click)
        return await press(click)

    stack.dispatcher.handle, stack.dispatcher.press = spy_handle, spy_press
    return seen


async def assert_refused(
    slack: SlackRig, body: str, headers: dict[str, str], handled: list[Any]
) -> None:
    response = await slack.post(body, headers)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid request"}
    await slack.adapter.drain()
    assert handled == []
    assert slack.fake.posts() == []


def command_body() -> str:
    return encode_form(command_form("/items", "", response_url="http://127.0.0.1:9/response/x"))


@pytest.mark.parametrize(
    "age", [301, 3600, -301, -3600], ids=["301s-old", "1h-old", "301s-ahead", "1h-ahead"]
)
async def test_timestamp_outside_five_minutes_gets_401(
    slack: SlackRig, handled: list[Any], age: int
) -> None:
    body = command_body()
    await assert_refused(
        slack, body, signed_headers(body, timestamp=int(time.time()) - age), handled
    )


async def test_timestamp_inside_five_minutes_is_accepted(
    slack: SlackRig, handled: list[Any]
) -> None:
    body = command_body()
    response = await slack.post(body, signed_headers(body, timestamp=int(time.time()) - 290))
    assert response.status_code == 200
    await slack.adapter.drain()
    assert len(handled) == 1


@pytest.mark.parametrize(
    "timestamp", ["abc", "12.5", "", "-1", "1e9", "0x10", "99999999999999999999"]
)
async def test_non_numeric_timestamp_gets_401_not_500(
    slack: SlackRig, handled: list[Any], timestamp: str
) -> None:
    body = command_body()
    headers = signed_headers(body)
    headers["X-Slack-Request-Timestamp"] = timestamp
    await assert_refused(slack, body, headers, handled)


async def test_missing_timestamp_gets_401(slack: SlackRig, handled: list[Any]) -> None:
    body = command_body()
    headers = signed_headers(body)
    del headers["X-Slack-Request-Timestamp"]
    await assert_refused(slack, body, headers, handled)


async def test_wrong_secret_gets_401(slack: SlackRig, handled: list[Any]) -> None:
    body = command_body()
    await assert_refused(slack, body, signed_headers(body, secret="not-the-secret"), handled)


async def test_missing_signature_gets_401(slack: SlackRig, handled: list[Any]) -> None:
    body = command_body()
    headers = signed_headers(body)
    del headers["X-Slack-Signature"]
    await assert_refused(slack, body, headers, handled)


@pytest.mark.parametrize("scheme", ["v1=", "V0=", "", "v0"])
async def test_signature_of_another_version_gets_401(
    slack: SlackRig, handled: list[Any], scheme: str
) -> None:
    body = command_body()
    headers = signed_headers(body)
    headers["X-Slack-Signature"] = scheme + headers["X-Slack-Signature"].removeprefix("v0=")
    await assert_refused(slack, body, headers, handled)


async def test_signature_is_over_the_raw_bytes(slack: SlackRig, handled: list[Any]) -> None:
    """The same form, encoded differently (%20 for +), no longer matches its signature."""
    body = encode_form(command_form("/items", "two words", response_url="http://127.0.0.1:9/r/x"))
    assert "+" in body
    reencoded = body.replace("+", "%20")
    await assert_refused(slack, reencoded, signed_headers(body), handled)


async def test_tampered_body_gets_401(slack: SlackRig, handled: list[Any]) -> None:
    body = command_body()
    headers = signed_headers(body)
    await assert_refused(slack, body.replace("U1", "U0ADMIN"), headers, handled)


async def test_unsigned_button_click_gets_401(slack: SlackRig, handled: list[Any]) -> None:
    body = encode_payload(block_actions_payload("erm:run", "abc"))
    await assert_refused(slack, body, signed_headers(body, secret="guess"), handled)


async def test_body_that_is_not_utf8_gets_400(slack: SlackRig, handled: list[Any]) -> None:
    body = b"text=\xff\xfe&command=%2Fitems"
    headers = _sign_bytes(body)  # correctly signed: only the decoding fails
    response = await slack.http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 400
    assert handled == []


def _sign_bytes(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def test_verify_signature_never_raises_on_junk() -> None:
    for timestamp in (None, "", "x", "1.5", "١٢٣", "9" * 40):
        assert verify_signature("secret", b"body", timestamp, "v0=00") is False
    for signature in (None, "", "v0=", "v0=zz", "v0=\u00e9"):
        assert verify_signature("secret", b"body", "1700000000", signature, now=1700000000) is False


def test_verify_signature_accepts_slacks_documented_example() -> None:
    """The example from Slack's "Verifying requests" page."""
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
        b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F39"
        b"7700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a"
        b"14d10d2c447fce8b6703c"
    )
    assert verify_signature(
        "8f742231b10e8888abcd99yyyzzz85a5",
        body,
        "1531420618",
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        now=1531420618,
    )


def test_http_mode_refuses_to_start_without_a_signing_secret(stack: Any) -> None:
    with pytest.raises(SlackConfigError, match="SLACK_SIGNING_SECRET") as raised:
        SlackAdapter(stack.dispatcher, SlackConfig(bot_token=BOT_TOKEN))
    assert isinstance(raised.value, ValueError)
    assert BOT_TOKEN not in str(raised.value)


def test_settings_without_a_signing_secret_refuse_http_mode(stack: Any) -> None:
    settings = Settings(_env_file=None, slack_bot_token=BOT_TOKEN)  # type: ignore[call-arg]
    config = SlackConfig.from_settings(settings)
    with pytest.raises(SlackConfigError, match="SLACK_SIGNING_SECRET"):
        SlackAdapter(stack.dispatcher, config)


def test_settings_without_a_bot_token_are_refused() -> None:
    settings = Settings(_env_file=None, slack_signing_secret="s")  # type: ignore[call-arg]
    with pytest.raises(SlackConfigError, match="SLACK_BOT_TOKEN"):
        SlackConfig.from_settings(settings)


def test_config_from_settings_hides_secrets() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url="http://127.0.0.1:9/api/",
    )
    config = SlackConfig.from_settings(settings)
    assert config.bot_token == BOT_TOKEN
    assert config.signing_secret == SIGNING_SECRET
    assert config.api_url == "http://127.0.0.1:9/api/"
    assert not config.socket_mode
    assert BOT_TOKEN not in repr(config)
    assert SIGNING_SECRET not in repr(config)


async def test_socket_mode_needs_no_signing_secret_and_serves_no_http_route(
    stack: Any, fake_slack: FakeSlack
) -> None:
    config = SlackConfig(
        bot_token=fake_slack.bot_token, app_token=fake_slack.app_token, api_url=fake_slack.api_url
    )
    adapter = SlackAdapter(stack.dispatcher, config)
    assert adapter.routes() == []


async def test_refusals_log_no_secret(
    slack: SlackRig, handled: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = command_body()
    await assert_refused(slack, body, signed_headers(body, secret="nope"), handled)
    for record in caplog.records:
        message = record.getMessage()
        assert SIGNING_SECRET not in message
        assert BOT_TOKEN not in message
