"""The Telegram baseline: a bare python-telegram-bot ``Application`` polling the fake Bot API.

``python -m bench.baseline_telegram`` (configured by ``TELEGRAM_BOT_TOKEN``, ``TELEGRAM_API_URL``
and the ``BENCH_*`` variables of :mod:`bench.bare_erm`). ``concurrent_updates(True)``: every
update runs at once, with no order kept within a chat (PTB's default, one update at a time, gave
18 updates/s at 50 ms of ERM latency). Each ``/history`` or ``/code`` makes its one ERM call with a
plain httpx client and replies with ``sendMessage``.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes

from bench.bare_erm import BareErm


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    erm = BareErm.from_environment()

    async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.text is None:
            return
        word, _, rest = message.text.partition(" ")
        text = await erm.answer(word.lstrip("/").split("@")[0], rest)
        await message.reply_text(text)

    async def post_init(_application: Application) -> None:  # type: ignore[type-arg]
        await erm.sign_in()  # once, at start

    async def post_shutdown(_application: Application) -> None:  # type: ignore[type-arg]
        await erm.aclose()

    application = (
        Application.builder()
        .token(os.environ["TELEGRAM_BOT_TOKEN"])
        .base_url(os.environ["TELEGRAM_API_URL"])
        .concurrent_updates(True)
        .post_init(post_init)
        .post_shutdown(post_shutdown)
        .build()
    )
    application.add_handler(CommandHandler(["history", "code"], answer))
    application.run_polling(
        allowed_updates=[Update.MESSAGE], timeout=timedelta(seconds=10), drop_pending_updates=True
    )


if __name__ == "__main__":
    main()
