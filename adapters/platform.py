"""What a chat platform is to the rest of erm-bot: :class:`Platform`, and how a built one runs.

Each platform exports one ``PLATFORM`` (``adapters/slack/``, ``adapters/telegram/``,
``adapters/console.py``) and :mod:`adapters.platforms` lists them: serve, doctor, the web app
and the user-id rules loop over that list, so a new platform is a new folder and one line there.

A platform module stays cheap to import: every ``erm-bot`` command loads the registry (through
the user-id rules), so the chat library loads only in ``build`` and ``doctor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import BaseRoute

from adapters.findings import Finding, Status
from adapters.settings import Settings
from bot.core import Core
from bot.dispatch import Dispatcher
from bot.permissions import UserIdRule
from bot.ports import Notifier

C = TypeVar("C")  # what one platform reads from the settings (its config)


class ConfigurationError(ValueError):
    """The settings do not describe a bot that can run; the message says what to set."""


class NoPlatformError(ConfigurationError):
    """No chat platform is enabled: ``erm-bot run`` has nothing to serve; the console works."""


class Report(Protocol):
    """How a doctor check says what it found (``erm-bot doctor`` prints one line per call)."""

    def __call__(self, status: Status, check: str, detail: str, fix: str = "") -> Finding: ...


class Served(Protocol):
    """A built platform: the routes it serves, its background work, and how the core posts there.

    A ``WebService`` of :func:`adapters.web.create_app` (routes, start, stop) with two more parts
    that :class:`Attached` hands to the core while it runs.
    """

    def routes(self) -> list[BaseRoute]: ...

    async def start(self) -> None:
        """Check credentials and start background work (polling, Socket Mode); return once up."""

    async def stop(self) -> None:
        """Stop taking requests, finish the ones in flight, close connections."""

    @property
    def notifier(self) -> Notifier:
        """How the core posts cards and private messages on this platform."""

    @property
    def deep_link(self) -> str | None:
        """Once started, the invite link template with ``{code}``; None when it has none."""


class Platform(Protocol[C]):
    """One chat platform: what the settings say about it, how to build it, how to check it."""

    @property
    def name(self) -> str:
        """Its word in identities (``slack:U0123``), audit rows and its HTTP paths (``/slack/``)."""

    @property
    def user_ids(self) -> UserIdRule:
        """What its user ids look like, for the core to check ids people type."""

    @property
    def enabled_by(self) -> str | None:
        """The setting that turns it on; None when none does (the console has its own command)."""

    def config(self, settings: Settings) -> C | None:
        """Its config, None when not enabled; ``ConfigurationError`` saying what to set if bad."""

    def describe(self, config: C) -> str:
        """How it will run, in a few words (``Slack over HTTP``)."""

    def build(self, config: C, dispatcher: Dispatcher, engine: AsyncEngine) -> Served:
        """The platform serving ``dispatcher``; nothing is contacted until it starts."""

    async def doctor(self, config: C, report: Report) -> None:
        """Check the credentials with the platform itself, changing nothing; report each check."""


@dataclass(frozen=True, slots=True)
class Enabled(Generic[C]):
    """A platform with the config the settings gave it."""

    platform: Platform[C]
    config: C

    @property
    def name(self) -> str:
        return self.platform.name

    def describe(self) -> str:
        return self.platform.describe(self.config)

    def build(self, dispatcher: Dispatcher, engine: AsyncEngine) -> Served:
        return self.platform.build(self.config, dispatcher, engine)

    async def doctor(self, report: Report) -> None:
        await self.platform.doctor(self.config, report)


def enable(platform: Platform[C], settings: Settings) -> Enabled[C] | None:
    config = platform.config(settings)
    return None if config is None else Enabled(platform, config)


class Attached:
    """A built platform as it runs: the one place that hands its notifier and invite link to the
    core (``core.notifiers``, ``core.deep_links``), so no adapter writes into the core itself.

    The notifier goes in once the platform has started (it can send by then) and comes out once
    it has stopped (its commands in flight could still post). The invite link stays: it points
    at the platform, which still reaches the bot's other replicas.
    """

    def __init__(self, core: Core, name: str, served: Served) -> None:
        self.core = core
        self.name = name
        self.served = served
        self._notifier: Notifier | None = None

    def routes(self) -> list[BaseRoute]:
        return self.served.routes()

    async def start(self) -> None:
        await self.served.start()
        self._notifier = self.served.notifier
        self.core.notifiers[self.name] = self._notifier
        link = self.served.deep_link
        if link is not None:
            self.core.deep_links[self.name] = link

    async def stop(self) -> None:
        try:
            await self.served.stop()
        finally:
            notifier, self._notifier = self._notifier, None
            if notifier is not None and self.core.notifiers.get(self.name) is notifier:
                del self.core.notifiers[self.name]

    async def __aenter__(self) -> Attached:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
