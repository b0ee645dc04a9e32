"""Helpers of the security suite: signed (or forged) Slack requests, Telegram and WhatsApp webhook
posts, and what a refused request must not leave behind (a dispatcher call, a database row, a
message)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
from fakes.slack import FakeSlack, command_form, encode_form, shown, signed_headers
from fakes.telegram import FakeTelegram, User
from fakes.whatsapp import FakeWhatsApp, SentMessage
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.slack.app import SlackAdapter
from adapters.whatsapp.app import WhatsAppAdapter
from adapters.whatsapp.inbound import SIGNATURE_HEADER
from bot.audit import AuditRow
from bot.dispatch import Answer, Dispatcher
from bot.messages import Click, Pressed, Request
from bot.storage.buttons import ButtonRow
from bot.storage.codes import IssuedCodeRow
from bot.storage.requests import RequestRow

WEBHOOK_SECRET = "security-suite-webhook-secret"
WEBHOOK_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TELEGRAM_AGENT = User(7101, "Neema", "neema_w")  # an agent at acme (see conftest.py)
WHATSAPP_AGENT = "254700123456"  # an agent at acme (see conftest.py)
WHATSAPP_STRANGER = "254711000222"  # no role anywhere


@dataclass
class Spy:
    """Every request and click that reached the core."""

    seen: list[Request | Click] = field(default_factory=list)

    def attach(self, dispatcher: Dispatcher) -> None:
        # ``Dispatcher.handle`` goes through ``answer`` too.
        answer, press = dispatcher.answer, dispatcher.press

        async def spy_answer(request: Request) -> Answer:
            self.seen.append(request)
            return await answer(request)

        async def spy_press(click: Click) -> Pressed:
            self.seen.append(click)
            return await press(click)

        dispatcher.answer = spy_answer  # type: ignore[method-assign]
        dispatcher.press = spy_press  # type: ignore[method-assign]


@dataclass
class SlackSide:
    """The Slack adapter on the bot's app at ``http.base_url``, and the fake Slack."""

    fake: FakeSlack
    adapter: SlackAdapter
    http: httpx.AsyncClient

    async def post(self, body: str | bytes, headers: dict[str, str]) -> httpx.Response:
        content = body.encode() if isinstance(body, str) else body
        return await self.http.post("/slack/events", content=content, headers=headers)

    async def ask(self, text: str, user_id: str = "U1", **fields: Any) -> str:
        """``text`` as a user types it (``/history X``): its first answer as the user reads it."""
        word, _, rest = text.strip().partition(" ")
        command = word if word.lstrip("/") in self.adapter.slash_words else "/erm"
        rest = rest if command == word else text.strip().lstrip("/")
        url = self.fake.response_url()
        form = command_form(command, rest, user_id=user_id, response_url=url, **fields)
        body = encode_form(form)
        response = await self.post(body, signed_headers(body))
        assert response.status_code == 200, response.text
        path = urlparse(url).path
        calls = await self.fake.wait_calls(
            lambda c: c.method == "response" and c.path == path, within=15.0
        )
        return shown(calls[0])


@dataclass
class TelegramSide:
    """The Telegram adapter in webhook mode on the bot's app, and the fake Bot API."""

    fake: FakeTelegram
    url: str  # the webhook's local URL
    http: httpx.AsyncClient

    async def ask(self, user: User, text: str) -> str:
        """A private message from ``user`` through the webhook; the bot's answer, as HTML."""
        before = len(self.fake.sent())
        response = await self.post(self.fake.message_update(user, text))
        assert response.status_code == 200, response.text
        messages = await self.fake.wait_for_messages(before + 1, within=15.0)
        return messages[before].text

    async def post(
        self, body: Any, secret: str | None = WEBHOOK_SECRET, *, raw: bytes | None = None
    ) -> httpx.Response:
        headers = {WEBHOOK_SECRET_HEADER: secret} if secret is not None else {}
        if raw is not None:
            headers["Content-Type"] = "application/json"
            return await self.http.post(self.url, content=raw, headers=headers)
        return await self.http.post(self.url, json=body, headers=headers)


@dataclass
class WhatsAppSide:
    """The WhatsApp adapter on the bot's app (webhook at ``url``), and the fake Graph API."""

    fake: FakeWhatsApp
    adapter: WhatsAppAdapter
    url: str  # the webhook's local URL
    http: httpx.AsyncClient

    async def post(
        self, body: bytes, signature: str | None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """``body`` as is, with ``signature`` as ``X-Hub-Signature-256`` (None: no header)."""
        sent = {"Content-Type": "application/json", **(headers or {})}
        if signature is not None:
            sent[SIGNATURE_HEADER] = signature
        return await self.http.post(self.url, content=body, headers=sent)

    async def deliver(self, payload: dict[str, Any] | bytes) -> httpx.Response:
        """A notification signed with the app secret, as Meta posts it."""
        body = payload if isinstance(payload, bytes) else self.fake.body(payload)
        return await self.post(body, self.fake.sign(body))

    async def settle(self) -> None:
        """Until the work the webhook queued has run (replies sent)."""
        await asyncio.sleep(0)
        await self.adapter.runner.join()

    async def ask(self, text: str, wa_id: str = WHATSAPP_AGENT, **fields: Any) -> SentMessage:
        """A text message from ``wa_id``; the bot's first answer to it."""
        before = len(self.fake.sent(wa_id))
        response = await self.deliver(self.fake.user_message(wa_id, text, **fields))
        assert response.status_code == 200, response.text
        await self.settle()
        sent = self.fake.sent(wa_id)
        assert len(sent) > before, f"no answer to {text!r}"
        return sent[before]


async def rows(engine: AsyncEngine) -> dict[str, int]:
    """Rows of the tables any command or click would write."""
    counted = {}
    async with engine.connect() as connection:
        for name, table in (
            ("requests", RequestRow),
            ("audit", AuditRow),
            ("codes", IssuedCodeRow),
            ("buttons", ButtonRow),
        ):
            counted[name] = int(
                await connection.scalar(select(func.count()).select_from(table)) or 0
            )
    return counted


async def settle(seconds: float = 0.3) -> None:
    """Give work the bot might (wrongly) have started time to show."""
    await asyncio.sleep(seconds)
