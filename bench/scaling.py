"""Two ``erm-bot serve`` processes on one PostgreSQL database against one (issue 18).

``python -m bench.scaling --postgres ADMIN_URL [-n N] [-c C] [--latency MS] [--out FILE]``

A fresh PostgreSQL database (dropped afterwards), the ERM stand-in (``bench.erm_server``) and the
fake Slack, the database prepared as ``python -m bench`` prepares it (distributor acme, the bench
users granted supervisor). Then two cells of the same load, signed ``/code days`` slash commands
from the Slack cells' generator (closed loop, ``C`` workers, ``N`` commands, every command on its
own item and days, so none is a duplicate and none waits on another's item lock):

- cell A: one ``erm-bot serve`` process takes every command;
- cell B: a second process, same environment, another port, is started and warmed up; each
  worker sends its commands to the two processes in turn (round robin).

Figures: commands answered per second of wall time; CPU ms per command of the bot process(es),
of the stand-in, of this harness and of the rest of the machine (PostgreSQL, the kernel); how
busy the machine was (``/proc/stat``), and the most the machine could serve at one process's CPU
per command, every core busy: on few cores shared by all of these, that ceiling, not the bot,
caps the ratio, and the output says so.

Then the check this exists for: no code issued twice. ERM's code events of every item are read
before and after each cell; the new ones must number exactly the commands answered, each (item,
days) once, and the bot's ``bot_issued_codes`` must agree at the end. A duplicate is printed
loudly and makes the exit status 1, as does a command unanswered, answered wrongly or answered
twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from fakes.slack import SIGNING_SECRET

from bench import REPO
from bench.bare_erm import BareErm
from bench.common import (
    Child,
    child_environment,
    cpu_seconds,
    free_port,
    http_session,
    no_gc_pauses,
    start,
    start_erm,
    wait_healthy,
)
from bench.database import bot_environment, postgres_database, prepare_database
from bench.erm_server import bench_items, bench_state
from bench.slack_bench import (
    BenchSlack,
    DaysAllocator,
    Job,
    SlackCell,
    _one,
    make_jobs,
)
from erm import operations as ops

BIN = Path(sys.executable).parent
ITEMS = 100  # acme items without code limits in the stand-in
TARGET = 1.7
WARM_UP_CONCURRENCY = 10
CELL_TIMEOUT = 900.0  # seconds for one cell; each command also has its own answer timeout
SETTLE = 0.5  # seconds after a cell for any late (second) post or code to show
ERM_PAGE = 100  # the stand-in's largest page
MAX_PAGES = 1000


@dataclass
class Cell:
    processes: int
    slack: SlackCell
    machine_busy: float = float("nan")  # cores' worth of CPU the whole machine used
    # CPU seconds during the cell of the ERM stand-in, of this harness, and of the whole machine
    erm_cpu: float = float("nan")
    harness_cpu: float = float("nan")
    machine_cpu: float = float("nan")
    answered_twice: int = 0
    erm_codes: int = 0  # new code events in ERM during the cell
    duplicates: list[str] = field(default_factory=list)  # (item, days) issued more than once
    log_problems: int = 0

    def per_command(self, seconds: float) -> float:
        return 1000 * seconds / self.slack.sent if self.slack.sent else float("nan")

    @property
    def rest_cpu(self) -> float:
        """CPU seconds of the machine no bench process accounts for: PostgreSQL, the kernel."""
        return self.machine_cpu - self.slack.cpu_seconds - self.erm_cpu - self.harness_cpu

    @property
    def answered(self) -> int:
        return len(self.slack.e2e)

    @property
    def broken(self) -> bool:
        return bool(
            self.slack.failed
            or self.slack.wrong
            or self.answered_twice
            or self.duplicates
            or self.erm_codes != self.answered
        )


def machine_cpu() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the whole machine so far (first line of /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan"), float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / ticks, total / ticks


async def erm_events(erm: BareErm, items: dict[str, str]) -> dict[str, tuple[str, int | None]]:
    """Every code event ERM holds for ``items`` (OEM id -> ERM id): event id -> (item, days)."""
    limit = asyncio.Semaphore(10)

    async def of(oem: str, erm_id: str) -> dict[str, tuple[str, int | None]]:
        found: dict[str, tuple[str, int | None]] = {}
        after: str | None = None
        async with limit:
            for _ in range(MAX_PAGES):
                data = await erm._call(
                    ops.CODE_HISTORY,
                    {
                        "itemId": erm_id,
                        "distributorId": erm.client_id,
                        "first": ERM_PAGE,
                        "after": after,
                    },
                )
                page = data["page"]
                for edge in page["edges"]:
                    node = edge["node"]
                    found[node["_id"]] = (oem, node["codeDays"])
                if not page["pageInfo"]["hasNextPage"]:
                    return found
                after = page["pageInfo"]["endCursor"]
        raise RuntimeError(f"the code history of {oem} has more than {MAX_PAGES} pages")

    events: dict[str, tuple[str, int | None]] = {}
    for part in await asyncio.gather(*(of(oem, erm_id) for oem, erm_id in items.items())):
        events.update(part)
    return events


def jobs_for(urls: Sequence[str], jobs: list[list[Job]]) -> list[list[tuple[str, Job]]]:
    """Each worker's jobs with the process each goes to: the processes in turn (round robin)."""
    return [
        [(urls[(worker + index) % len(urls)], job) for index, job in enumerate(mine)]
        for worker, mine in enumerate(jobs)
    ]


async def drive(
    http: aiohttp.ClientSession,
    fake: BenchSlack,
    plan: list[list[tuple[str, Job]]],
    cell: SlackCell,
) -> None:
    """The Slack cells' closed loop, each job sent to its own URL; fills ``cell``."""
    spans: list[float] = []

    async def worker(mine: list[tuple[str, Job]]) -> None:
        for url, job in mine:
            span = await _one(http, fake, url, job, cell)
            if span is not None:
                spans.append(span[1])

    started = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*(worker(mine) for mine in plan)), CELL_TIMEOUT)
    except TimeoutError:
        cell.failed = cell.sent - len(cell.e2e)  # the ones cut short count as unanswered
    cell.wall = max(spans, default=time.monotonic()) - started


async def answered_twice(fake: BenchSlack) -> int:
    """After a pause for late posts: how many response URLs were posted to more than once."""
    await asyncio.sleep(SETTLE)
    twice = sum(1 for uses in fake.response_uses.values() if uses > 1)
    fake.forget()
    return twice


@dataclass
class Bench:
    http: aiohttp.ClientSession
    slack: BenchSlack
    erm: BareErm
    sandbox: Child
    items: dict[str, str]  # OEM id -> ERM id
    days: DaysAllocator
    env: dict[str, str]
    logs: Path
    workdir: Path
    bots: list[Child] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    code_commands: int = 0  # answered /code days, warm-ups included

    @property
    def pool(self) -> list[str]:
        return list(self.items)

    async def start_bot(self) -> str:
        port = free_port()
        name = f"erm-bot-{len(self.bots) + 1}"
        argv = [str(BIN / "erm-bot"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        child = await start(
            name, argv, env=child_environment(**self.env), cwd=self.workdir, logs=self.logs
        )
        self.bots.append(child)
        await wait_healthy(child, f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/slack/events"
        self.urls.append(url)
        return url

    async def warm_up(self, url: str) -> None:
        """Connections and the process's item cache: a /code days and a /history per item."""
        for command in ("code", "history"):  # codes first: /history wants one to show
            jobs = make_jobs(command, len(self.pool), WARM_UP_CONCURRENCY, self.pool, self.days)
            cell = SlackCell("erm-bot", command, 0, WARM_UP_CONCURRENCY)
            await drive(self.http, self.slack, jobs_for([url], jobs), cell)
            twice = await answered_twice(self.slack)
            if cell.failed or cell.wrong or twice:
                raise RuntimeError(
                    f"warm-up of {url} /{command}: {cell.failed} failed, {cell.wrong} wrong, "
                    f"{twice} answered twice: "
                    f"{cell.examples}"
                )
            if command == "code":
                self.code_commands += len(cell.e2e)

    async def cell(self, n: int, concurrency: int, latency: int) -> Cell:
        jobs = make_jobs("code", n, concurrency, self.pool, self.days)
        result = Cell(len(self.urls), SlackCell("erm-bot", "code", latency, concurrency))
        before = await erm_events(self.erm, self.items)
        with no_gc_pauses():
            cpu = [cpu_seconds(bot.pid) for bot in self.bots]
            erm_cpu, harness_cpu = cpu_seconds(self.sandbox.pid), cpu_seconds(os.getpid())
            busy = machine_cpu()
            await drive(self.http, self.slack, jobs_for(self.urls, jobs), result.slack)
            busy_after = machine_cpu()
            result.erm_cpu = cpu_seconds(self.sandbox.pid) - erm_cpu
            result.harness_cpu = cpu_seconds(os.getpid()) - harness_cpu
            result.slack.cpu_seconds = sum(
                cpu_seconds(bot.pid) - was for bot, was in zip(self.bots, cpu, strict=True)
            )
        # /proc/stat counts every core: the busy share of it, in cores.
        result.machine_cpu = busy_after[0] - busy[0]
        share = result.machine_cpu / (busy_after[1] - busy[1])
        result.machine_busy = share * (os.cpu_count() or 1)
        result.answered_twice = await answered_twice(self.slack)
        after = await erm_events(self.erm, self.items)
        new = [after[key] for key in after.keys() - before.keys()]
        result.erm_codes = len(new)
        result.duplicates = sorted(
            f"{item} {days} days x{count}"
            for (item, days), count in Counter(new).items()
            if count > 1
        )
        self.code_commands += result.answered
        return result


async def _bot_table(database: str) -> tuple[int, list[str]]:
    """Rows of ``bot_issued_codes``, and each (item, days) recorded more than once."""
    from sqlalchemy import text

    from erm.db import create_engine

    engine = create_engine(database)
    try:
        async with engine.connect() as connection:
            total = (await connection.execute(text("SELECT count(*) FROM bot_issued_codes"))).one()
            repeated = await connection.execute(
                text(
                    "SELECT item_id, days, count(*) FROM bot_issued_codes "
                    "GROUP BY distributor, item_id, days HAVING count(*) > 1"
                )
            )
            return int(total[0]), [f"{i} {d} days x{c}" for i, d, c in repeated]
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def bench(admin_url: str, concurrency: int, workdir: Path) -> AsyncIterator[Bench]:
    from erm.sandbox import ACME

    logs = workdir / "logs"
    logs.mkdir()
    items = dict(bench_items(bench_state())[:ITEMS])
    children: list[Child] = []
    slack = BenchSlack()
    async with (
        postgres_database(admin_url) as database,
        http_session() as http,
        slack,
    ):
        rig: Bench | None = None
        erm: BareErm | None = None
        try:
            sandbox, erm_base = await start_erm(REPO, logs)
            children.append(sandbox)
            erm = BareErm(f"{erm_base}/graphql", ACME.email, ACME.password, items)
            await erm.sign_in()
            env = {
                **bot_environment(erm_base, database, "INFO"),
                "SLACK_BOT_TOKEN": slack.bot_token,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": slack.api_url,
            }
            # Grants for every worker (WhatsApp senders and a Telegram chat are granted too:
            # harmless, and the preparation stays the one python -m bench uses).
            await prepare_database(env, max(concurrency, WARM_UP_CONCURRENCY), chats=1)
            rig = Bench(http, slack, erm, sandbox, items, DaysAllocator(), env, logs, workdir)
            yield rig
        finally:
            for child in [*(rig.bots if rig else []), *reversed(children)]:
                await child.stop()
            if erm is not None:
                await erm.aclose()


def _log_problems(child: Child) -> int:
    text = child.log_path.read_text(errors="replace")
    return len(re.findall(r"^.*(?:\bERROR\b|Traceback).*$", text, flags=re.MULTILINE))


@dataclass
class Outcome:
    cells: list[Cell]
    code_commands: int = 0
    bot_rows: int = 0
    bot_repeats: list[str] = field(default_factory=list)
    exit_statuses: list[int | None] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        one, two = self.cells[0].slack.throughput, self.cells[-1].slack.throughput
        return two / one if one else float("nan")

    @property
    def ceiling(self) -> float:
        """Commands/s the whole machine could serve at one process's CPU cost per command (the
        bot's, the stand-in's, the harness's, PostgreSQL's...), every core busy: what any number
        of bot processes can reach here, however well they scale."""
        cell = self.cells[0]
        per_command = cell.machine_cpu / len(cell.slack.e2e) if cell.slack.e2e else float("nan")
        return (os.cpu_count() or 1) / per_command if per_command else float("nan")

    @property
    def broken(self) -> bool:
        return (
            any(cell.broken for cell in self.cells)
            or bool(self.bot_repeats)
            or self.bot_rows != self.code_commands
        )


async def measure(args: argparse.Namespace) -> Outcome:
    outcome = Outcome([])
    with tempfile.TemporaryDirectory(prefix="erm-bot-scaling-") as tmp:
        async with bench(args.postgres, args.c, Path(tmp)) as rig:
            for _processes in (1, 2):  # each cell adds one process to the ones running
                await _set_latency(rig.http, rig.erm.url, 0)
                await rig.warm_up(await rig.start_bot())
                await _set_latency(rig.http, rig.erm.url, args.latency)
                outcome.cells.append(await rig.cell(args.n, args.c, args.latency))
                print(summary(outcome.cells[-1], args), flush=True)
            outcome.code_commands = rig.code_commands
            outcome.bot_rows, outcome.bot_repeats = await _bot_table(
                rig.env["ERM_BOT_DATABASE_URL"]
            )
            bots = rig.bots
        # Stopped by now (SIGTERM: each must exit 0 after finishing what it had in flight).
        outcome.exit_statuses = [bot.process.returncode for bot in bots]
        for cell in outcome.cells:
            cell.log_problems = sum(_log_problems(bot) for bot in bots[: cell.processes])
    return outcome


async def _set_latency(http: aiohttp.ClientSession, graphql_url: str, ms: int) -> None:
    url = graphql_url.removesuffix("/graphql") + "/_sandbox/faults"
    async with http.post(url, json={"latency_ms": ms}) as response:
        response.raise_for_status()


def summary(cell: Cell, args: argparse.Namespace) -> str:
    s = cell.slack
    word = "process" if cell.processes == 1 else "processes"
    return (
        f"scaling /code days c={args.c} n={args.n} erm+{args.latency}ms {cell.processes} {word}: "
        f"{s.throughput:.1f} commands/s, bot CPU {s.cpu_ms_per_command:.2f} ms/cmd, "
        f"machine CPU {cell.machine_busy:.2f} of {os.cpu_count()} cores "
        f"(ms/cmd: ERM stand-in {cell.per_command(cell.erm_cpu):.2f}, "
        f"harness {cell.per_command(cell.harness_cpu):.2f}, "
        f"rest {cell.per_command(cell.rest_cpu):.2f}), "
        f"{s.failed} failed, {s.wrong} wrong, {cell.answered_twice} answered twice, "
        f"ERM codes {cell.erm_codes} for {cell.answered} answers, "
        f"{len(cell.duplicates)} duplicates"
    )


def verdict(outcome: Outcome) -> str:
    ratio = outcome.ratio
    met = "met" if ratio >= TARGET else "NOT met"
    return (
        f"scaling ratio 2 processes / 1: {ratio:.2f}x (target >= {TARGET}x: {met}); "
        f"this machine has {os.cpu_count()} cores, shared by the bot processes, PostgreSQL, "
        f"the ERM stand-in and the load generator: at one process's CPU per command they "
        f"serve at most ~{outcome.ceiling:.0f} commands/s, "
        f"{outcome.ceiling / outcome.cells[0].slack.throughput:.2f}x one process"
    )


def problems(outcome: Outcome) -> list[str]:
    found = []
    for cell in outcome.cells:
        if cell.duplicates:
            found.append(
                f"DUPLICATE CODES with {cell.processes} process(es): {', '.join(cell.duplicates)}"
            )
        if cell.erm_codes != cell.answered:
            found.append(
                f"ERM made {cell.erm_codes} codes for {cell.answered} answered commands "
                f"with {cell.processes} process(es)"
            )
        if cell.slack.failed or cell.slack.wrong or cell.answered_twice:
            found.append(
                f"{cell.processes} process(es): {cell.slack.failed} unanswered, "
                f"{cell.slack.wrong} wrong, {cell.answered_twice} answered twice "
                f"{cell.slack.examples}"
            )
    if outcome.bot_repeats:
        found.append(f"DUPLICATE CODES in bot_issued_codes: {', '.join(outcome.bot_repeats)}")
    if outcome.bot_rows != outcome.code_commands:
        found.append(
            f"bot_issued_codes has {outcome.bot_rows} rows for {outcome.code_commands} "
            "answered /code days (warm-ups included)"
        )
    return found


def markdown(outcome: Outcome, args: argparse.Namespace) -> str:
    one = outcome.cells[0].slack.throughput
    rows = [
        "| erm-bot processes | commands/s | bot CPU ms/cmd | ERM stand-in / harness / rest "
        "CPU ms/cmd | machine CPU (cores busy) | ratio to one | unanswered / wrong "
        "| duplicate codes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in outcome.cells:
        s = cell.slack
        rows.append(
            f"| {cell.processes} | {s.throughput:.1f} | {s.cpu_ms_per_command:.2f} "
            f"| {cell.per_command(cell.erm_cpu):.2f} / {cell.per_command(cell.harness_cpu):.2f} "
            f"/ {cell.per_command(cell.rest_cpu):.2f} "
            f"| {cell.machine_busy:.2f} of {os.cpu_count()} | {s.throughput / one:.2f}x "
            f"| {s.failed} / {s.wrong} | {len(cell.duplicates)} |"
        )
    ratio = outcome.ratio
    return "\n".join(
        [
            "## Two processes on one database (issue 18)",
            "",
            f"`python -m bench.scaling -n {args.n} -c {args.c} --latency {args.latency}`: "
            f"signed `/code days` slash commands, {args.n} per cell from {args.c} closed-loop "
            f"workers, each command on its own item and days; ERM latency {args.latency} ms; "
            "erm-bot on a fresh PostgreSQL database. With two processes each worker sends its "
            "commands to them in turn.",
            "",
            *rows,
            "",
            f"Two processes serve {ratio:.2f}x the commands per second of one (target at least "
            f"{TARGET}x: {'met' if ratio >= TARGET else 'not met'}). The machine has "
            f"{os.cpu_count()} cores, shared by the bot processes, PostgreSQL, the ERM stand-in "
            "and the load generator; the machine CPU column says how much of them the cell used, "
            "and *rest* is the machine's CPU that none of the bench's processes used (PostgreSQL, "
            "the kernel, anything else running). At one process's CPU per command (all of it, "
            f"the machine's) the {os.cpu_count()} cores serve at most ~{outcome.ceiling:.0f} "
            f"commands/s, {outcome.ceiling / one:.2f}x one process: the most any number of "
            "processes can show here.",
            "",
            *(f"- **{line}**" for line in problems(outcome)),
            *([""] if problems(outcome) else []),
            f"No code issued twice: ERM's new code events equal the commands answered in each "
            f"cell, each (item, days) once, and `bot_issued_codes` holds {outcome.bot_rows} rows "
            f"for {outcome.code_commands} answered `/code days` (warm-ups included)"
            + (" (**but see the problems above**)." if problems(outcome) else "."),
            "",
        ]
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        required=True,
        help="a fresh database is created through ADMIN_URL (e.g. "
        "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres) and dropped afterwards",
    )
    parser.add_argument("-n", type=int, default=400, help="commands per cell (default 400)")
    parser.add_argument("-c", type=int, default=50, help="concurrent workers (default 50)")
    parser.add_argument(
        "--latency", type=int, default=0, help="added ERM latency in ms during the cells (0)"
    )
    parser.add_argument("--out", type=Path, help="write a markdown section for RESULTS.md here")
    args = parser.parse_args(argv)
    if not 1 <= args.c <= ITEMS:
        parser.error(f"-c: every worker needs an item of its own (1 to {ITEMS})")
    if args.n < 1:
        parser.error("-n: at least one command")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    print(f"this machine has {os.cpu_count()} cores", flush=True)
    outcome = asyncio.run(measure(args))
    print(verdict(outcome))
    found = problems(outcome)
    for line in found:
        print(f"!!! {line}")
    if any(status != 0 for status in outcome.exit_statuses):
        print(f"note: erm-bot exit statuses after SIGTERM: {outcome.exit_statuses}")
    logged = [cell.log_problems for cell in outcome.cells]
    if any(logged):
        print(f"note: ERROR or Traceback lines in the bot logs (1, then 2 processes): {logged}")
    if args.out is not None:
        args.out.write_text(markdown(outcome, args))
        print(f"section written to {args.out}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
