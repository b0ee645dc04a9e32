"""Wiring of the long-lived pieces (database, vault, ERM client and service) from ``Settings``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.platform_ids import USER_IDS
from adapters.settings import Settings
from bot import metrics
from bot.approvals.service import ApprovalService
from bot.audit import AuditLog
from bot.commands import COMMANDS
from bot.core import Core
from bot.dispatch import Dispatcher
from bot.permissions import Permissions
from bot.storage.approvals import ApprovalStore
from bot.storage.base import migrate
from bot.storage.buttons import ButtonStore
from bot.storage.codes import CodeStore
from bot.storage.grants import GrantStore
from bot.storage.held import HeldStore
from bot.storage.invites import InviteStore
from bot.storage.limits import RateLimiter
from bot.storage.requests import RequestStore
from erm.client import ErmClient
from erm.db import create_engine
from erm.errors import VaultError
from erm.secret_box import SecretBox, SecretKeyError
from erm.service import ErmService
from erm.vault import TokenVault


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    vault: TokenVault
    client: ErmClient
    service: ErmService

    def core(self) -> Core:
        """The bot core over this runtime's database and ERM service."""
        engine = self.engine
        grants = GrantStore(engine)
        return Core(
            erm=self.service,
            grants=grants,
            codes=CodeStore(engine, box=self.vault.box),
            requests=RequestStore(engine, box=self.vault.box),
            rate=RateLimiter(engine),
            audit=AuditLog(engine, box=self.vault.box),
            permissions=Permissions(
                grants, self.vault.names, self.settings.admins, user_ids=USER_IDS
            ),
            commands=COMMANDS,
            buttons=ButtonStore(engine),
            invites=InviteStore(engine),
            limits=self.settings.limits(),
            approvals=ApprovalService(ApprovalStore(engine)),
            held=HeldStore(engine, box=self.vault.box),
        )

    def dispatcher(self) -> Dispatcher:
        return Dispatcher(self.core())


def secret_box(settings: Settings) -> SecretBox:
    keys = settings.secret_keys
    if not keys:
        raise VaultError(
            "ERM_BOT_SECRET_KEYS is not set: make a key with `erm-bot keys generate` "
            "and put it in the environment or in .env"
        )
    try:
        return SecretBox(keys)
    except SecretKeyError as exc:
        raise VaultError(
            f"ERM_BOT_SECRET_KEYS: {exc}. Make a key with `erm-bot keys generate`."
        ) from None


@asynccontextmanager
async def open_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The database engine, migrated to the newest schema (a no-op when it already is).

    The keys are asked for only by a migration that must encrypt rows an older release wrote.
    """
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine, secret_box=lambda: secret_box(settings))
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, erm_transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[Runtime]:
    box = secret_box(settings)
    async with open_engine(settings) as engine:
        vault = TokenVault(engine, box)
        async with ErmClient(
            settings.erm_client_config(),
            transport=erm_transport,
            observer=metrics.observe_erm_call,
        ) as client:
            service = ErmService(client, vault, settings.erm_service_config())
            yield Runtime(settings, engine, vault, client, service)
