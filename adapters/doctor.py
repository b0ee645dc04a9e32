"""``erm-bot doctor``: checks a deployment end to end and says what to fix, one line per check.

Checked, in order: the configuration (platforms, encryption keys), the database (reachable,
migrated), the stored credentials (each decrypts with ``ERM_BOT_SECRET_KEYS``), ERM (reachable, and
per distributor a fresh sign-in and the contract check: see :mod:`adapters.doctor_erm`), then each
chat platform's own checks (``Platform.doctor``: Slack's ``auth.test``, Telegram's ``getMe`` ...).
``--erm`` leaves the chat platforms out. Nothing is changed: no migration, no
stored token, no webhook set, no code generated. The exit status is 1 when any check fails, else 0;
warnings do not fail.

No line carries a secret: details are built from what the services answered, and every line goes
through the log redactor as well.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import httpx
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.doctor_erm import ReadOnlyVault, erm_checks
from adapters.findings import CHECK_TIMEOUT, Finding, Status, shown_url
from adapters.logs import REDACTOR, settings_secrets
from adapters.platform import ConfigurationError, Enabled, NoPlatformError
from adapters.platforms import PLATFORMS
from adapters.runtime import secret_box
from adapters.serve import platforms
from adapters.settings import Settings
from adapters.web import Schema, schema_state
from erm.db import create_engine
from erm.errors import VaultError
from erm.secret_box import SecretBox


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
            await self.check_chat(enabled)
        problems = sum(f.status is Status.FAIL for f in self.findings)
        warnings = sum(f.status is Status.WARN for f in self.findings)
        summary = (f"{problems} problem(s) to fix" if problems else "every check passed") + (
            f", {warnings} warning(s)" if warnings else ""
        )
        print(f"doctor: {summary}", file=self.out, flush=True)
        return 1 if self.failed else 0

    # -- configuration ---------------------------------------------------------------------------

    def check_platforms(self) -> list[Enabled[Any]] | None:
        try:
            enabled = platforms(self.settings)
        except NoPlatformError as exc:
            # A console-only setup (an operator trying the bot, the demo) is not broken: only
            # `erm-bot run` needs a chat platform, and it refuses to start without one.
            self.report(
                Status.WARN,
                "configuration",
                f"{exc}; until then only `erm-bot console` can use the bot",
                "set one to serve a chat app with `erm-bot run`, see .env.example",
            )
            return []
        except ConfigurationError as exc:
            self.report(
                Status.FAIL, "configuration", str(exc), "fix the setting named, see .env.example"
            )
            return None
        self.report(Status.OK, "configuration", ", ".join(e.describe() for e in enabled))
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

    # -- chat platforms -------------------------------------------------------------------------

    async def check_chat(self, enabled: list[Enabled[Any]]) -> None:
        """Each platform's own checks; one a setting could turn on but does not is skipped."""
        configured = {e.name: e for e in enabled}
        for platform in PLATFORMS:
            found = configured.get(platform.name)
            if found is not None:
                await found.doctor(self.report)
            elif platform.enabled_by:
                self.report(
                    Status.SKIP,
                    platform.name,
                    f"not configured ({platform.enabled_by} is empty)",
                )

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
