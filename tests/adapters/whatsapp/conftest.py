"""Fixtures for the WhatsApp adapter tests: the fake Graph API and adapters pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from fakes.whatsapp import FakeWhatsApp
from sqlalchemy.ext.asyncio import AsyncEngine
from whatsapp_rig import AdapterFactory, Served, ServeFactory, StackLike, config_for

from adapters.platform import Attached
from adapters.web import create_app
from adapters.whatsapp.app import WhatsAppAdapter
from bot.dispatch import Dispatcher
from erm.sandbox.server import serve_app


@pytest.fixture
async def fake() -> AsyncIterator[FakeWhatsApp]:
    async with FakeWhatsApp() as fake:
        yield fake


@pytest.fixture
def make_adapter(fake: FakeWhatsApp) -> AdapterFactory:
    async def build(
        dispatcher: Dispatcher, engine: AsyncEngine, **overrides: Any
    ) -> WhatsAppAdapter:
        return WhatsAppAdapter(dispatcher, config_for(fake, **overrides), engine)

    return build


@pytest.fixture
async def serve(make_adapter: AdapterFactory) -> AsyncIterator[ServeFactory]:
    """Serves adapters in the bot's one web app (started, notifier attached); stops them after."""
    async with AsyncExitStack() as stack:

        async def start(on: StackLike, **overrides: Any) -> Served:
            adapter = await make_adapter(on.dispatcher, on.engine, **overrides)
            attached = Attached(on.dispatcher.core, "whatsapp", adapter)
            base = await stack.enter_async_context(serve_app(create_app([attached])))
            return Served(adapter, f"{base}/whatsapp/webhook")

        yield start


@pytest.fixture
async def served(serve: ServeFactory, stack: StackLike) -> Served:
    return await serve(stack)
