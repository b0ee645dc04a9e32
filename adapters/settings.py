"""Settings: the only reader of the environment (and of an optional ``.env`` file)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core import Limits
from bot.permissions import parse_admins
from erm.db import default_database_url
from erm.service import ServiceConfig
from erm.transport import PRODUCTION_URL, ClientConfig


class Settings(BaseSettings):
    """Typed configuration; every field is documented in ``.env.example``."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, env_ignore_empty=True
    )

    erm_api_url: str = PRODUCTION_URL
    erm_connect_timeout: float = Field(5.0, gt=0)
    erm_read_timeout: float = Field(15.0, gt=0)
    erm_total_timeout: float = Field(20.0, gt=0)
    erm_query_attempts: int = Field(3, ge=1, le=10)
    # How long a code request whose answer was lost is watched for in ERM's history before
    # "nothing was issued" may be said (the item stays locked meanwhile).
    erm_reconcile_window: float = Field(120.0, ge=5, le=3600)
    erm_token_refresh_margin: float = Field(120.0, ge=0)
    erm_item_cache_ttl: float = Field(600.0, ge=0)

    erm_bot_database_url: str | None = None
    erm_bot_secret_keys: SecretStr | None = None
    # Bootstrap admins of every distributor: platform:user, comma-separated.
    erm_bot_admins: str = ""

    erm_bot_duplicate_window_minutes: int = Field(10, ge=0, le=24 * 60)
    erm_bot_codes_per_user_hour: int = Field(30, ge=1)
    erm_bot_codes_per_distributor_hour: int = Field(500, ge=1)
    erm_bot_lookups_per_user_minute: int = Field(60, ge=1)
    # A code command sent longer ago than this (Telegram outbox) asks for confirmation first.
    erm_bot_stale_minutes: int = Field(10, ge=1, le=24 * 60)
    erm_bot_invite_hours: int = Field(24, ge=1, le=24 * 30)
    # A code request waiting for approval expires after this (a reminder goes out at half time).
    erm_bot_approval_hours: int = Field(24, ge=1, le=24 * 14)
    # How often `erm-bot run` expires, reminds and re-posts approval requests.
    erm_bot_approval_sweep_seconds: float = Field(60.0, ge=1, le=3600)

    # Logs: json (one object a line, for collectors), console (for people), auto (console on a tty).
    erm_bot_log_format: Literal["auto", "json", "console"] = "auto"
    erm_bot_log_level: str = "INFO"
    # /readyz: seconds each check (database, ERM) may take before it counts as failed.
    erm_bot_ready_timeout: float = Field(3.0, gt=0, le=60)
    # Commands one process works on at once; more wait their turn (after their ack).
    erm_bot_concurrency: int = Field(16, ge=1, le=1024)
    # ...of them at most this many from one person; the rest wait their turn.
    erm_bot_per_person: int = Field(3, ge=1, le=1024)
    # People without a role: requests an hour each, and audit rows an hour for all of them.
    erm_bot_stranger_requests_per_hour: int = Field(20, ge=1)
    erm_bot_stranger_audits_per_hour: int = Field(100, ge=1)
    # /start and /link attempts with a code, per identity an hour: guessing codes stays slow.
    erm_bot_code_attempts_per_user_hour: int = Field(5, ge=1, le=100)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None  # set for Socket Mode
    slack_api_url: str = "https://slack.com/api/"
    # Workspaces (T...) or Enterprise Grid orgs (E...) served, comma-separated; empty: only the
    # bot token's own workspace (auth.test). Requests from any other are refused.
    slack_team_ids: str = ""

    telegram_bot_token: SecretStr | None = None
    telegram_webhook_url: str | None = None  # unset: long polling
    telegram_webhook_secret: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"

    # WhatsApp Business Cloud API: the four secrets/ids all set (WhatsApp on) or none (off).
    whatsapp_token: SecretStr | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    whatsapp_api_url: str = "https://graph.facebook.com"  # Graph API base: a proxy or a fake
    # The business number in international form (digits), for wa.me invite links.
    whatsapp_business_number: str | None = None
    # Approved templates for messages the bot starts outside the 24-hour window.
    whatsapp_template_code_ready: str | None = None
    whatsapp_template_decision: str | None = None
    whatsapp_template_language: str = "en"

    @field_validator(
        "erm_api_url",
        "slack_api_url",
        "telegram_api_url",
        "telegram_webhook_url",
        "whatsapp_api_url",
    )
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                f"{(info.field_name or '').upper()} must start with http:// or https://"
            )
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram accepts 1-256 characters from A-Z, a-z, 0-9, _ and -.
        if value is not None and not re.fullmatch(
            r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()
        ):
            raise ValueError(
                "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
            )
        return value

    @field_validator("erm_bot_log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("ERM_BOT_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @property
    def log_level(self) -> int:
        return logging.getLevelNamesMapping()[self.erm_bot_log_level]

    @field_validator("erm_bot_admins")
    @classmethod
    def _admins(cls, value: str) -> str:
        parse_admins(value)  # raises with a clear message on a malformed entry
        return value

    @property
    def admins(self) -> frozenset[str]:
        return parse_admins(self.erm_bot_admins)

    def limits(self) -> Limits:
        return Limits(
            duplicate_window_minutes=self.erm_bot_duplicate_window_minutes,
            codes_per_user_hour=self.erm_bot_codes_per_user_hour,
            codes_per_distributor_hour=self.erm_bot_codes_per_distributor_hour,
            lookups_per_user_minute=self.erm_bot_lookups_per_user_minute,
            stale_minutes=self.erm_bot_stale_minutes,
            invite_hours=self.erm_bot_invite_hours,
            approval_hours=self.erm_bot_approval_hours,
            concurrency=self.erm_bot_concurrency,
            per_person=self.erm_bot_per_person,
            stranger_requests_per_hour=self.erm_bot_stranger_requests_per_hour,
            stranger_audits_per_hour=self.erm_bot_stranger_audits_per_hour,
            invite_attempts_per_user_hour=self.erm_bot_code_attempts_per_user_hour,
        )

    @property
    def database_url(self) -> str:
        return self.erm_bot_database_url or default_database_url(Path.cwd())

    @property
    def secret_keys(self) -> list[str]:
        """The encryption keys, newest first; empty when none are configured."""
        if self.erm_bot_secret_keys is None:
            return []
        raw = self.erm_bot_secret_keys.get_secret_value()
        return [key.strip() for key in raw.split(",") if key.strip()]

    def erm_client_config(self) -> ClientConfig:
        return ClientConfig(
            url=self.erm_api_url,
            connect_timeout=self.erm_connect_timeout,
            read_timeout=self.erm_read_timeout,
            total_timeout=self.erm_total_timeout,
            query_attempts=self.erm_query_attempts,
        )

    def erm_service_config(self) -> ServiceConfig:
        return ServiceConfig(
            refresh_margin=self.erm_token_refresh_margin,
            item_cache_ttl=self.erm_item_cache_ttl,
            reconcile_window=self.erm_reconcile_window,
        )
