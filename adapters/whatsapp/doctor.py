"""``erm-bot doctor`` for WhatsApp: the token and phone number id, checked with
``GET /<version>/<phone number id>`` (the number's name and display number); nothing changes."""

from __future__ import annotations

import asyncio

from pywa_async.errors import WhatsAppError

from adapters.findings import CHECK_TIMEOUT, Status, shown_url
from adapters.logs import REDACTOR
from adapters.platform import Report
from adapters.whatsapp.app import graph_client, number_digits
from adapters.whatsapp.config import WhatsAppConfig

CHECK = "whatsapp phone number"
TOKEN_REFUSED = 190


async def check(config: WhatsAppConfig, report: Report) -> None:
    client, session = graph_client(config)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            info = await client.api.get_business_phone_number(
                config.phone_number_id, fields=("display_phone_number", "verified_name")
            )
    except WhatsAppError as exc:
        if exc.code == TOKEN_REFUSED:
            detail, fix = (
                "WhatsApp refused WHATSAPP_TOKEN (expired or revoked)",
                "make a permanent token: Business Settings > System users > Generate token, "
                "with whatsapp_business_messaging and whatsapp_business_management",
            )
        else:
            detail, fix = (
                f"Graph API error {exc.code}: {REDACTOR.redact(exc.message[:200])}",
                "check WHATSAPP_PHONE_NUMBER_ID (WhatsApp > API Setup in the Meta app) and that "
                "the token's system user has the WhatsApp account assigned",
            )
        report(Status.FAIL, CHECK, detail, fix)
        return
    except Exception as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        report(
            Status.FAIL,
            CHECK,
            f"no answer from {shown_url(config.api_url)} ({reason})",
            "check WHATSAPP_API_URL and that this host can reach graph.facebook.com",
        )
        return
    finally:
        await session.aclose()
    display = info.get("display_phone_number", "?")
    report(Status.OK, CHECK, f"{info.get('verified_name', '?')} ({display})")
    learned = number_digits(display)
    if config.business_number and learned and learned != config.business_number:
        report(
            Status.WARN,
            "whatsapp business number",
            f"WHATSAPP_BUSINESS_NUMBER is {config.business_number}, the phone number id is "
            f"{display}",
            "set WHATSAPP_BUSINESS_NUMBER to the number agents write to (invite links use it)",
        )
