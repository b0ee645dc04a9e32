"""The bot core's test harness types, importable by tests (``conftest`` names clash)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from support import CountingTransport

from bot.audit import AuditLog
from bot.core import Core
from bot.dispatch import Dispatcher
from bot.messages import Identity, Reply, Request
from bot.roles import Role
from erm.sandbox import ACME
from erm.sandbox.state import SandboxState

ROLES = (Role.VIEWER, Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
_BAD_INPUT_CODES = {"BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"}
_keys = itertools.count()


class RejectionRecorder(httpx.AsyncBaseTransport):
    """Passes requests on and records every answer in which ERM rejected the request's input."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.rejections: list[tuple[int, str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        await response.aclose()
        bad = response.status_code == 400
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        if isinstance(body, dict):
            for error in body.get("errors") or ():
                code = (
                    (error.get("extensions") or {}).get("code") if isinstance(error, dict) else None
                )
                bad = bad or code in _BAD_INPUT_CODES
        if bad:
            self.rejections.append(
                (response.status_code, request.content.decode(errors="replace"), content.decode())
            )
        return httpx.Response(
            response.status_code,
            headers=[(k, v) for k, v in response.headers.items() if k.lower() != "content-length"],
            content=content,
            request=request,
        )


@dataclass
class Bot:
    core: Core
    dispatcher: Dispatcher
    sandbox: SandboxState
    transport: CountingTransport
    recorder: RejectionRecorder
    engine: AsyncEngine
    audit: AuditLog = field(init=False)

    def __post_init__(self) -> None:
        self.audit = self.core.audit

    async def say(self, user: str, text: str, key: str | None = None) -> Reply:
        request = Request(Identity("console", user), text, request_key=key or f"test:{next(_keys)}")
        return await self.dispatcher.handle(request)

    async def grant(self, user: str, role: Role, distributor: str = ACME.name) -> None:
        await self.core.grants.grant("console", user, role, distributor, "tests")

    def code_events(self, oem_id: str) -> int:
        return len(self.sandbox.item_by_oem_id(oem_id).code_generator.events)


BotFactory = Callable[..., Awaitable[Bot]]
