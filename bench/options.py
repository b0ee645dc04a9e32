"""The options of ``python -m bench`` (``bench.run``): sizes of the cells, paths, databases."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import REPO
from bench.database import DEFAULT_ADMIN_URL, PROBE_TIMEOUT

RESULTS = Path(__file__).with_name("RESULTS.md")
DESCRIPTION = (
    "Measure erm-bot's Slack, Telegram and WhatsApp paths against bare baselines, first with "
    "erm-bot on a SQLite file, then, where PostgreSQL answers, on a fresh PostgreSQL database "
    "(each pass with baselines of its own); then the in-process storage figures "
    "(bench.storage) on each database and the two-process cell (bench.scaling) on PostgreSQL. "
    "Writes bench/RESULTS.md; see bench/README.md."
)
MAX_ITEMS = 100
REALISTIC_LATENCY_MS = 250  # what a real ERM adds to a call, network and all
REALISTIC_N = 20
STORAGE_N = 1000  # bench.storage's own default
SCALING_N, SCALING_C = 400, 50  # bench.scaling's own defaults


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
    postgres: str | None  # this pass runs on a fresh database made through this admin URL
    out: Path | None
    log_level: str
    workdir: Path | None
    profile: Path | None
    notes: tuple[str, ...] = ()
    realistic_latency: int = REALISTIC_LATENCY_MS  # 0: no realistic-ERM cell
    realistic_n: int = REALISTIC_N
    # After the SQLite pass: a PostgreSQL pass through this admin URL (None: none), if it answers.
    postgres_pass: str | None = None
    storage_n: int = STORAGE_N  # commands of bench.storage per database (0: not run)
    scaling_n: int = SCALING_N  # commands per cell of bench.scaling (0: not run)
    scaling_c: int = SCALING_C


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION)
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
        help="after the SQLite pass, run every cell again with erm-bot on PostgreSQL, then the "
        "storage and two-process cells: a fresh database is created through ADMIN_URL and "
        f"dropped afterwards (default {DEFAULT_ADMIN_URL}, if it answers within "
        f"{PROBE_TIMEOUT:g} s; with --quick: only when given)",
    )
    parser.add_argument(
        "--no-postgres", action="store_true", help="SQLite only: no PostgreSQL pass"
    )
    parser.add_argument(
        "--storage-n",
        type=int,
        help=f"bench.storage commands per database (default {STORAGE_N}; quick 20; 0 skips)",
    )
    parser.add_argument(
        "--scaling-n",
        type=int,
        help=f"commands per cell of the two-process cell on PostgreSQL (default {SCALING_N}, "
        f"c={SCALING_C}; quick 16, c=4)",
    )
    parser.add_argument(
        "--no-scaling", action="store_true", help="no two-process cell (bench.scaling)"
    )
    parser.add_argument(
        "--database-url",
        help="the bot's database, and the only one (default: a SQLite file in a temporary "
        "directory, then PostgreSQL); an empty PostgreSQL database works too",
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
        "temporary directory, removed afterwards; with two passes: DIR/sqlite, DIR/postgresql)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run erm-bot and the baselines under cProfile; stats go to DIR/<name>.prof "
        "(with two passes: DIR/sqlite/, DIR/postgresql/)",
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
        postgres=None,
        out=args.out if args.out is not None or quick else RESULTS,
        log_level=args.log_level,
        workdir=args.workdir,
        profile=args.profile,
        notes=tuple(args.note),
        realistic_latency=args.realistic_latency,
        realistic_n=args.realistic_n or (4 if quick else REALISTIC_N),
        postgres_pass=(
            None
            if args.no_postgres or args.database_url
            else args.postgres or (None if quick else DEFAULT_ADMIN_URL)
        ),
        storage_n=(20 if quick else STORAGE_N) if args.storage_n is None else args.storage_n,
        scaling_n=0 if args.no_scaling else args.scaling_n or (16 if quick else SCALING_N),
        scaling_c=4 if quick else SCALING_C,
    )
    if options.items > MAX_ITEMS:
        parser.error(f"--items: the sandbox has {MAX_ITEMS} acme items without code limits")
    if options.realistic_latency < 0 or options.realistic_n < 1:
        parser.error("--realistic-latency must be 0 or more and --realistic-n at least 1")
    if args.postgres and (args.database_url or args.no_postgres):
        parser.error("--postgres goes with neither --database-url nor --no-postgres")
    if options.storage_n < 0 or options.scaling_n < 0:
        parser.error("--storage-n and --scaling-n must be 0 or more")
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
