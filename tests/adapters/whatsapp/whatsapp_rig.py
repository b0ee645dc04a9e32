"""People, types and helpers shared by the WhatsApp adapter tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fakes.whatsapp import FakeWhatsApp, SentMessage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.settings import Settings
from adapters.whatsapp.app import WhatsAppAdapter
from adapters.whatsapp.config import WhatsAppConfig
from bot.dispatch import Dispatcher
from bot.roles import Role
from erm.sandbox.seed import OPEN_OPENTOKEN_OEM_ID
from erm.sandbox.state import SandboxState

AGENT = "254700123456"
STRANGER = "254711000222"
SUPERVISOR = "254722333444"
ITEM = OPEN_OPENTOKEN_OEM_ID


class StackLike(Protocol):
    """What these tests use of ``tests/adapters/conftest.py``'s ``Stack``."""

    settings: Settings
    dispatcher: Dispatcher
    engine: AsyncEngine
    sandbox: SandboxState

    async def grant(self, key: str, role: Role, distributor: str = ...) -> None: ...

    def code_events(self, oem_id: str) -> int: ...


@dataclass
class Served:
    """An adapter behind the bot's web app on loopback."""

    adapter: WhatsAppAdapter
    url: str  # .../whatsapp/webhook


AdapterFactory = Callable[..., Awaitable[WhatsAppAdapter]]
ServeFactory = Callable[..., Awaitable[Served]]


async def wait_sent(
    fake: FakeWhatsApp, wa_id: str, count: int, within: float = 10.0
) -> list[SentMessage]:
    """The messages to ``wa_id`` once there are ``count`` of them (fails after ``within`` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(fake.sent(wa_id)) < count:
        if loop.time() > deadline:
            raise AssertionError(f"{count} messages to {wa_id} expected: {fake.sent(wa_id)}")
        await asyncio.sleep(0.02)
    return fake.sent(wa_id)


async def settle(adapter: WhatsAppAdapter) -> None:
    """Wait until the work queued by the webhook has run."""
    await asyncio.sleep(0)
    await adapter.runner.join()


async def rows(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608


def config_for(fake: FakeWhatsApp, **overrides: Any) -> WhatsAppConfig:
    values: dict[str, Any] = {
        "token": fake.token,
        "phone_number_id": fake.phone_number_id,
        "app_secret": fake.app_secret,
        "verify_token": fake.verify_token,
        "api_url": fake.url,
    }
    values.update(overrides)
    return WhatsAppConfig(**values)
