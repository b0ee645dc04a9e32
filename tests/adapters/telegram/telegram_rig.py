"""People, chats and types shared by the Telegram adapter tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from fakes.telegram import Group, User
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.settings import Settings
from adapters.telegram.app import TelegramAdapter
from bot.dispatch import Dispatcher
from bot.roles import Role
from erm.sandbox.state import SandboxState

AGENT = User(1001, "Amina", "amina_k", "Kamau")
STRANGER = User(1002, "Brian", "brian_o")
SUPERVISOR = User(1003, "Chloe", "chloe_n")
ADMIN = User(1004, "Dawit", "dawit_admin")
TEAM = Group(-100200300, "Field team Nairobi")

AdapterFactory = Callable[..., Awaitable[TelegramAdapter]]


class StackLike(Protocol):
    """What these tests use of ``tests/adapters/conftest.py``'s ``Stack``."""

    settings: Settings
    dispatcher: Dispatcher
    engine: AsyncEngine
    sandbox: SandboxState

    async def grant(self, key: str, role: Role, distributor: str = ...) -> None: ...

    def code_events(self, oem_id: str) -> int: ...
