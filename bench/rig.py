"""The processes of one pass of ``python -m bench``: the ERM sandbox, erm-bot (its database
made and prepared), the baselines, the fakes; :func:`rig` starts them and stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from fakes.slack import SIGNING_SECRET
from fakes.whatsapp import PHONE_NUMBER_ID

from bench import REPO
from bench.common import (
    Child,
    child_environment,
    free_port,
    http_session,
    start,
    start_erm,
    wait_healthy,
)
from bench.database import bot_environment, postgres_database, prepare_database
from bench.erm_server import CALLS_PATH, bench_items, bench_state
from bench.options import Options
from bench.slack_bench import BenchSlack, DaysAllocator
from bench.telegram_bench import BenchTelegram
from bench.whatsapp_bench import BenchWhatsApp

BIN = Path(sys.executable).parent
WARM_UP_CONCURRENCY = 10
WHATSAPP_WEBHOOK = "/whatsapp/webhook"


@dataclass
class Rig:
    options: Options
    http: aiohttp.ClientSession
    slack: BenchSlack
    telegram_ours: BenchTelegram
    telegram_base: BenchTelegram
    erm_base: str  # the sandbox's base URL (no /graphql)
    ours: Child
    ours_url: str
    base_slack: Child
    base_slack_url: str
    base_telegram: Child
    whatsapp_ours: BenchWhatsApp
    whatsapp_base: BenchWhatsApp
    base_whatsapp: Child
    base_whatsapp_url: str
    pool: list[str]
    days: DaysAllocator

    async def set_latency(self, ms: int) -> None:
        url = f"{self.erm_base}/_sandbox/faults"
        async with self.http.post(url, json={"latency_ms": ms}) as response:
            response.raise_for_status()

    async def erm_calls(self) -> dict[str, int]:
        """The GraphQL requests the sandbox has served so far, by operation name."""
        async with self.http.get(f"{self.erm_base}{CALLS_PATH}") as response:
            response.raise_for_status()
            counts: dict[str, int] = (await response.json())["operations"]
            return counts


async def _wait_polling(fake: BenchTelegram, child: Child, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not fake.calls_to("getUpdates"):
        if child.process.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} never polled Telegram:\n{child.log_tail()}")
        await asyncio.sleep(0.1)


def _profiled(options: Options, name: str, argv: list[str]) -> list[str]:
    """``argv`` under cProfile when ``--profile`` is given (the stats are written at exit)."""
    if options.profile is None:
        return argv
    options.profile.mkdir(parents=True, exist_ok=True)
    out = ["-o", str(options.profile / f"{name}.prof")]
    if argv[0] == sys.executable:  # python -m module ...
        return [sys.executable, "-m", "cProfile", *out, *argv[1:]]
    return [sys.executable, "-m", "cProfile", *out, *argv]


@contextlib.asynccontextmanager
async def rig(options: Options, workdir: Path) -> AsyncIterator[Rig]:
    from erm.sandbox import ACME

    logs = workdir / "logs"
    logs.mkdir()
    state = bench_state()
    items = bench_items(state)[: options.items]
    items_file = workdir / "items.json"
    items_file.write_text(json.dumps(dict(items)))
    children: list[Child] = []
    async with (
        contextlib.AsyncExitStack() as stack,
        http_session() as http,
        BenchSlack() as slack,
        BenchTelegram() as telegram_ours,
        BenchTelegram() as telegram_base,
        BenchWhatsApp() as whatsapp_ours,
        BenchWhatsApp() as whatsapp_base,
    ):
        try:
            erm, erm_base = await start_erm(REPO, logs)
            children.append(erm)

            if options.postgres:
                database = await stack.enter_async_context(postgres_database(options.postgres))
            else:
                database = options.database_url or f"sqlite+aiosqlite:///{workdir / 'erm-bot.db'}"
            ours_env = {
                **bot_environment(erm_base, database, options.log_level),
                "SLACK_BOT_TOKEN": slack.bot_token,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": slack.api_url,
                "TELEGRAM_BOT_TOKEN": telegram_ours.token,
                "TELEGRAM_API_URL": telegram_ours.api_url,
                **_whatsapp_env(whatsapp_ours),
            }
            workers = max(*options.concurrency, WARM_UP_CONCURRENCY)
            await prepare_database(ours_env, workers, options.chats)
            port = free_port()
            ours = await start(
                "erm-bot",
                _profiled(
                    options,
                    "erm-bot",
                    [str(BIN / "erm-bot"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                ),
                env=child_environment(**ours_env),
                cwd=workdir,
                logs=logs,
            )
            children.append(ours)
            ours_url = f"http://127.0.0.1:{port}"

            bare = {
                "BENCH_ERM_URL": f"{erm_base}/graphql",
                "BENCH_ERM_EMAIL": ACME.email,
                "BENCH_ERM_PASSWORD": ACME.password,
                "BENCH_ITEMS": str(items_file),
            }
            base_port = free_port()
            base_slack = await start(
                "baseline-slack",
                _profiled(
                    options,
                    "baseline-slack",
                    [sys.executable, "-m", "bench.baseline_slack", "--port", str(base_port)],
                ),
                env=child_environment(
                    **bare,
                    SLACK_BOT_TOKEN=slack.bot_token,
                    SLACK_SIGNING_SECRET=SIGNING_SECRET,
                    SLACK_API_URL=slack.api_url,
                ),
                cwd=REPO,
                logs=logs,
            )
            children.append(base_slack)
            base_slack_url = f"http://127.0.0.1:{base_port}"
            base_telegram = await start(
                "baseline-telegram",
                _profiled(
                    options, "baseline-telegram", [sys.executable, "-m", "bench.baseline_telegram"]
                ),
                env=child_environment(
                    **bare,
                    TELEGRAM_BOT_TOKEN=telegram_base.token,
                    TELEGRAM_API_URL=telegram_base.api_url,
                ),
                cwd=REPO,
                logs=logs,
            )
            children.append(base_telegram)
            base_wa_port = free_port()
            base_whatsapp = await start(
                "baseline-whatsapp",
                _profiled(
                    options,
                    "baseline-whatsapp",
                    [sys.executable, "-m", "bench.baseline_whatsapp", "--port", str(base_wa_port)],
                ),
                env=child_environment(**bare, **_whatsapp_env(whatsapp_base)),
                cwd=REPO,
                logs=logs,
            )
            children.append(base_whatsapp)
            base_whatsapp_url = f"http://127.0.0.1:{base_wa_port}"
            await wait_healthy(ours, f"{ours_url}/healthz")
            await wait_healthy(base_slack, f"{base_slack_url}/healthz")
            await wait_healthy(base_whatsapp, f"{base_whatsapp_url}/healthz")
            await _wait_polling(telegram_ours, ours)
            await _wait_polling(telegram_base, base_telegram)
            yield Rig(
                options,
                http,
                slack,
                telegram_ours,
                telegram_base,
                erm_base,
                ours,
                f"{ours_url}/slack/events",
                base_slack,
                f"{base_slack_url}/slack/events",
                base_telegram,
                whatsapp_ours,
                whatsapp_base,
                base_whatsapp,
                f"{base_whatsapp_url}{WHATSAPP_WEBHOOK}",
                [oem for oem, _ in items],
                DaysAllocator(),
            )
        finally:
            # Under cProfile, SIGINT: uvicorn re-raises a SIGTERM after shutting down, which would
            # end the process before cProfile writes its stats (a KeyboardInterrupt does not).
            sig = signal.SIGINT if options.profile is not None else signal.SIGTERM
            for child in reversed(children):
                await child.stop(sig=sig)


def _whatsapp_env(fake: BenchWhatsApp) -> dict[str, str]:
    return {
        "WHATSAPP_TOKEN": fake.token,
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "WHATSAPP_APP_SECRET": fake.app_secret,
        "WHATSAPP_VERIFY_TOKEN": fake.verify_token,
        "WHATSAPP_API_URL": fake.url,
    }
