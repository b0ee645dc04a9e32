"""Housekeeping forgets old request keys, rate windows and expired buttons, and nothing newer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.housekeeping import Housekeeping, tidy
from bot.dispatch import BUTTON_TTL
from bot.messages import Identity, Request
from bot.roles import Role


async def test_tidy_removes_only_what_is_past_its_retention(stack: Any) -> None:
    await stack.grant("console:ann", Role.VIEWER)
    core = stack.dispatcher.core
    first = await stack.dispatcher.handle(Request(Identity("console", "ann"), "/items", "old"))
    later = datetime.now(UTC) + max(BUTTON_TTL, timedelta(days=1)) + timedelta(minutes=1)
    core.clock = lambda: later
    await stack.dispatcher.handle(Request(Identity("console", "ann"), "/items", "new"))

    removed = await tidy(core)

    assert removed["requests"] == 1
    assert removed["buttons"] == len(first.buttons)
    assert removed["rate_windows"] >= 1
    assert await tidy(core) == {
        "requests": 0,
        "rate_windows": 0,
        "buttons": 0,
        "code_intents": 0,
        "held": 0,
    }
    again = await stack.dispatcher.handle(Request(Identity("console", "ann"), "/items", "new"))
    assert again.buttons  # the newer claim and its buttons are still there


async def test_the_service_runs_at_start_and_stops(stack: Any) -> None:
    service = Housekeeping(stack.dispatcher.core, interval=0.05)
    await service.start()
    await asyncio.sleep(0.2)
    await service.stop()

    assert service.routes() == []
