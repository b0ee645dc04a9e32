"""``erm-bot doctor``: checks a deployment end to end and says what to fix, one line per check.

Checked, in order: the configuration (platforms, encryption keys), the database (reachable,
migrated), the stored credentials (each decrypts with ``ERM_BOT_SECRET_KEYS``), ERM (reachable, and
per distributor a fresh sign-in and the contract check: see :mod:`adapters.doctor_erm`), Slack
(``auth.test``, and ``apps.connections.open`` in Socket Mode), Telegram (``getMe`` and
``getWebhookInfo``). ``--erm`` leaves the chat platforms out. Nothing is changed: no migration, no
stored token, no webhook set, no code generated. The exit status is 1 when any check fails, else 0;
warnings do not fail.

No line carries a secret: details are built from what the services answered, and every line goes
through the log redactor as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import httpx
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.doctor_erm import ReadOnlyVault, erm_checks
from adapters.findings import Finding, Status, shown_url
from adapters.logs import REDACTOR, settings_secrets
from adapters.runtime import secret_box
from adapters.serve import ConfigurationError, Platforms, platforms
from adapters.settings import Settings
from adapters.web import Schema, schema_state
from erm.db import create_engine
from erm.errors import VaultError
from erm.vault import SecretBox

if TYPE_CHECKING:
    from telegram import Bot

CHECK_TIMEOUT = 10.0
"""Seconds one check may take (ERM has its own, in :mod:`adapters.doctor_erm`)."""


class Doctor:
    """Runs the checks; :attr:`findings` holds what each found, in order."""

    def __init__(
        self,
        settings: Settings,
        *,
        out: TextIO | None = None,
        erm_transport: httpx.AsyncBaseTransport | None = None,
        erm_only: bool = False,
    ) -> None:
        self.settings = settings
        self.out = out if out is not None else sys.stdout
        self.findings: list[Finding] = []
        self.erm_only = erm_only
        self._erm_transport = erm_transport
        REDACTOR.add(*settings_secrets(settings))

    @property
    def failed(self) -> bool:
        return any(f.status is Status.FAIL for f in self.findings)

    def report(self, status: Status, check: str, detail: str, fix: str = "") -> Finding:
        return self.add(Finding(status, check, detail, fix))

    def add(self, finding: Finding) -> Finding:
        self.findings.append(finding)
        print(finding.line(), file=self.out, flush=True)
        return finding

    async def run(self) -> int:
        enabled = None if self.erm_only else self.check_platforms()
        box = self.check_keys()
        self.report(Status.OK, "erm url", shown_url(self.settings.erm_api_url))
        engine = await self.check_database()
        try:
            vault = ReadOnlyVault(engine, box) if engine is not None and box is not None else None
            names = await self.check_credentials(vault) if vault is not None else []
            async for finding in erm_checks(
                self.settings, vault, names, transport=self._erm_transport
            ):
                self.add(finding)
        finally:
            if engine is not None:
                await engine.dispose()
        if enabled is not None:
            await self.check_slack(enabled)
            await self.check_telegram(enabled)
        problems = sum(f.status is Status.FAIL for f in self.findings)
        warnings = sum(f.status is Status.WARN for f in self.findings)
        summary = (f"{problems} problem(s) to fix" if problems else "every check passed") + (
            f", {warnings} warning(s)" if warnings else ""
        )
        print(f"doctor: {summary}", file=self.out, flush=True)
        return 1 if self.failed else 0

    # -- configuration ---------------------------------------------------------------------------

    def check_platforms(self) -> Platforms | None:
        try:
            enabled = platforms(self.settings)
        except ConfigurationError as exc:
            self.report(
                Status.FAIL, "configuration", str(exc), "fix the setting named, see .env.example"
            )
            return None
        parts = []
        if enabled.slack is not None:
            parts.append("Slack over " + ("Socket Mode" if enabled.slack.socket_mode else "HTTP"))
        if enabled.telegram is not None:
            parts.append(
                "Telegram by " + ("long polling" if enabled.telegram.polling else "webhook")
            )
        self.report(Status.OK, "configuration", ", ".join(parts))
        return enabled

    def check_keys(self) -> SecretBox | None:
        try:
            box = secret_box(self.settings)
        except VaultError as exc:
            self.report(Status.FAIL, "encryption keys", str(exc))
            return None
        count = len(self.settings.secret_keys)
        self.report(Status.OK, "encryption keys", f"{count} key(s) in ERM_BOT_SECRET_KEYS")
        return box

    # -- database -------------------------------------------------------------------------------

    async def check_database(self) -> AsyncEngine | None:
        url = self.settings.database_url
        try:
            parsed = make_url(url)
        except Exception:
            self.report(
                Status.FAIL,
                "database",
                "ERM_BOT_DATABASE_URL is not a database URL",
                "e.g. postgresql+asyncpg://USER:PASSWORD@HOST:5432/DB or sqlite:///./erm-bot.db",
            )
            return None
        backend = parsed.get_backend_name()
        if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
            if not await asyncio.to_thread(path.exists):
                self.report(
                    Status.FAIL,
                    "database",
                    f"no SQLite file at {path}",
                    "run `erm-bot db upgrade` (or `erm-bot run`, which migrates on start) "
                    "in the directory the bot runs in, or set ERM_BOT_DATABASE_URL",
                )
                return None
        engine = create_engine(url)
        where = f"{backend} at {parsed.host}" if parsed.host else f"{backend} {parsed.database}"

        async def select_one() -> str:
            async with engine.connect() as connection:
                await connection.scalar(text("SELECT 1"))
            return f"{where} answers"

        ok = await self._probe(
            "database",
            select_one,
            "check ERM_BOT_DATABASE_URL (host, port, user, password, database name) and that "
            "the server runs and lets this host connect",
        )
        if not ok:
            await engine.dispose()
            return None

        async def migrated() -> str:
            state = await schema_state(engine)
            if state is Schema.BEHIND:
                raise _Problem("the schema lacks migrations of this version")
            if state is Schema.NEWER:
                return "schema is newer than this version (migrated by a newer erm-bot)"
            return "schema is at the newest migration"

        if not await self._probe(
            "migrations",
            migrated,
            "run `erm-bot db upgrade` (`erm-bot run` also migrates on start)",
        ):
            await engine.dispose()
            return None
        return engine

    # -- stored credentials ---------------------------------------------------------------------

    async def check_credentials(self, vault: ReadOnlyVault) -> list[str]:
        """Every distributor whose secrets decrypt (those are signed in next)."""
        try:
            report = await vault.check()
        except Exception as exc:
            self.report(Status.FAIL, "stored credentials", f"cannot be read ({type(exc).__name__})")
            return []
        if not report:
            self.report(
                Status.WARN,
                "stored credentials",
                "no distributor yet",
                "add one: `erm-bot distributor add NAME --email EMAIL` (asks for the password)",
            )
            return []
        good: list[str] = []
        for name, problem in report:
            if problem is None:
                good.append(name)
                continue
            self.report(
                Status.FAIL,
                f"stored credentials of {name}",
                problem,
                "put the key they were encrypted with back in ERM_BOT_SECRET_KEYS (after the "
                f"newest), or store them again: `erm-bot distributor add {name} --email EMAIL "
                "--replace`",
            )
        if good:
            self.report(
                Status.OK,
                "stored credentials",
                f"{len(good)} of {len(report)} distributor(s) decrypt with ERM_BOT_SECRET_KEYS",
            )
        return good

    # -- Slack ----------------------------------------------------------------------------------

    async def check_slack(self, enabled: Platforms) -> None:
        config = enabled.slack
        if config is None:
            self.report(Status.SKIP, "slack", "not configured (SLACK_BOT_TOKEN is empty)")
            return
        from slack_sdk.errors import SlackApiError  # the chat libraries load only when used
        from slack_sdk.web.async_client import AsyncWebClient

        base = config.api_url if config.api_url.endswith("/") else config.api_url + "/"
        client = AsyncWebClient(token=config.bot_token, base_url=base, timeout=int(CHECK_TIMEOUT))
        try:
            auth = await client.auth_test()
        except SlackApiError as exc:
            error = _slack_error(exc)
            self.report(
                Status.FAIL,
                "slack auth.test",
                f"Slack refused SLACK_BOT_TOKEN ({error})",
                "copy the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions "
                "page; reinstall the app to the workspace if it was revoked",
            )
            return
        except Exception as exc:
            self.report(
                Status.FAIL,
                "slack auth.test",
                f"no answer from {shown_url(base)} ({type(exc).__name__})",
                "check SLACK_API_URL and that this host can reach Slack",
            )
            return
        self.report(
            Status.OK,
            "slack auth.test",
            f"bot {auth.get('user') or auth.get('user_id')} in team "
            f"{auth.get('team') or auth.get('team_id')}",
        )
        if config.app_token is None:
            return
        socket = AsyncWebClient(token=config.app_token, base_url=base, timeout=int(CHECK_TIMEOUT))
        try:
            await socket.apps_connections_open(app_token=config.app_token)
        except SlackApiError as exc:
            self.report(
                Status.FAIL,
                "slack socket mode",
                f"Slack refused SLACK_APP_TOKEN ({_slack_error(exc)})",
                "make an app-level token with the connections:write scope (Basic Information) "
                "and enable Socket Mode",
            )
            return
        except Exception as exc:
            self.report(
                Status.FAIL,
                "slack socket mode",
                f"no answer ({type(exc).__name__})",
                "check that this host can reach Slack",
            )
            return
        self.report(Status.OK, "slack socket mode", "SLACK_APP_TOKEN may open connections")

    # -- Telegram -------------------------------------------------------------------------------

    async def check_telegram(self, enabled: Platforms) -> None:
        config = enabled.telegram
        if config is None:
            self.report(Status.SKIP, "telegram", "not configured (TELEGRAM_BOT_TOKEN is empty)")
            return
        from telegram import Bot  # the chat libraries load only when used
        from telegram.request import HTTPXRequest

        # Our own request objects: PTB closes them only after a successful getMe.
        requests = (HTTPXRequest(), HTTPXRequest())
        bot = Bot(
            config.bot_token,
            base_url=config.api_url,
            request=requests[0],
            get_updates_request=requests[1],
        )
        try:
            await self._telegram(bot, config.webhook_url)
        finally:
            for closing in (bot.shutdown(), *(r.shutdown() for r in requests)):
                with contextlib.suppress(Exception):
                    await closing

    async def _telegram(self, bot: Bot, webhook_url: str | None) -> None:
        from telegram.error import InvalidToken, TelegramError

        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await bot.initialize()  # getMe
        except InvalidToken:
            self.report(
                Status.FAIL,
                "telegram getMe",
                "Telegram refused TELEGRAM_BOT_TOKEN",
                "copy the token from @BotFather (/mybots -> API Token)",
            )
            return
        except (TelegramError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, TelegramError) else "timed out"
            self.report(
                Status.FAIL,
                "telegram getMe",
                f"no usable answer ({REDACTOR.redact(reason)})",
                "check TELEGRAM_API_URL and that this host can reach Telegram",
            )
            return
        self.report(Status.OK, "telegram getMe", f"bot @{bot.username}")
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                info = await bot.get_webhook_info()
        except (TelegramError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, TelegramError) else "timed out"
            self.report(
                Status.FAIL,
                "telegram webhook",
                f"getWebhookInfo failed ({REDACTOR.redact(reason)})",
                "check that this host can reach Telegram",
            )
            return
        self._webhook(
            webhook_url,
            info.url,
            info.pending_update_count,
            info.last_error_message,
            info.last_error_date,
        )

    def _webhook(
        self,
        wanted: str | None,
        current: str,
        pending: int,
        last_error: str | None,
        last_error_at: object,
    ) -> None:
        check = "telegram webhook"
        if not wanted:
            if current:
                self.report(
                    Status.WARN,
                    check,
                    f"a webhook is set ({shown_url(current)}) but the bot is configured for long "
                    "polling",
                    "`erm-bot run` removes it when polling starts; set TELEGRAM_WEBHOOK_URL "
                    "to keep using it",
                )
            else:
                self.report(Status.OK, check, f"none: long polling ({pending} update(s) waiting)")
            return
        if current != wanted:
            self.report(
                Status.WARN,
                check,
                f"Telegram has {shown_url(current) if current else 'no webhook'}, not "
                f"TELEGRAM_WEBHOOK_URL",
                "`erm-bot run` sets it when it starts",
            )
            return
        if last_error:
            self.report(
                Status.FAIL,
                check,
                f"Telegram's last delivery failed at {last_error_at}: {last_error}",
                "make TELEGRAM_WEBHOOK_URL reachable from the internet over HTTPS (port 443, "
                "80, 88 or 8443) and routed to /telegram/webhook of a running bot",
            )
            return
        self.report(Status.OK, check, f"set to {shown_url(current)} ({pending} update(s) waiting)")

    # -- helpers --------------------------------------------------------------------------------

    async def _probe(self, check: str, probe: Callable[[], Awaitable[str]], fix: str) -> bool:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                detail = await probe()
        except TimeoutError:
            self.report(Status.FAIL, check, f"no answer within {CHECK_TIMEOUT:g} s", fix)
            return False
        except _Problem as exc:
            self.report(Status.FAIL, check, str(exc), fix)
            return False
        except Exception as exc:
            reason = REDACTOR.redact(str(exc).strip().splitlines()[0][:160]) if str(exc) else ""
            self.report(Status.FAIL, check, f"failed: {type(exc).__name__} {reason}".strip(), fix)
            return False
        self.report(Status.OK, check, detail)
        return True


class _Problem(Exception):
    """A check's own verdict (the message is its detail)."""


def _slack_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    data = getattr(response, "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {getattr(response, 'status_code', '?')}"


async def run_doctor(
    settings: Settings,
    *,
    out: TextIO | None = None,
    erm_transport: httpx.AsyncBaseTransport | None = None,
    erm_only: bool = False,
) -> int:
    """Every check (only ERM's with ``erm_only``); the exit status: 1 if any failed."""
    doctor = Doctor(settings, out=out, erm_transport=erm_transport, erm_only=erm_only)
    return await doctor.run()
