"""``erm-bot doctor`` for Telegram: the bot token (``getMe``) and the webhook Telegram holds
(``getWebhookInfo``), compared with ``TELEGRAM_WEBHOOK_URL``; nothing is set or removed."""

from __future__ import annotations

import asyncio
import contextlib

from telegram import Bot
from telegram.error import InvalidToken, TelegramError
from telegram.request import HTTPXRequest

from adapters.findings import CHECK_TIMEOUT, Status, shown_url
from adapters.logs import REDACTOR
from adapters.platform import Report
from adapters.telegram.config import TelegramConfig


async def check(config: TelegramConfig, report: Report) -> None:
    # Our own request objects: PTB closes them only after a successful getMe.
    requests = (HTTPXRequest(), HTTPXRequest())
    bot = Bot(
        config.bot_token,
        base_url=config.api_url,
        request=requests[0],
        get_updates_request=requests[1],
    )
    try:
        await _check_bot(bot, config.webhook_url, report)
    finally:
        for closing in (bot.shutdown(), *(r.shutdown() for r in requests)):
            with contextlib.suppress(Exception):
                await closing


async def _check_bot(bot: Bot, webhook_url: str | None, report: Report) -> None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await bot.initialize()  # getMe
    except InvalidToken:
        report(
            Status.FAIL,
            "telegram getMe",
            "Telegram refused TELEGRAM_BOT_TOKEN",
            "copy the token from @BotFather (/mybots -> API Token)",
        )
        return
    except (TelegramError, TimeoutError) as exc:
        reason = exc.message if isinstance(exc, TelegramError) else "timed out"
        report(
            Status.FAIL,
            "telegram getMe",
            f"no usable answer ({REDACTOR.redact(reason)})",
            "check TELEGRAM_API_URL and that this host can reach Telegram",
        )
        return
    report(Status.OK, "telegram getMe", f"bot @{bot.username}")
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            info = await bot.get_webhook_info()
    except (TelegramError, TimeoutError) as exc:
        reason = exc.message if isinstance(exc, TelegramError) else "timed out"
        report(
            Status.FAIL,
            "telegram webhook",
            f"getWebhookInfo failed ({REDACTOR.redact(reason)})",
            "check that this host can reach Telegram",
        )
        return
    _check_webhook(
        report,
        webhook_url,
        info.url,
        info.pending_update_count,
        info.last_error_message,
        info.last_error_date,
    )


def _check_webhook(
    report: Report,
    wanted: str | None,
    current: str,
    pending: int,
    last_error: str | None,
    last_error_at: object,
) -> None:
    check = "telegram webhook"
    if not wanted:
        if current:
            report(
                Status.WARN,
                check,
                f"a webhook is set ({shown_url(current)}) but the bot is configured for long "
                "polling",
                "`erm-bot run` removes it when polling starts; set TELEGRAM_WEBHOOK_URL "
                "to keep using it",
            )
        else:
            report(Status.OK, check, f"none: long polling ({pending} update(s) waiting)")
        return
    if current != wanted:
        report(
            Status.WARN,
            check,
            f"Telegram has {shown_url(current) if current else 'no webhook'}, not "
            f"TELEGRAM_WEBHOOK_URL",
            "`erm-bot run` sets it when it starts",
        )
        return
    if last_error:
        report(
            Status.FAIL,
            check,
            f"Telegram's last delivery failed at {last_error_at}: {last_error}",
            "make TELEGRAM_WEBHOOK_URL reachable from the internet over HTTPS (port 443, "
            "80, 88 or 8443) and routed to /telegram/webhook of a running bot",
        )
        return
    report(Status.OK, check, f"set to {shown_url(current)} ({pending} update(s) waiting)")
