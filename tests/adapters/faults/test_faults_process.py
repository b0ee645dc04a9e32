"""``erm-bot run`` killed with SIGKILL while a code command is in flight, then started again.

The moment is chosen so the worst case is tested: ERM has already made the code and the bot is
waiting for its answer (the sandbox holds it) when the process dies. Nothing of the command was
recorded as done. After the restart the same request arriving again (a Slack retry, a user's
client sending it again: same ``trigger_id``) must not run again, and the user must be able to see
what happened. Runs on SQLite and on PostgreSQL (a database of its own: a process is configured by
URL alone).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fault_rig import (
    SlackClient,
    free_port,
    settings_of,
    shown,
    start_bot,
    stop_bot,
    wait_until,
)
from fault_world import ITEM, World, bot_world

from adapters.runtime import open_runtime
from bot.audit import AuditLog


@pytest.fixture
async def world(
    process_database: str, tmp_path: Path, secret_keys: list[str]
) -> AsyncIterator[World]:
    async with bot_world(process_database, tmp_path, secret_keys) as world:
        yield world


async def test_a_code_in_flight_when_the_bot_is_killed_is_not_run_again_after_restart(
    world: World,
) -> None:
    before = world.code_events()
    world.hang_next_mutation()

    port = free_port()
    bot = await start_bot(world.env, port, world.cwd, log=world.log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
            sent = await SlackClient(world.slack, http).command("/code", f"days {ITEM} 7")
        assert sent.response.status_code == 200
        await wait_until(lambda: world.code_events() == before + 1, 20.0, "ERM makes the code")
    finally:
        await stop_bot(bot)  # SIGKILL: no shutdown, no cleanup, nothing finished
    assert bot.returncode == -9
    code = world.newest_code()

    port = free_port()
    bot = await start_bot(world.env, port, world.cwd, log=world.log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:
            slack = SlackClient(world.slack, http)
            # The same request again (same trigger_id), as a retry or a resubmitting client sends.
            again = await slack.post_form(
                {**sent.fields, "response_url": world.slack.response_url()}
            )
            again_text = shown(await slack.answer(again))
            history = await slack.ask("/history", f"{ITEM} 1")
    finally:
        await stop_bot(bot)

    assert world.code_events() == before + 1
    assert "Still working on this request, or it was interrupted" in again_text
    assert "/history" in again_text
    assert code not in again_text
    assert code in history  # what the user is told to look at shows the code ERM made
    async with open_runtime(settings_of(world.env)) as runtime:
        rows = await AuditLog(runtime.engine).recent(limit=5)
    assert [(r.command, r.outcome) for r in reversed(rows)] == [
        ("/code", "busy"),
        ("history", "ok"),
    ]
