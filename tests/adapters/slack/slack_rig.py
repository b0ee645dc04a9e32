"""The Slack test rig: the fake Slack, the adapter on the running ASGI app, and helpers to send
signed slash commands and button clicks to it over real HTTP and wait for the answers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx
from fakes.slack import (
    SIGNING_SECRET,
    Call,
    FakeSlack,
    block_actions_payload,
    command_form,
    encode_form,
    encode_payload,
    signed_headers,
)

from adapters.slack.app import SlackAdapter


@dataclass
class Sent:
    """One request the test sent: Slack's HTTP answer and the fields it carried."""

    response: httpx.Response
    fields: dict[str, Any]
    seconds: float  # how long the ack took

    @property
    def response_path(self) -> str:
        return urlparse(str(self.fields["response_url"])).path


@dataclass
class SlackRig:
    fake: FakeSlack
    adapter: SlackAdapter
    base_url: str
    http: httpx.AsyncClient

    async def post(self, body: str, headers: dict[str, str] | None = None) -> httpx.Response:
        headers = signed_headers(body, secret=SIGNING_SECRET) if headers is None else headers
        return await self.http.post("/slack/events", content=body.encode(), headers=headers)

    async def command(self, command: str, text: str = "", **fields: Any) -> Sent:
        """Send a signed slash command; returns once Slack's side got the ack."""
        fields.setdefault("response_url", self.fake.response_url())
        form = command_form(command, text, **fields)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await self.post(encode_form(form))
        return Sent(response, form, loop.time() - started)

    async def click(self, action_id: str, value: str, **fields: Any) -> Sent:
        """Send a signed block_actions click on one button."""
        fields.setdefault("response_url", self.fake.response_url())
        payload = block_actions_payload(action_id, value, **fields)
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await self.post(encode_payload(payload))
        return Sent(response, payload, loop.time() - started)

    async def answers(self, sent: Sent, count: int = 1, within: float = 10.0) -> list[Call]:
        """The posts to the response_url of ``sent`` (at least ``count``)."""
        path = sent.response_path
        return await self.fake.wait_calls(
            lambda c: c.method == "response" and c.path == path, count=count, within=within
        )

    async def answer(self, sent: Sent, within: float = 10.0) -> Call:
        calls = await self.answers(sent, 1, within)
        return calls[0]

    async def ask(self, command: str, text: str = "", **fields: Any) -> Call:
        """A slash command and its first answer."""
        sent = await self.command(command, text, **fields)
        assert sent.response.status_code == 200, sent.response.text
        return await self.answer(sent)


def buttons(call: Call) -> list[dict[str, Any]]:
    return [
        element
        for block in call.blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]
