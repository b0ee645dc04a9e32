"""What the WhatsApp adapter needs to know, read once from ``Settings``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import SecretStr

from adapters.settings import Settings

NAME = "whatsapp"
DEFAULT_API_URL = "https://graph.facebook.com"
WEBHOOK_PATH = "/whatsapp/webhook"
# The four settings that turn WhatsApp on: all of them or none.
REQUIRED = (
    "WHATSAPP_TOKEN",
    "WHATSAPP_PHONE_NUMBER_ID",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
)
_PHONE_NUMBER_ID = re.compile(r"[0-9]{1,32}")
_BUSINESS_NUMBER = re.compile(r"[1-9][0-9]{5,14}")  # E.164 digits, no "+"


@dataclass(frozen=True, slots=True)
class Templates:
    """Names of approved message templates (WhatsApp Manager) for messages the bot starts
    outside the 24-hour window; None: that kind of message waits for the user's next one."""

    code_ready: str | None = None  # a reply carrying a code (an approved request's code)
    decision: str | None = None  # anything else the bot starts (an approval decided)
    language: str = "en"

    def for_codes(self, has_codes: bool) -> str | None:
        return self.code_ready if has_codes else self.decision


@dataclass(frozen=True, slots=True)
class WhatsAppConfig:
    """The Cloud API credentials, the webhook's secrets and the template names.

    Secrets stay out of ``repr`` (and so out of logs and tracebacks).
    """

    token: str = field(repr=False)
    phone_number_id: str
    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    business_number: str | None = None
    templates: Templates = Templates()
    concurrency: int = 256  # people whose messages are worked on at once

    def __post_init__(self) -> None:
        for name, value in zip(
            REQUIRED,
            (self.token, self.phone_number_id, self.app_secret, self.verify_token),
            strict=True,
        ):
            if not value.strip():
                raise ValueError(f"{name} is empty")
        if not _PHONE_NUMBER_ID.fullmatch(self.phone_number_id):
            raise ValueError(
                "WHATSAPP_PHONE_NUMBER_ID must be the numeric id Meta shows under "
                "WhatsApp > API Setup (not the phone number itself)"
            )
        if self.business_number is not None and not _BUSINESS_NUMBER.fullmatch(
            self.business_number
        ):
            raise ValueError(
                "WHATSAPP_BUSINESS_NUMBER must be the number in international form, digits only "
                "(e.g. 254700123456)"
            )
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> WhatsAppConfig | None:
        """The config from ``WHATSAPP_*`` settings; None when none of the four is set.

        ValueError naming what is missing when only some are: half a WhatsApp setup would fail
        later, far from the typo (a webhook that answers 403 to Meta, or replies that never go).
        """
        values = {
            "WHATSAPP_TOKEN": settings.whatsapp_token,
            "WHATSAPP_PHONE_NUMBER_ID": settings.whatsapp_phone_number_id,
            "WHATSAPP_APP_SECRET": settings.whatsapp_app_secret,
            "WHATSAPP_VERIFY_TOKEN": settings.whatsapp_verify_token,
        }
        missing = [name for name, value in values.items() if value is None]
        if len(missing) == len(values):
            return None
        if missing:
            raise ValueError(
                f"WhatsApp is half configured: set {', '.join(missing)} too "
                f"(or unset {', '.join(n for n in values if n not in missing)})"
            )
        return cls(
            token=_secret(settings.whatsapp_token),
            phone_number_id=(settings.whatsapp_phone_number_id or "").strip(),
            app_secret=_secret(settings.whatsapp_app_secret),
            verify_token=_secret(settings.whatsapp_verify_token),
            api_url=settings.whatsapp_api_url.rstrip("/"),
            business_number=(settings.whatsapp_business_number or "").lstrip("+") or None,
            templates=Templates(
                code_ready=settings.whatsapp_template_code_ready,
                decision=settings.whatsapp_template_decision,
                language=settings.whatsapp_template_language,
            ),
        )


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""
