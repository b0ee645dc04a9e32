"""Prometheus metrics: served at /metrics, and counting what operators watch.

Metrics live in one process-wide registry, so every test compares a sample before and after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fakes.slack import FakeSlack
from fakes.telegram import FakeTelegram, User
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.web.async_client import AsyncWebClient

from adapters.platform import Attached
from adapters.runtime import open_runtime
from adapters.slack.outbound import Outbound, SlackSendError
from adapters.telegram.app import TelegramAdapter
from adapters.telegram.config import TelegramConfig
from adapters.web import create_app
from bot import metrics
from bot.messages import Identity, Request
from bot.roles import Role
from erm.client import ErmClient
from erm.errors import ErmError, ErmUnavailableError
from erm.sandbox import ACME
from erm.sandbox.seed import OPEN_ACP1_OEM_ID, OPEN_OPENTOKEN_OEM_ID

AGENT = "console:ann"


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


def request(text: str, key: str, user: str = "ann") -> Request:
    return Request(Identity("console", user), text, request_key=key)


def commands(command: str, outcome: str) -> float:
    return metrics.value("erm_bot_commands_total", command=command, outcome=outcome)


async def test_metrics_are_served_in_the_prometheus_text_format() -> None:
    app = create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bot") as http:
        response = await http.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert {
        "erm_bot_commands",
        "erm_bot_codes_issued",
        "erm_bot_approval_latency_seconds",
        "erm_bot_erm_call_seconds",
        "erm_bot_erm_call_errors",
        "erm_bot_send_failures",
        "process_cpu_seconds",
    } <= families


async def test_commands_are_counted_by_name_and_outcome(stack: Any) -> None:
    await stack.grant(AGENT, Role.AGENT)
    ok, unknown = commands("whoami", "ok"), commands("unknown", "invalid")
    denied = commands("grant", "denied")

    await stack.dispatcher.handle(request("/whoami", "m1"))
    await stack.dispatcher.handle(request("/no-such-command at all", "m2"))
    await stack.dispatcher.handle(request("/grant slack:U9 agent", "m3"))

    assert commands("whoami", "ok") == ok + 1
    assert commands("unknown", "invalid") == unknown + 1  # what users type never becomes a label
    assert commands("grant", "denied") == denied + 1


async def test_an_issued_code_is_counted_by_type_and_distributor_once(stack: Any) -> None:
    await stack.grant(AGENT, Role.AGENT)
    issued = metrics.value("erm_bot_codes_issued_total", type="days", distributor=ACME.name)

    await stack.dispatcher.handle(request(f"/code days {OPEN_ACP1_OEM_ID} 7", "c1"))
    # The same code again within the duplicate window is shown, not generated.
    shown = await stack.dispatcher.handle(request(f"/code days {OPEN_ACP1_OEM_ID} 7", "c2"))

    assert (shown.title or "").startswith("Already issued")
    assert stack.code_events(OPEN_ACP1_OEM_ID) > 0
    after = metrics.value("erm_bot_codes_issued_total", type="days", distributor=ACME.name)
    assert after == issued + 1


async def test_erm_calls_are_timed_and_failures_counted_by_operation(stack: Any) -> None:
    settings = stack.settings
    timed = metrics.value("erm_bot_erm_call_seconds_count", operation="GetAllClientItems")
    failed = metrics.value(
        "erm_bot_erm_call_errors_total", operation="GetAllClientItems", error="ErmUnavailableError"
    )
    async with open_runtime(settings) as runtime:  # wired as `erm-bot run` wires it
        await runtime.service.resolve_item(ACME.name, OPEN_OPENTOKEN_OEM_ID)
        stack.sandbox.faults.fail_next = 5
        with pytest.raises(ErmUnavailableError):
            await runtime.service.resolve_item(ACME.name, "TEST2503000002")

    assert metrics.value("erm_bot_erm_call_seconds_count", operation="GetAllClientItems") > timed
    assert (
        metrics.value(
            "erm_bot_erm_call_errors_total",
            operation="GetAllClientItems",
            error="ErmUnavailableError",
        )
        >= failed + 1
    )


async def test_a_failing_observer_does_not_fail_the_erm_call(stack: Any) -> None:
    seen: list[tuple[str, ErmError | None]] = []

    def observer(operation: str, seconds: float, error: ErmError | None) -> None:
        seen.append((operation, error))
        raise RuntimeError("observer bug")

    async with ErmClient(stack.settings.erm_client_config(), observer=observer) as client:
        signed = await client.sign_in_client(ACME.email, ACME.password)

    assert signed.distributor_id
    assert seen == [("SignInClient", None)]


async def test_slack_send_failures_are_counted_by_method_and_error() -> None:
    before = metrics.value(
        "erm_bot_send_failures_total",
        platform="slack",
        method="chat.postMessage",
        reason="channel_not_found",
    )
    async with FakeSlack() as fake:
        outbound = Outbound(AsyncWebClient(token=fake.bot_token, base_url=fake.api_url))
        fake.error("chat.postMessage", "channel_not_found")
        with pytest.raises(SlackSendError):
            await outbound.post_message("C404", {"text": "hello"})
        await outbound.close()

    after = metrics.value(
        "erm_bot_send_failures_total",
        platform="slack",
        method="chat.postMessage",
        reason="channel_not_found",
    )
    assert after == before + 1


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


async def test_telegram_send_failures_are_counted_by_method_and_error(
    stack: Any, telegram: FakeTelegram
) -> None:
    user = User(5001, "Amina")
    await stack.grant(f"telegram:{user.id}", Role.AGENT)
    labels = {"platform": "telegram", "method": "sendMessage", "reason": "BadRequest"}
    before = metrics.value("erm_bot_send_failures_total", **labels)
    config = TelegramConfig(
        bot_token=telegram.token, api_url=telegram.api_url, poll_timeout=1.0, lock_interval=0.2
    )
    adapter = Attached(
        stack.dispatcher.core, "telegram", TelegramAdapter(stack.dispatcher, config, stack.engine)
    )
    await adapter.start()
    try:
        telegram.fail("sendMessage", status=400, description="Bad Request: chat not found")
        telegram.message(user, "/whoami")
        await telegram.wait_until(
            lambda: any(c.status == 400 for c in telegram.calls_to("sendMessage")),
            what="the refused sendMessage",
        )
    finally:
        await adapter.stop()

    assert metrics.value("erm_bot_send_failures_total", **labels) == before + 1


async def test_approval_latency_is_observed_by_decision() -> None:
    before = metrics.value("erm_bot_approval_latency_seconds_count", decision="approved")

    metrics.observe_approval(42.0, "approved")

    assert metrics.value("erm_bot_approval_latency_seconds_count", decision="approved") == (
        before + 1
    )
    assert (
        metrics.value("erm_bot_approval_latency_seconds_bucket", decision="approved", le="60.0")
        >= before + 1
    )
