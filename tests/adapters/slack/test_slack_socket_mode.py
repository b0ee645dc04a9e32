"""Socket Mode: with SLACK_APP_TOKEN set the adapter connects out over a WebSocket (to the fake's
``apps.connections.open`` URL), acks each envelope at once and answers on the response_url."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakes.slack import FakeSlack, block_actions_payload, command_form

from adapters.platform import Attached
from adapters.slack.app import SlackAdapter
from adapters.slack.config import SlackConfig
from adapters.web import create_app
from bot.roles import Role
from erm.sandbox import OPEN_ACP1_OEM_ID
from erm.sandbox.server import serve_app

ITEM = OPEN_ACP1_OEM_ID


@pytest.fixture
async def socket_adapter(stack: Any, fake_slack: FakeSlack) -> AsyncIterator[SlackAdapter]:
    await stack.grant("slack:U1", Role.AGENT)
    config = SlackConfig(
        bot_token=fake_slack.bot_token, app_token=fake_slack.app_token, api_url=fake_slack.api_url
    )
    adapter = SlackAdapter(stack.dispatcher, config)
    attached = Attached(stack.dispatcher.core, "slack", adapter)
    async with serve_app(create_app([attached])):  # the lifespan connects Socket Mode
        yield adapter


def header(call: Any) -> str:
    return str(next(b for b in call.blocks if b["type"] == "header")["text"]["text"])


async def test_start_opens_a_connection_with_the_app_token(
    socket_adapter: SlackAdapter, fake_slack: FakeSlack
) -> None:
    (opened,) = fake_slack.calls_to("apps.connections.open")
    assert opened.headers["Authorization"] == f"Bearer {fake_slack.app_token}"
    assert len(fake_slack.sockets) == 1
    assert len(fake_slack.calls_to("auth.test")) == 1


async def test_slash_command_envelope_is_acked_then_answered(
    socket_adapter: SlackAdapter, fake_slack: FakeSlack, stack: Any
) -> None:
    before = stack.code_events(ITEM)
    url = fake_slack.response_url()
    loop = asyncio.get_running_loop()
    started = loop.time()
    envelope = await fake_slack.push(
        "slash_commands", command_form("/code", f"days {ITEM} 30", response_url=url)
    )
    ack = await asyncio.wait_for(envelope.acked, 5)
    assert loop.time() - started < 1.0
    assert ack == {"envelope_id": envelope.envelope_id}
    (answer,) = await fake_slack.wait_calls(lambda c: c.method == "response")
    assert header(answer).startswith(f"30-day code for {ITEM}")
    assert answer.body["response_type"] == "ephemeral"
    assert stack.code_events(ITEM) == before + 1


async def test_payload_text_routes_over_socket_mode_too(
    socket_adapter: SlackAdapter, fake_slack: FakeSlack
) -> None:
    envelope = await fake_slack.push(
        "slash_commands",
        command_form("/erm", "whoami payload", response_url=fake_slack.response_url()),
    )
    await asyncio.wait_for(envelope.acked, 5)
    (answer,) = await fake_slack.wait_calls(lambda c: c.method == "response")
    assert answer.status == 200


async def test_button_envelope_is_acked_and_pressed(
    socket_adapter: SlackAdapter, fake_slack: FakeSlack
) -> None:
    envelope = await fake_slack.push(
        "interactive",
        block_actions_payload("erm:run", "unknown-id", response_url=fake_slack.response_url()),
    )
    ack = await asyncio.wait_for(envelope.acked, 5)
    assert ack == {"envelope_id": envelope.envelope_id}
    (notice,) = await fake_slack.wait_calls(lambda c: c.method == "response")
    assert "expired" in notice.text


async def test_stop_closes_the_socket_and_finishes_work_in_flight(
    stack: Any, fake_slack: FakeSlack
) -> None:
    await stack.grant("slack:U1", Role.AGENT)
    stack.sandbox.faults.latency_ms = 500
    config = SlackConfig(
        bot_token=fake_slack.bot_token, app_token=fake_slack.app_token, api_url=fake_slack.api_url
    )
    adapter = SlackAdapter(stack.dispatcher, config)
    async with serve_app(create_app([Attached(stack.dispatcher.core, "slack", adapter)])):
        envelope = await fake_slack.push(
            "slash_commands", command_form("/items", response_url=fake_slack.response_url())
        )
        await asyncio.wait_for(envelope.acked, 5)
    # The app has stopped: the answer in flight was still delivered, the socket is closed.
    assert len(fake_slack.calls_to("response")) == 1
    await fake_slack.wait_sockets_closed(within=5)
