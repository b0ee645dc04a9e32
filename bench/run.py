"""Run the benchmarks: start the processes, warm up, measure every cell, write the results.

Processes (2 cores here, so placement matters):

- this one: the load generator, the fake Slack (one, shared), two fake Telegram Bot APIs (one
  per bot, so two pollers never conflict) and two fake WhatsApp Graph APIs (one per app), all on
  one event loop;
- the ERM sandbox (``bench.erm_server``), alone, so its GraphQL work does not delay the load
  generator's clock readings;
- the system under test, ``erm-bot serve`` (Slack and WhatsApp webhooks over HTTP and Telegram by
  long polling in one process; a SQLite file in a temporary directory, or a fresh PostgreSQL
  database with ``--postgres``), configured only by its environment;
- the baselines: a bare bolt ``AsyncApp`` under uvicorn, a bare PTB ``Application`` and a bare
  pywa_async app under uvicorn.

Cells are interleaved (erm-bot and the baseline back to back, alternating who goes first) so
that a noisy neighbour hurts both sides of a ratio alike. Each cell also records the ERM calls its
commands cost (the sandbox counts GraphQL requests; the harness reads the count around the cell).
Right after the warm-up, a small "realistic ERM" cell runs Slack ``/code days`` at c=1 with
ERM answering 250 ms late, as a real ERM does, on items the warm-up made known.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from fakes.slack import SIGNING_SECRET
from fakes.whatsapp import PHONE_NUMBER_ID

from bench import REPO
from bench.common import (
    Child,
    ERMCalls,
    child_environment,
    cpu_seconds,
    free_port,
    machine,
    no_gc_pauses,
    percentile,
    start,
    start_erm,
    wait_healthy,
)
from bench.erm_server import CALLS_PATH, DISTRIBUTOR, bench_items, bench_state
from bench.report import (
    OURS,
    SLACK_BASE,
    TELEGRAM_BASE,
    WHATSAPP_BASE,
    Results,
    markdown,
    summary_lines,
)
from bench.slack_bench import (
    BenchSlack,
    DaysAllocator,
    SlackCell,
    make_jobs,
    run_cell,
    slack_user,
)
from bench.telegram_bench import BenchTelegram, TelegramCell, plan, telegram_user
from bench.telegram_bench import run_cell as run_telegram_cell
from bench.whatsapp_bench import BenchWhatsApp, WhatsAppCell, wa_id
from bench.whatsapp_bench import plan as whatsapp_plan
from bench.whatsapp_bench import run_cell as run_whatsapp_cell

RESULTS = Path(__file__).with_name("RESULTS.md")
FINDINGS = Path(__file__).with_name("findings.md")
BIN = Path(sys.executable).parent
RAISED_LIMIT = "1000000"
WARM_UP_CONCURRENCY = 10
MAX_ITEMS = 100
WHATSAPP_WEBHOOK = "/whatsapp/webhook"
REALISTIC_LATENCY_MS = 250  # what a real ERM adds to a call, network and all
REALISTIC_N = 20


@dataclass(frozen=True)
class Options:
    n: int
    telegram_n: int
    whatsapp_n: int
    chats: int
    concurrency: tuple[int, ...]
    latencies: tuple[int, ...]
    commands: tuple[str, ...]
    paths: tuple[str, ...]
    items: int
    database_url: str | None
    postgres: str | None
    out: Path | None
    log_level: str
    workdir: Path | None
    profile: Path | None
    notes: tuple[str, ...] = ()
    realistic_latency: int = REALISTIC_LATENCY_MS  # 0: no realistic-ERM cell
    realistic_n: int = REALISTIC_N


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny N: a smoke run of seconds")
    parser.add_argument("-n", type=int, help="Slack commands per cell (default 200)")
    parser.add_argument("--telegram-n", type=int, help="updates per Telegram burst (default 200)")
    parser.add_argument("--chats", type=int, help="Telegram chats per burst (default 50)")
    parser.add_argument(
        "--whatsapp-n", type=int, help="WhatsApp messages per cell (default 200; senders: -c)"
    )
    parser.add_argument("--concurrency", help="comma-separated (default 1,10,50)")
    parser.add_argument("--latencies", help="added ERM latency in ms, comma-separated (0,50)")
    parser.add_argument("--commands", help="code,history (default both)")
    parser.add_argument(
        "--realistic-latency",
        type=int,
        default=REALISTIC_LATENCY_MS,
        metavar="MS",
        help=f"added ERM latency of the realistic-ERM cell (Slack /code days, c=1, after the "
        f"warm-up; default {REALISTIC_LATENCY_MS}; 0 skips it)",
    )
    parser.add_argument(
        "--realistic-n",
        type=int,
        help=f"commands per system in the realistic-ERM cell (default {REALISTIC_N}; quick 4)",
    )
    parser.add_argument(
        "--paths",
        default="slack,telegram,whatsapp",
        help="slack,telegram,whatsapp (default all; the Slack warm-up always runs)",
    )
    parser.add_argument(
        "--items", type=int, help="acme items to spread commands over (default 100; quick 20)"
    )
    parser.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="run erm-bot on PostgreSQL: a fresh database is created through ADMIN_URL (e.g. "
        "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres) and dropped afterwards",
    )
    parser.add_argument(
        "--database-url",
        help="the bot's database (default: a SQLite file in a temporary directory); an empty "
        "PostgreSQL database works too",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"where to write the results (default {RESULTS.relative_to(REPO)}; "
        "with --quick: nowhere unless given)",
    )
    parser.add_argument("--log-level", default="INFO", help="erm-bot's ERM_BOT_LOG_LEVEL (INFO)")
    parser.add_argument(
        "--note", action="append", default=[], help="a line for the results (repeatable)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the database and the process logs here (default: a "
        "temporary directory, removed afterwards)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run erm-bot and the baselines under cProfile; stats go to DIR/<name>.prof",
    )
    args = parser.parse_args(argv)

    def ints(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(int(x) for x in text.split(",")) if text else default

    quick = args.quick
    options = Options(
        n=args.n or (8 if quick else 200),
        telegram_n=args.telegram_n or (12 if quick else 200),
        whatsapp_n=args.whatsapp_n or (8 if quick else 200),
        chats=args.chats or (4 if quick else 50),
        concurrency=ints(args.concurrency, (1, 4) if quick else (1, 10, 50)),
        latencies=ints(args.latencies, (0, 50)),
        commands=tuple((args.commands or "code,history").split(",")),
        paths=tuple(args.paths.split(",")),
        items=args.items or (20 if quick else 100),
        database_url=args.database_url,
        postgres=args.postgres,
        out=args.out if args.out is not None or quick else RESULTS,
        log_level=args.log_level,
        workdir=args.workdir,
        profile=args.profile,
        notes=tuple(args.note),
        realistic_latency=args.realistic_latency,
        realistic_n=args.realistic_n or (4 if quick else REALISTIC_N),
    )
    if options.items > MAX_ITEMS:
        parser.error(f"--items: the sandbox has {MAX_ITEMS} acme items without code limits")
    if options.realistic_latency < 0 or options.realistic_n < 1:
        parser.error("--realistic-latency must be 0 or more and --realistic-n at least 1")
    if options.postgres and options.database_url:
        parser.error("give --postgres or --database-url, not both")
    if max(options.concurrency) > options.items or options.chats > options.items:
        parser.error(
            "every concurrent command and every chat needs an item of its own: raise --items"
        )
    unknown = (set(options.commands) - {"code", "history"}) | (
        set(options.paths) - {"slack", "telegram", "whatsapp"}
    )
    if unknown:
        parser.error(f"unknown command or path: {', '.join(sorted(unknown))}")
    return options


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


async def _prepare_database(env: dict[str, str], options: Options) -> None:
    """Add distributor acme (one sign-in) and grant every bench user, before the bot starts.

    Bench users are supervisors: they issue days codes directly. Agents' days codes go to
    approval above 30 days or after 10 codes in 24 hours (the default approval policy), which is a
    different path from the one measured here.
    """
    from adapters.runtime import open_runtime
    from adapters.settings import Settings
    from bot.roles import Role
    from bot.storage.grants import GrantStore
    from erm.sandbox import ACME

    settings = Settings.model_validate({name.lower(): value for name, value in env.items()})
    async with open_runtime(settings) as runtime:
        await runtime.service.add_distributor(ACME.name, ACME.email, ACME.password)
        grants = GrantStore(runtime.engine)
        for worker in range(max(*options.concurrency, WARM_UP_CONCURRENCY)):
            await grants.grant("slack", slack_user(worker), Role.SUPERVISOR, DISTRIBUTOR, "bench")
        for chat in range(options.chats):
            user = str(telegram_user(chat).id)
            await grants.grant("telegram", user, Role.SUPERVISOR, DISTRIBUTOR, "bench")
        for sender in range(max(*options.concurrency, WARM_UP_CONCURRENCY)):
            await grants.grant("whatsapp", wa_id(sender), Role.SUPERVISOR, DISTRIBUTOR, "bench")


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
async def postgres_database(admin_url: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for one run (its URL); dropped afterwards."""
    from sqlalchemy import make_url

    from erm.db import create_engine

    name = f"erm_bot_bench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(admin_url).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


@contextlib.asynccontextmanager
async def rig(options: Options, workdir: Path) -> AsyncIterator[Rig]:
    from erm.sandbox import ACME
    from erm.secret_box import SecretBox

    logs = workdir / "logs"
    logs.mkdir()
    state = bench_state()
    items = bench_items(state)[: options.items]
    items_file = workdir / "items.json"
    items_file.write_text(json.dumps(dict(items)))
    children: list[Child] = []
    async with (
        contextlib.AsyncExitStack() as stack,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
        ) as http,
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
                "ERM_API_URL": f"{erm_base}/graphql",
                "ERM_BOT_DATABASE_URL": database,
                "ERM_BOT_SECRET_KEYS": SecretBox.generate_key(),
                "ERM_BOT_CODES_PER_USER_HOUR": RAISED_LIMIT,
                "ERM_BOT_CODES_PER_DISTRIBUTOR_HOUR": RAISED_LIMIT,
                "ERM_BOT_LOOKUPS_PER_USER_MINUTE": RAISED_LIMIT,
                "ERM_BOT_LOG_LEVEL": options.log_level,
                "SLACK_BOT_TOKEN": slack.bot_token,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": slack.api_url,
                "TELEGRAM_BOT_TOKEN": telegram_ours.token,
                "TELEGRAM_API_URL": telegram_ours.api_url,
                **_whatsapp_env(whatsapp_ours),
            }
            await _prepare_database(ours_env, options)
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


async def _whatsapp_cell(
    rig: Rig, system: str, command: str, latency: int, senders: int, n: int
) -> WhatsAppCell:
    ours = system == OURS
    child = rig.ours if ours else rig.base_whatsapp
    fake = rig.whatsapp_ours if ours else rig.whatsapp_base
    url = rig.ours_url.replace("/slack/events", WHATSAPP_WEBHOOK) if ours else rig.base_whatsapp_url
    texts, expected = whatsapp_plan(command, n, senders, rig.pool, rig.days)
    cell = WhatsAppCell(system, command, latency, len(expected), n)
    with no_gc_pauses():
        calls = await rig.erm_calls()
        cpu = cpu_seconds(child.pid)
        await run_whatsapp_cell(fake, url, texts, expected, cell)
        cell.cpu_seconds = cpu_seconds(child.pid) - cpu
        cell.erm_calls = ERMCalls.between(calls, await rig.erm_calls())
    cell.peak_rss_mb = child.memory()[0]
    return cell


async def _slack_cell(
    rig: Rig, system: str, command: str, latency: int, concurrency: int, n: int
) -> SlackCell:
    child, url = (
        (rig.ours, rig.ours_url) if system == OURS else (rig.base_slack, rig.base_slack_url)
    )
    jobs = make_jobs(command, n, concurrency, rig.pool, rig.days)
    cell = SlackCell(system, command, latency, concurrency)
    with no_gc_pauses():
        calls = await rig.erm_calls()
        cpu = cpu_seconds(child.pid)
        await run_cell(rig.http, rig.slack, url, jobs, cell)
        cell.cpu_seconds = cpu_seconds(child.pid) - cpu
        cell.erm_calls = ERMCalls.between(calls, await rig.erm_calls())
    cell.peak_rss_mb = child.memory()[0]
    return cell


async def _telegram_cell(rig: Rig, system: str, command: str, latency: int) -> TelegramCell:
    ours = system == OURS
    child = rig.ours if ours else rig.base_telegram
    fake = rig.telegram_ours if ours else rig.telegram_base
    n, chats = rig.options.telegram_n, min(rig.options.chats, rig.options.telegram_n)
    messages, expected = plan(command, n, chats, rig.pool, rig.days)
    cell = TelegramCell(system, command, latency, n, len(expected))
    with no_gc_pauses():
        calls = await rig.erm_calls()
        cpu = cpu_seconds(child.pid)
        await run_telegram_cell(fake, messages, expected, cell)
        cell.cpu_seconds = cpu_seconds(child.pid) - cpu
        cell.erm_calls = ERMCalls.between(calls, await rig.erm_calls())
    cell.peak_rss_mb = child.memory()[0]
    return cell


async def warm_up(rig: Rig) -> None:
    """Connections, bolt's auth.test, the bot's item cache; every item gets a code to show."""
    for system in (OURS, SLACK_BASE):
        for command in ("code", "history"):
            concurrency = min(WARM_UP_CONCURRENCY, len(rig.pool))
            cell = await _slack_cell(rig, system, command, 0, concurrency, len(rig.pool))
            if cell.failed or cell.wrong:
                raise RuntimeError(
                    f"warm-up of {system} {command}: {cell.failed} failed, {cell.wrong} wrong: "
                    f"{cell.examples}"
                )
    if "telegram" in rig.options.paths:
        for system in (OURS, TELEGRAM_BASE):
            cell = await _telegram_cell(rig, system, "history", 0)
            if cell.timed_out or cell.wrong:
                raise RuntimeError(f"warm-up of {system} on Telegram failed: {cell.examples}")
    if "whatsapp" in rig.options.paths:
        for system in (OURS, WHATSAPP_BASE):
            senders = min(WARM_UP_CONCURRENCY, len(rig.pool))
            wa = await _whatsapp_cell(rig, system, "history", 0, senders, senders)
            if wa.timed_out or wa.wrong or wa.failed:
                raise RuntimeError(f"warm-up of {system} on WhatsApp failed: {wa.examples}")


def _log_problems(child: Child) -> int:
    text = child.log_path.read_text(errors="replace")
    return len(re.findall(r"^.*(?:\bERROR\b|Traceback).*$", text, flags=re.MULTILINE))


async def measure(options: Options) -> Results:
    started = time.monotonic()
    results = Results(
        machine=machine(),
        settings={
            "Slack commands per cell": str(options.n),
            "Concurrency": ", ".join(map(str, options.concurrency)),
            "Added ERM latency": ", ".join(f"{x} ms" for x in options.latencies),
            "Telegram burst": f"{options.telegram_n} updates from {options.chats} chats",
            "WhatsApp messages per cell": f"{options.whatsapp_n} (senders: the concurrency)",
            "Items": f"{options.items} acme items with every code limit off",
            "erm-bot database": (
                "PostgreSQL (a fresh database)"
                if options.postgres
                else "given URL"
                if options.database_url
                else "SQLite file (WAL)"
            ),
            "erm-bot log level": options.log_level,
            "Realistic-ERM cell": (
                f"Slack /code days, c=1, {options.realistic_n} commands per system, "
                f"ERM latency +{options.realistic_latency} ms, right after the warm-up"
                if options.realistic_latency and "slack" in options.paths
                else "off"
            ),
        },
    )
    with contextlib.ExitStack() as stack:
        if options.workdir is not None:
            options.workdir.mkdir(parents=True, exist_ok=False)
            tmp = str(options.workdir)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="erm-bot-bench-"))
        async with rig(options, Path(tmp)) as bench:
            await warm_up(bench)
            gc.collect()
            gc.freeze()  # what the harness holds from here on is never collected again
            flip = False
            if options.realistic_latency and "slack" in options.paths:
                # First: the items were made known by the warm-up, well within the bot's item
                # cache lifetime (10 minutes), so each command should cost one ERM call.
                await bench.set_latency(options.realistic_latency)
                flip = True
                for system in (SLACK_BASE, OURS):
                    cell = await _slack_cell(
                        bench, system, "code", options.realistic_latency, 1, options.realistic_n
                    )
                    results.realistic.append(cell)
                    print(_progress(cell, "realistic ERM "), flush=True)
                await bench.set_latency(0)
            if "slack" in options.paths:
                for latency in options.latencies:
                    await bench.set_latency(latency)
                    for command in options.commands:
                        for concurrency in options.concurrency:
                            order = (OURS, SLACK_BASE) if flip else (SLACK_BASE, OURS)
                            flip = not flip
                            for system in order:
                                cell = await _slack_cell(
                                    bench, system, command, latency, concurrency, options.n
                                )
                                results.slack.append(cell)
                                print(_progress(cell), flush=True)
            if "telegram" in options.paths:
                for latency in options.latencies:
                    await bench.set_latency(latency)
                    for command in options.commands:
                        order = (OURS, TELEGRAM_BASE) if flip else (TELEGRAM_BASE, OURS)
                        flip = not flip
                        for system in order:
                            tg = await _telegram_cell(bench, system, command, latency)
                            results.telegram.append(tg)
                            print(
                                f"  telegram {command} erm+{latency}ms {system}: "
                                f"{tg.throughput:.1f} updates/s, "
                                f"ERM calls/cmd {tg.erm_calls_per_update:.2f}",
                                flush=True,
                            )
            if "whatsapp" in options.paths:
                for latency in options.latencies:
                    await bench.set_latency(latency)
                    for command in options.commands:
                        for senders in options.concurrency:
                            order = (OURS, WHATSAPP_BASE) if flip else (WHATSAPP_BASE, OURS)
                            flip = not flip
                            for system in order:
                                wa = await _whatsapp_cell(
                                    bench, system, command, latency, senders, options.whatsapp_n
                                )
                                results.whatsapp.append(wa)
                                print(_wa_progress(wa), flush=True)
            await bench.set_latency(0)
            results.peak_rss_mb = {
                OURS: bench.ours.memory()[0],
                f"{SLACK_BASE} baseline": bench.base_slack.memory()[0],
                f"{TELEGRAM_BASE} baseline": bench.base_telegram.memory()[0],
                f"{WHATSAPP_BASE} baseline": bench.base_whatsapp.memory()[0],
            }
            ours = bench.ours
        # The rig has stopped every process by now (SIGTERM: erm-bot must exit 0).
        results.log_problems = {OURS: _log_problems(ours)}
        status = ours.process.returncode
        if status != 0 and options.profile is None:
            results.notes.append(f"erm-bot exited with status {status} after SIGTERM")
    results.duration = time.monotonic() - started
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    results.notes = [*options.notes, f"Load average at the end: {load}", *results.notes]
    return results


def _wa_progress(cell: WhatsAppCell) -> str:
    return (
        f"  whatsapp {cell.command} erm+{cell.latency_ms}ms c={cell.senders} {cell.system}: "
        f"{cell.throughput:.1f} messages/s, ack p50 {percentile(cell.ack, 50) * 1000:.1f} ms, "
        f"ERM calls/cmd {cell.erm_calls_per_message:.2f}"
        + ("" if cell.in_order else f", in order {cell.senders_in_order}/{cell.senders}")
        + (f", {cell.failed} failed, {cell.wrong} wrong" if cell.failed or cell.wrong else "")
    )


def _progress(cell: SlackCell, tag: str = "") -> str:
    return (
        f"  {tag}slack {cell.command} erm+{cell.latency_ms}ms c={cell.concurrency} {cell.system}: "
        f"ack p50 {percentile(cell.ack, 50) * 1000:.1f} ms, "
        f"e2e p50 {percentile(cell.e2e, 50) * 1000:.1f} ms, {cell.throughput:.1f}/s, "
        f"ERM calls/cmd {cell.erm_calls_per_command:.2f}"
        + (f", {cell.failed} failed, {cell.wrong} wrong" if cell.failed or cell.wrong else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    results = asyncio.run(measure(options))
    for line in summary_lines(results):
        print(line)
    if options.out is not None:
        findings = FINDINGS.read_text() if FINDINGS.exists() else ""
        options.out.write_text(markdown(results, findings))
        print(f"results written to {options.out}")
    broken = (
        any(c.failed or c.wrong for c in [*results.slack, *results.realistic])
        or any(c.timed_out or c.wrong for c in results.telegram)
        or any(c.timed_out or c.failed or c.wrong for c in results.whatsapp)
    )
    return 1 if broken else 0
