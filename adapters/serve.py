"""``erm-bot run`` / ``erm-bot serve``: every platform the configuration enables, on one ASGI app.

Each platform of :data:`adapters.platforms.PLATFORMS` says from the settings whether it is
enabled, and brings its routes (``/slack/events``, ``/telegram/webhook``) and background work
(Socket Mode, long polling). uvicorn serves the app and turns SIGTERM / Ctrl-C into a graceful
shutdown: the app's lifespan stops each platform, which finishes the commands in flight.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
from types import FrameType
from typing import Any

import uvicorn

from adapters.approvals import ApprovalSweeper
from adapters.housekeeping import Housekeeping
from adapters.platform import Attached, ConfigurationError, Enabled, NoPlatformError, enable
from adapters.platforms import PLATFORMS
from adapters.runtime import Runtime, open_runtime
from adapters.settings import Settings
from adapters.web import Readiness, WebService, create_app
from bot.dispatch import Dispatcher

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 25
"""How long in-flight HTTP requests may take after SIGTERM (Kubernetes waits 30 s by default)."""


class _Server(uvicorn.Server):
    """uvicorn re-raises a captured SIGTERM once it has shut down, so the process would end "killed
    by SIGTERM" (status -15) after a clean shutdown; a bot that stopped cleanly exits 0."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        captured: list[int] | None = getattr(self, "_captured_signals", None)
        if sig == signal.SIGTERM and captured and captured[-1] == sig:
            captured.pop()


def platforms(settings: Settings) -> list[Enabled[Any]]:
    """What the settings enable, checked before anything starts; ``ConfigurationError`` if bad."""
    enabled = [e for platform in PLATFORMS if (e := enable(platform, settings)) is not None]
    if not enabled:
        switches = " and/or ".join(p.enabled_by for p in PLATFORMS if p.enabled_by)
        raise NoPlatformError(f"no chat platform is configured: set {switches}")
    return enabled


def platform_services(
    enabled: list[Enabled[Any]], runtime: Runtime, dispatcher: Dispatcher
) -> list[Attached]:
    """Each enabled platform built, its notifier handed to the core while it runs."""
    return [Attached(dispatcher.core, e.name, e.build(dispatcher, runtime.engine)) for e in enabled]


async def serve(settings: Settings, host: str, port: int) -> int:
    """Run until SIGTERM / Ctrl-C; 2 on bad configuration."""
    try:
        enabled = platforms(settings)
    except ConfigurationError as exc:
        print(f"erm-bot: bad configuration: {exc}", file=sys.stderr)
        return 2
    async with open_runtime(settings) as runtime:
        dispatcher = runtime.dispatcher()
        attached = platform_services(enabled, runtime, dispatcher)
        names = ", ".join(type(a.served).__name__.removesuffix("Adapter") for a in attached)
        services: list[WebService] = [*attached, Housekeeping(dispatcher.core)]
        # After the platforms: their notifiers are registered when the first sweep runs.
        services.append(
            ApprovalSweeper(
                dispatcher.core, dispatcher.run, settings.erm_bot_approval_sweep_seconds
            )
        )
        readiness = Readiness(
            runtime.engine, settings.erm_api_url, timeout=settings.erm_bot_ready_timeout
        )
        config = uvicorn.Config(
            create_app(services, readiness=readiness),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
        server = _Server(config)
        log.info("erm-bot serving %s on http://%s:%d", names, host, port)
        # What start-up built (modules, classes, clients: most of the heap) lives as long as the
        # process: keep it out of the cyclic GC, whose full collections otherwise walk all of it
        # and stall the event loop for ~100 ms under load (bench/findings.md).
        gc.collect()
        gc.freeze()
        await server.serve()
        # Code requests still being settled get a moment to record their outcome; one cut short
        # leaves its intent open, and the next process's housekeeping (or the next request for
        # the item) reconciles it once its item lock has expired (bot.recovery).
        await dispatcher.core.background.drain(SHUTDOWN_GRACE_SECONDS)
        # uvicorn reports a failed startup (a platform refused to start) by not starting.
        return 0 if server.started else 1
