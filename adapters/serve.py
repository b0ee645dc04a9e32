"""``erm-bot run`` / ``erm-bot serve``: every platform the configuration enables, on one ASGI app.

Slack answers at ``/slack/events`` (or over Socket Mode when ``SLACK_APP_TOKEN`` is set); Telegram
through its webhook at ``/telegram/webhook`` (when ``TELEGRAM_WEBHOOK_URL`` is set) or long
polling. uvicorn serves the app and turns SIGTERM / Ctrl-C into a graceful shutdown: the app's
lifespan stops each platform, which finishes the commands in flight.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType

import uvicorn

from adapters.approvals import ApprovalSweeper
from adapters.housekeeping import Housekeeping
from adapters.logs import bind_request_once
from adapters.runtime import Runtime, open_runtime
from adapters.settings import Settings
from adapters.slack import SlackAdapter, SlackConfig
from adapters.telegram import TelegramAdapter, TelegramConfig
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


class ConfigurationError(ValueError):
    """The settings do not describe a bot that can run; the message says what to set."""


@dataclass(frozen=True, slots=True)
class Platforms:
    slack: SlackConfig | None
    telegram: TelegramConfig | None


def platforms(settings: Settings) -> Platforms:
    """What the settings enable, checked before anything starts; ``ConfigurationError`` if bad."""
    try:
        slack = SlackConfig.from_settings(settings) if settings.slack_bot_token else None
        if slack is not None:
            slack.check()
        telegram = TelegramConfig.from_settings(settings) if settings.telegram_bot_token else None
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if slack is None and telegram is None:
        raise ConfigurationError(
            "no chat platform is configured: set SLACK_BOT_TOKEN and/or TELEGRAM_BOT_TOKEN"
        )
    return Platforms(slack, telegram)


def platform_services(
    enabled: Platforms, runtime: Runtime, dispatcher: Dispatcher
) -> list[WebService]:
    services: list[WebService] = []
    if enabled.slack is not None:
        slack = SlackAdapter(dispatcher, enabled.slack)
        slack.app.use(_slack_request_context)
        services.append(slack)
    if enabled.telegram is not None:
        services.append(TelegramAdapter(dispatcher, enabled.telegram, runtime.engine))
    return services


async def serve(settings: Settings, host: str, port: int) -> int:
    """Run until SIGTERM / Ctrl-C; 2 on bad configuration."""
    try:
        enabled = platforms(settings)
    except ConfigurationError as exc:
        print(f"erm-bot: bad configuration: {exc}", file=sys.stderr)
        return 2
    async with open_runtime(settings) as runtime:
        dispatcher = runtime.dispatcher()
        services = platform_services(enabled, runtime, dispatcher)
        names = ", ".join(type(s).__name__.removesuffix("Adapter") for s in services)
        services.append(Housekeeping(dispatcher.core))
        # After the platforms: their notifiers are registered when the first sweep runs.
        services.append(ApprovalSweeper(dispatcher.core, settings.erm_bot_approval_sweep_seconds))
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


async def _slack_request_context(next: Callable[[], Awaitable[None]]) -> None:
    """bolt middleware: a request id for Socket Mode requests (HTTP ones have one already)."""
    bind_request_once("slack")
    await next()
