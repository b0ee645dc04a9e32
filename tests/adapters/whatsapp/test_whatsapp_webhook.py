"""End to end: Meta's webhook posts into the bot's one ASGI app, replies go to the fake Graph API,
the sandbox ERM issues the codes."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
from fakes.whatsapp import PAIR_RATE_LIMIT, FakeWhatsApp
from whatsapp_rig import (
    AGENT,
    ITEM,
    STRANGER,
    Served,
    ServeFactory,
    StackLike,
    rows,
    settle,
    wait_sent,
)

from adapters.whatsapp import outbound
from bot import metrics
from bot.roles import Role


async def test_the_handshake_echoes_the_challenge_for_our_verify_token(
    served: Served, fake: FakeWhatsApp
) -> None:
    answer = await fake.verify(served.url)
    assert answer.status_code == 200
    assert answer.text == fake.last_challenge
    assert (await fake.verify(served.url, token="not-ours")).status_code == 403
    async with httpx.AsyncClient() as client:
        assert (await client.get(served.url)).status_code == 403


async def test_a_command_typed_without_a_slash_gets_its_reply(
    stack: StackLike, served: Served, fake: FakeWhatsApp
) -> None:
    await stack.grant(f"whatsapp:{AGENT}", Role.AGENT)

    answer = await fake.deliver(served.url, fake.user_message(AGENT, f"History {ITEM}"))
    [reply] = await wait_sent(fake, AGENT, 1)

    assert answer.status_code == 200
    assert ITEM in reply.text


async def test_a_code_goes_only_to_its_requester_in_monospace(
    stack: StackLike, served: Served, fake: FakeWhatsApp
) -> None:
    await stack.grant(f"whatsapp:{AGENT}", Role.AGENT)

    await fake.deliver(served.url, fake.user_message(AGENT, f"code days {ITEM} 30"))
    [reply] = await wait_sent(fake, AGENT, 1)
    await settle(served.adapter)

    assert "```" in reply.text
    assert stack.code_events(ITEM) == 1
    assert {m.to for m in fake.sent()} == {AGENT}


async def test_other_chat_gets_a_hint_and_runs_nothing(
    stack: StackLike, served: Served, fake: FakeWhatsApp
) -> None:
    audited = await rows(stack.engine, "bot_audit_log")
    await fake.deliver(served.url, fake.user_message(STRANGER, "hello there"))
    [reply] = await wait_sent(fake, STRANGER, 1)
    assert "*help*" in reply.text
    assert await rows(stack.engine, "bot_audit_log") == audited


async def test_a_stale_code_command_asks_and_a_button_press_confirms_it(
    stack: StackLike, served: Served, fake: FakeWhatsApp
) -> None:
    await stack.grant(f"whatsapp:{AGENT}", Role.AGENT)
    an_hour_ago = time.time() - 3600
    await fake.deliver(
        served.url, fake.user_message(AGENT, f"code days {ITEM} 30", timestamp=an_hour_ago)
    )
    [question] = await wait_sent(fake, AGENT, 1)
    assert question.interactive_type == "button"
    assert stack.code_events(ITEM) == 0

    await fake.deliver(served.url, fake.reply_to(question, "Confirm"))
    messages = await wait_sent(fake, AGENT, 2)

    assert "```" in messages[1].text
    assert stack.code_events(ITEM) == 1


async def test_a_redelivered_message_runs_and_answers_once(
    any_stack: StackLike, serve: ServeFactory, fake: FakeWhatsApp
) -> None:
    served = await serve(any_stack)
    await any_stack.grant(f"whatsapp:{AGENT}", Role.AGENT)
    message = fake.user_message(AGENT, f"code days {ITEM} 30")

    await fake.deliver(served.url, message)
    await wait_sent(fake, AGENT, 1)
    await fake.deliver(served.url, message)
    await settle(served.adapter)

    # Even by another replica on the same database (or after a restart).
    other = await serve(any_stack)
    await fake.deliver(other.url, message)
    await settle(other.adapter)

    assert len(fake.sent(AGENT)) == 1
    assert any_stack.code_events(ITEM) == 1


async def test_one_persons_messages_are_answered_in_order(
    stack: StackLike, served: Served, fake: FakeWhatsApp
) -> None:
    await stack.grant(f"whatsapp:{AGENT}", Role.AGENT)
    for word in ("whoami", f"history {ITEM}", "help"):
        await fake.deliver(served.url, fake.user_message(AGENT, word))
    first, second, third = await wait_sent(fake, AGENT, 3)
    assert f"whatsapp:{AGENT}" in first.text
    assert ITEM in second.text
    assert "code" in third.text.lower()


@pytest.mark.parametrize("signature", ["missing", "wrong", "stale", "other secret"])
async def test_without_the_right_signature_nothing_runs_and_nothing_is_written(
    stack: StackLike, served: Served, fake: FakeWhatsApp, signature: str
) -> None:
    await stack.grant(f"whatsapp:{AGENT}", Role.AGENT)
    tables = ("bot_requests", "bot_audit_log", "bot_rate_hits", "bot_issued_codes")
    before = [await rows(stack.engine, table) for table in tables]
    payload = fake.user_message(AGENT, f"code days {ITEM} 30")
    body = fake.body(payload)
    header: bool | str = {
        "missing": False,
        "wrong": "sha256=" + "0" * 64,
        # A real signature of an earlier notification, replayed over a new body.
        "stale": fake.sign(fake.body(fake.user_message(AGENT, "help"))),
        "other secret": "sha256=" + "ab" * 32,
    }[signature]

    answer = await fake.deliver(served.url, body, signature=header)
    await settle(served.adapter)

    assert answer.status_code == (401 if signature == "missing" else 403)
    assert fake.sent() == []
    assert stack.code_events(ITEM) == 0
    assert [await rows(stack.engine, table) for table in tables] == before


async def test_an_oversized_body_is_refused_with_413(served: Served, fake: FakeWhatsApp) -> None:
    body = b'{"object":"whatsapp_business_account","entry":[' + b" " * 1_100_000 + b"]}"
    answer = await fake.deliver(served.url, body)
    assert answer.status_code == 413
    assert (
        metrics.value("erm_bot_bodies_refused_total", platform="whatsapp", reason="too_large") >= 1
    )


async def test_a_signed_body_that_is_no_notification_is_a_400(
    served: Served, fake: FakeWhatsApp
) -> None:
    assert (await fake.deliver(served.url, b"not json")).status_code == 400


async def test_statuses_are_counted_and_run_nothing(
    stack: StackLike, served: Served, fake: FakeWhatsApp
) -> None:
    def failed() -> float:
        return metrics.value(
            "erm_bot_whatsapp_statuses_total", status="failed", reason="undeliverable"
        )

    before = failed()
    answer = await fake.deliver(
        served.url, fake.status("wamid.x", AGENT, "failed", errors=[131026])
    )
    await fake.deliver(served.url, fake.status("wamid.x", AGENT, "delivered"))
    await settle(served.adapter)
    assert answer.status_code == 200
    assert failed() == before + 1
    assert fake.sent() == []


async def test_a_pair_rate_limit_is_waited_out_once(
    stack: StackLike,
    served: Served,
    fake: FakeWhatsApp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbound, "DEFAULT_RETRY_WAIT", 0.01)
    await stack.grant(f"whatsapp:{AGENT}", Role.AGENT)
    fake.fail_next(PAIR_RATE_LIMIT)
    await fake.deliver(served.url, fake.user_message(AGENT, "whoami"))
    [reply] = await wait_sent(fake, AGENT, 1)
    assert f"whatsapp:{AGENT}" in reply.text

    def failures() -> float:
        return metrics.value(
            "erm_bot_send_failures_total", platform="whatsapp", method="text", reason="pair_rate"
        )

    before = failures()
    fake.fail_next(PAIR_RATE_LIMIT, times=2)
    await fake.deliver(served.url, fake.user_message(AGENT, "whoami"))
    await settle(served.adapter)
    assert len(fake.sent(AGENT)) == 1
    assert failures() == before + 1


async def test_a_redelivery_older_than_the_kept_request_keys_is_dropped(
    stack: StackLike, served: Served, fake: FakeWhatsApp
) -> None:
    await stack.grant(f"whatsapp:{AGENT}", Role.AGENT)
    two_days_ago = time.time() - 2 * 24 * 3600
    payload = fake.user_message(AGENT, f"code days {ITEM} 30", timestamp=two_days_ago)
    assert (await fake.deliver(served.url, payload)).status_code == 200
    await settle(served.adapter)
    assert fake.sent() == []
    assert stack.code_events(ITEM) == 0


async def test_messages_for_another_phone_number_of_the_account_are_not_ours(
    stack: StackLike, served: Served, fake: FakeWhatsApp
) -> None:
    await stack.grant(f"whatsapp:{AGENT}", Role.AGENT)
    payload = fake.user_message(AGENT, "whoami")
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "1"
    assert (await fake.deliver(served.url, payload)).status_code == 200
    await settle(served.adapter)
    assert fake.sent() == []


async def test_a_photo_gets_told_to_type_a_command(served: Served, fake: FakeWhatsApp) -> None:
    payload = fake.user_message(AGENT, "x")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update({"type": "image", "image": {"id": "1", "mime_type": "image/jpeg"}})
    await fake.deliver(served.url, payload)
    [reply] = await wait_sent(fake, AGENT, 1)
    assert "text only" in reply.text


async def test_codes_and_secrets_stay_out_of_the_logs(
    stack: StackLike, served: Served, fake: FakeWhatsApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await stack.grant(f"whatsapp:{AGENT}", Role.AGENT)
    await fake.deliver(served.url, fake.user_message(AGENT, f"code days {ITEM} 30"))
    [reply] = await wait_sent(fake, AGENT, 1)
    await settle(served.adapter)
    code = reply.text.split("```")[1]
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert code not in logged
    assert code.replace(" ", "") not in logged
    for secret in (fake.token, fake.app_secret):
        assert secret not in logged
