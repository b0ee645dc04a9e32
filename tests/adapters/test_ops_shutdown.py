"""``erm-bot run`` and SIGTERM: commands in flight are finished, the polling lock is released.

A real process each time (see ``ops_rig``); ERM answers slowly (the sandbox's latency fault) so
that the signal arrives while a command is still waiting for ERM.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from ops_rig import AGENT, answers, deployment, postgres_database, slack_command
from sqlalchemy import text

from adapters.telegram.lock import lock_key
from erm.db import create_engine
from erm.sandbox.seed import OPEN_ACP1_OEM_ID

ERM_LATENCY_MS = 1500.0


async def test_sigterm_lets_the_slack_command_in_flight_finish(tmp_path: Path) -> None:
    async with deployment(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}") as deployed:
        bot = await deployed.start("a", TELEGRAM_BOT_TOKEN="")
        await bot.wait_healthy()
        deployed.erm.faults.latency_ms = ERM_LATENCY_MS

        url = await slack_command(bot.url, deployed.slack, "/code", f"days {OPEN_ACP1_OEM_ID} 7")
        await asyncio.sleep(0.5)  # acknowledged; the command now waits for ERM
        assert answers(deployed.slack, url) == 0
        signalled = time.monotonic()
        status = await bot.terminate()
        stopped = time.monotonic() - signalled

    assert status == 0, bot.log[-3000:]
    assert answers(deployed.slack, url) == 1
    [answer] = deployed.slack.calls_to("response")
    assert "7-day code" in answer.text
    assert deployed.code_events(OPEN_ACP1_OEM_ID) > 0
    print(f"\nSIGTERM to exit with one command in flight: {stopped:.2f} s")


async def test_sigterm_answers_the_telegram_update_in_flight_and_releases_the_polling_lock(
    tmp_path: Path,
) -> None:
    async with (
        postgres_database() as database_url,
        deployment(tmp_path, database_url) as deployed,
    ):
        telegram = deployed.telegram
        bot = await deployed.start("a", SLACK_BOT_TOKEN="")
        await bot.wait_healthy()
        await telegram.wait_until(
            lambda: any(c.via == bot.via for c in telegram.calls_to("getUpdates")),
            within=15,
            what="polling",
        )
        deployed.erm.faults.latency_ms = ERM_LATENCY_MS
        before = len(telegram.messages)
        telegram.message(AGENT, f"/history {OPEN_ACP1_OEM_ID} 2")
        await asyncio.sleep(1.0)  # fetched at once by the long poll; now waiting for ERM
        assert len(telegram.messages) == before
        status = await bot.terminate()

        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                held = await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                        "WHERE d.datname = current_database() AND l.locktype = 'advisory' "
                        "AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = :key"
                    ),
                    {"key": lock_key(f"telegram-polling:{telegram.bot_id}")},
                )
        finally:
            await engine.dispose()

    assert status == 0, bot.log[-3000:]
    replies = telegram.messages[before:]
    assert len(replies) == 1
    assert replies[0].chat_id == AGENT.id
    assert OPEN_ACP1_OEM_ID in replies[0].plain
    assert held == 0
    assert telegram.pending == []  # the update was confirmed: no other process gets it again
