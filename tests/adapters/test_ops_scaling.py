"""Two ``erm-bot run`` processes on one PostgreSQL database, and one of them killed (SIGKILL).

Slack requests are spread over both, as a load balancer would, which also retries on the other
process when a connection is refused; Telegram is polled by whichever process holds the polling
lock. After the poller is killed the other takes over. Checked: every command is answered exactly
once, every code is generated once in ERM, and the audit shows each request run once.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from ops_rig import AGENT, BotProcess, Deployment, answers, deployment, postgres_database
from ops_rig import slack_command as send_slack
from sqlalchemy import text

from erm.db import create_engine

TEST_BOUND = 60.0
LOOKUP = "/history"


async def balanced(processes: list[BotProcess], turn: int, deployed: Deployment, body: str) -> str:
    """Send one slash command to process ``turn`` of ``processes``, or the next one if it is down.

    A refused connection means the request never reached a process, so sending it elsewhere is
    safe (what a load balancer does); anything else is a failure of the test.
    """
    command, _, rest = body.partition(" ")
    for attempt in range(len(processes)):
        target = processes[(turn + attempt) % len(processes)]
        try:
            return await send_slack(target.url, deployed.slack, command, rest)
        except httpx.ConnectError:
            continue
    raise AssertionError("no process took the request")


def poller(deployed: Deployment, processes: list[BotProcess], since: int = 0) -> BotProcess:
    vias = {c.via for c in deployed.telegram.calls_to("getUpdates")[since:]}
    polling = [p for p in processes if p.via in vias]
    assert len(polling) == 1, vias
    return polling[0]


async def audit_counts(database_url: str) -> Counter[str]:
    """How many times each request key ran (repeats answered from storage are not counted)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT request_key FROM bot_audit_log "
                    "WHERE outcome NOT IN ('duplicate', 'busy')"
                )
            )
            return Counter(row[0] for row in rows)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_two_processes_share_the_work_and_survive_losing_one(tmp_path: Path) -> None:
    async with (
        asyncio.timeout(TEST_BOUND),
        postgres_database() as database_url,
        deployment(tmp_path, database_url) as deployed,
    ):
        telegram = deployed.telegram
        processes = [await deployed.start("a"), await deployed.start("b")]
        await asyncio.gather(*(p.wait_healthy() for p in processes))
        await telegram.wait_until(
            lambda: bool(telegram.calls_to("getUpdates")), within=15, what="a poller"
        )
        await asyncio.sleep(1.5)  # the other process tries for the lock and stays a follower
        first_poller = poller(deployed, processes)
        items = [f"TEST25030000{n:02d}" for n in range(3, 15)]
        codes_before = {item: deployed.code_events(item) for item in items}
        slack_bodies = iter(
            [f"/code days {item} 1" for item in items[:8]] + [f"{LOOKUP} TEST2503000001 1"] * 8
        )
        telegram_texts = iter(
            [f"/code days {item} 1" for item in items[8:]] + [f"{LOOKUP} TEST2503000002 1"] * 4
        )
        turns = itertools.count()
        sent_to_slack: list[str] = []
        sent_to_telegram = 0

        # Round one: both processes up.
        for body in itertools.islice(slack_bodies, 8):
            sent_to_slack.append(await balanced(processes, next(turns), deployed, body))
        for text_ in itertools.islice(telegram_texts, 4):
            telegram.message(AGENT, text_)
            sent_to_telegram += 1
        await deployed.slack.wait_for("response", count=len(sent_to_slack), within=20)
        await telegram.wait_until(
            lambda: len(telegram.sent(AGENT.id)) >= sent_to_telegram, within=20, what="round one"
        )

        # The poller dies without any shutdown; updates keep arriving meanwhile.
        await first_poller.kill()
        killed_at = time.monotonic()
        polls_before = len(telegram.calls_to("getUpdates"))
        for text_ in telegram_texts:
            telegram.message(AGENT, text_)
            sent_to_telegram += 1
        for body in slack_bodies:
            sent_to_slack.append(await balanced(processes, next(turns), deployed, body))
        await telegram.wait_until(
            lambda: len(telegram.sent(AGENT.id)) >= sent_to_telegram, within=20, what="takeover"
        )
        takeover = time.monotonic() - killed_at
        await deployed.slack.wait_for("response", count=len(sent_to_slack), within=20)
        survivor = next(p for p in processes if p is not first_poller)
        new_poller = poller(deployed, processes, polls_before)
        await asyncio.sleep(1.0)  # anything answered twice would show up by now
        ran = await audit_counts(database_url)

    assert new_poller is survivor
    assert [answers(deployed.slack, url) for url in sent_to_slack] == [1] * len(sent_to_slack)
    assert len(telegram.sent(AGENT.id)) == sent_to_telegram
    assert {
        item: deployed.code_events(item) - codes_before[item] for item in items
    } == dict.fromkeys(items, 1)
    assert len(ran) == len(sent_to_slack) + sent_to_telegram
    assert set(ran.values()) == {1}
    print(
        f"\n{len(sent_to_slack)} Slack commands over 2 processes, {sent_to_telegram} Telegram "
        f"messages; polling taken over {takeover:.2f} s after SIGKILL; "
        f"conflicts seen by the fake Telegram: {telegram.conflicts}"
    )
