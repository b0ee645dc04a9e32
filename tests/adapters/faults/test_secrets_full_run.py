"""No secret leaks from a full run: the logs, the database and every message the fakes received.

``erm-bot run`` (a real process, SQLite and PostgreSQL) serves Slack and Telegram through a session
that touches every kind of command, errors, an ERM answer lost after a code (reconciliation), and
ERM revoking its tokens mid-run (a fresh sign-in). It is then stopped with SIGTERM. Searched for:
each distributor password, every access token ERM issued (and each token's signature part alone),
the Slack bot token and signing secret, the Telegram bot token and webhook secret, and the
encryption keys. Searched in: the process's whole output, every row of every table (SQLite: the
database files' raw bytes), and the bodies of every Slack call and the parameters of every
Telegram call (the tokens travel legitimately in Slack's Authorization header and Telegram's URL).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack
from fakes.telegram import FakeTelegram, User
from fault_rig import SlackClient, free_port, settings_of, start_bot, stop_bot
from sqlalchemy import MetaData, select
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.runtime import open_runtime
from bot.roles import Role
from bot.storage.grants import GrantStore
from erm.db import create_engine
from erm.sandbox import ACME, OPEN_ACP1_OEM_ID, SUNBRIGHT, create_app, seed_state, serve
from erm.sandbox.state import SandboxState

ITEM = OPEN_ACP1_OEM_ID
AGENT = User(8101, "Achieng", "achieng_o")


@dataclass
class Session:
    env: dict[str, str]
    sandbox: SandboxState
    slack: FakeSlack
    telegram: FakeTelegram
    cwd: Path
    log: Path
    tokens: list[str] = field(default_factory=list)  # every access token ERM issued


@pytest.fixture
async def session(
    process_database: str, tmp_path: Path, secret_keys: list[str]
) -> AsyncIterator[Session]:
    sandbox = seed_state(0)
    tokens: list[str] = []
    sign_in = sandbox.logins.sign_in_client

    def recording_sign_in(email: str, password: str) -> dict[str, Any]:
        answer = sign_in(email, password)
        tokens.append(str(answer["accessToken"]))
        return answer

    sandbox.logins.sign_in_client = recording_sign_in  # type: ignore[method-assign]
    # A bot id of its own: the polling lock is per bot id, and other test runs share the server.
    bot_id = secrets.randbelow(10**9) + 10**9
    telegram = FakeTelegram(token=f"{bot_id}:AAH-secrets-suite-token", bot_id=bot_id)
    async with serve(create_app(sandbox)) as erm_url, FakeSlack() as slack, telegram as tg:
        env = {
            "ERM_API_URL": erm_url,
            "ERM_BOT_DATABASE_URL": process_database,
            "ERM_BOT_SECRET_KEYS": ",".join(secret_keys),
            "ERM_BOT_ADMINS": "slack:U1",
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_URL": tg.api_url,
        }
        async with open_runtime(settings_of(env)) as runtime:
            for who in (ACME, SUNBRIGHT):
                await runtime.service.add_distributor(who.name, who.email, who.password)
            grants = GrantStore(runtime.engine)
            await grants.grant("telegram", str(AGENT.id), Role.AGENT, ACME.name, "tests")
        yield Session(env, sandbox, slack, tg, tmp_path, tmp_path / "erm-bot.log", tokens)


SLACK_SCRIPT = [
    f"/code days {ITEM} 30 cash 500",
    f"/code days {ITEM} 30 cash 500",  # already issued: shown again
    f"/resend {ITEM}",
    f"/history {ITEM} 5",
    "/fleet --dist acme",
    "/items --dist sunbright",
    f"/account {ITEM} --dist acme",
    "/erm whoami",
    "/erm help",
    "/erm users",
    "/erm audit --dist acme",
    "/erm invite agent acme",
    "/erm grant telegram:8102 viewer acme",
    "/code days NOSUCHITEM 3 --dist acme",
    "/erm nonsense",
]


async def run_session(session: Session, port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15.0) as http:
        slack = SlackClient(session.slack, http)
        for line in SLACK_SCRIPT:
            word, _, rest = line.partition(" ")
            if "--dist" not in rest and word == "/code":
                rest += " --dist acme"
            await slack.ask(word, rest)
        session.sandbox.faults.drop_after_mutation_next = 1  # reconciled from the history
        await slack.ask("/code", f"days {ITEM} 31 --dist acme")
        session.sandbox.revoke_tokens()  # ERM restarted: the bot signs in again
        await slack.ask("/history", f"{ITEM} 2 --dist acme")
    for line in ("/whoami", f"/code days {ITEM} 7", f"/history {ITEM} 3", "/start"):
        await session.telegram.send(AGENT, line, within=15.0)


async def database_text(url: str, cwd: Path) -> str:
    """Everything the database holds, as text."""
    if url.startswith("sqlite"):
        files = await asyncio.to_thread(lambda: sorted(cwd.glob("bot.db*")))
        assert files, "no SQLite files"
        raw = [await asyncio.to_thread(f.read_bytes) for f in files]
        return "\n".join(b.decode("latin-1") for b in raw)
    engine: AsyncEngine = create_engine(url)
    try:
        metadata = MetaData()
        async with engine.connect() as connection:
            await connection.run_sync(metadata.reflect)
            parts = []
            for table in metadata.sorted_tables:
                rows = (await connection.execute(select(table))).all()
                parts.append(f"{table.name}: {[tuple(map(str, r)) for r in rows]}")
        return "\n".join(parts)
    finally:
        await engine.dispose()


async def test_no_secret_appears_in_the_logs_the_database_or_any_message(
    session: Session,
) -> None:
    port = free_port()
    bot = await start_bot(session.env, port, session.cwd, log=session.log)
    try:
        await run_session(session, port)
        bot.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(bot.wait(), 30.0)
    finally:
        await stop_bot(bot)
    assert returncode == 0

    needles = {
        "acme password": ACME.password,
        "sunbright password": SUNBRIGHT.password,
        "slack bot token": session.env["SLACK_BOT_TOKEN"],
        "slack signing secret": SIGNING_SECRET,
        "telegram bot token": session.env["TELEGRAM_BOT_TOKEN"],
        "encryption keys": session.env["ERM_BOT_SECRET_KEYS"],
    }
    assert len(session.tokens) >= 3  # the setup's sign-ins, and the one after the revocation
    for n, token in enumerate(session.tokens):
        needles[f"access token {n}"] = token
        needles[f"access token {n} signature"] = token.rsplit(".", 1)[1]
    for key in session.env["ERM_BOT_SECRET_KEYS"].split(","):
        needles[f"key {key[:4]}"] = key
    haystacks = {
        "log": await asyncio.to_thread(session.log.read_text, errors="replace"),
        "database": await database_text(session.env["ERM_BOT_DATABASE_URL"], session.cwd),
        "slack messages": "\n".join(call.dump() for call in session.slack.calls),
        "telegram messages": "\n".join(
            json.dumps(call.params, ensure_ascii=False, default=str)
            for call in session.telegram.calls
        ),
    }
    assert "erm-bot serving" in haystacks["log"]  # the log is really the process's
    assert "cash 500" in haystacks["database"]  # the rows were really read
    assert len(session.slack.posts()) >= len(SLACK_SCRIPT) + 2
    leaks = [
        f"{what} in the {where}"
        for what, secret in needles.items()
        for where, haystack in haystacks.items()
        if secret in haystack
    ]
    assert leaks == []
