"""Run the benchmarks: start the processes, warm up, measure every cell, write the results.

Processes (2 cores here, so placement matters):

- this one: the load generator, the fake Slack (one, shared), two fake Telegram Bot APIs (one
  per bot, so two pollers never conflict) and two fake WhatsApp Graph APIs (one per app), all on
  one event loop;
- the ERM sandbox (``bench.erm_server``), alone, so its GraphQL work does not delay the load
  generator's clock readings;
- the system under test, ``erm-bot serve`` (Slack and WhatsApp webhooks over HTTP and Telegram by
  long polling in one process; a SQLite file in a temporary directory, or a fresh PostgreSQL
  database in the PostgreSQL pass), configured only by its environment;
- the baselines: a bare bolt ``AsyncApp`` under uvicorn, a bare PTB ``Application`` and a bare
  pywa_async app under uvicorn.

Cells are interleaved (erm-bot and the baseline back to back, alternating who goes first) so
that a noisy neighbour hurts both sides of a ratio alike. Each cell also records the ERM calls its
commands cost (the sandbox counts GraphQL requests; the harness reads the count around the cell).
Right after the warm-up, a small "realistic ERM" cell runs Slack ``/code days`` at c=1 with
ERM answering 250 ms late, as a real ERM does, on items the warm-up made known.

That is one pass (:func:`measure`). ``python -m bench`` makes a pass on a SQLite file, then, where
PostgreSQL answers (``--postgres ADMIN_URL``, by default the local server), a second whole pass
on a fresh PostgreSQL database with baselines of its own, then ``bench.storage`` on each database
and ``bench.scaling``'s two-process cell (:func:`measure_all`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

from bench import scaling, storage
from bench.common import Child, ERMCalls, cpu_seconds, machine, no_gc_pauses, percentile
from bench.database import postgres_unreachable, shown
from bench.figures import POSTGRES, SQLITE
from bench.options import Options, parse_options
from bench.report import (
    OURS,
    SLACK_BASE,
    TELEGRAM_BASE,
    WHATSAPP_BASE,
    Report,
    Results,
    markdown,
    report_lines,
)
from bench.rig import WARM_UP_CONCURRENCY, WHATSAPP_WEBHOOK, Rig, rig
from bench.slack_bench import SlackCell, make_jobs, run_cell
from bench.telegram_bench import TelegramCell, plan
from bench.telegram_bench import run_cell as run_telegram_cell
from bench.whatsapp_bench import WhatsAppCell
from bench.whatsapp_bench import plan as whatsapp_plan
from bench.whatsapp_bench import run_cell as run_whatsapp_cell

FINDINGS = Path(__file__).with_name("findings.md")


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
            tg = await _telegram_cell(rig, system, "history", 0)
            if tg.timed_out or tg.wrong:
                raise RuntimeError(f"warm-up of {system} on Telegram failed: {tg.examples}")
    if "whatsapp" in rig.options.paths:
        for system in (OURS, WHATSAPP_BASE):
            senders = min(WARM_UP_CONCURRENCY, len(rig.pool))
            wa = await _whatsapp_cell(rig, system, "history", 0, senders, senders)
            if wa.timed_out or wa.wrong or wa.failed:
                raise RuntimeError(f"warm-up of {system} on WhatsApp failed: {wa.examples}")


def _log_problems(child: Child) -> int:
    text = child.log_path.read_text(errors="replace")
    return len(re.findall(r"^.*(?:\bERROR\b|Traceback).*$", text, flags=re.MULTILINE))


def _database(options: Options) -> str:
    """What erm-bot runs on in this pass: SQLITE or POSTGRES."""
    url = options.database_url or ""
    return POSTGRES if options.postgres or url.startswith("postgres") else SQLITE


async def measure(options: Options) -> Results:
    """One pass: every cell on one database (``options.postgres``, ``options.database_url`` or
    a SQLite file), each erm-bot cell paired with a baseline cell of the same pass."""
    started = time.monotonic()
    results = Results(
        database=_database(options),
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
                else f"given URL ({_database(options)})"
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


def _per_pass(options: Options, name: str, url: str | None, passes: int) -> Options:
    """The options of one pass: its database, and with two passes a workdir and a profile
    directory of its own (``DIR/sqlite``, ``DIR/postgresql``) so that neither overwrites the
    other's logs and stats."""

    def own(path: Path | None) -> Path | None:
        return path / name.lower() if path is not None and passes > 1 else path

    return replace(
        options, postgres=url, workdir=own(options.workdir), profile=own(options.profile)
    )


async def measure_all(options: Options) -> Report:
    """The SQLite pass (or the one ``--database-url``), then, where PostgreSQL answers, the
    PostgreSQL pass, bench.storage on each database and bench.scaling's two-process cell.

    A failure after the first pass is recorded (and makes the exit status 1) instead of ending
    the run: the minutes already measured still reach the results file.
    """
    report = Report([])
    unreachable = None
    if options.postgres_pass:
        # Asked before the SQLite pass, so that a machine without PostgreSQL says so at once.
        unreachable = await postgres_unreachable(options.postgres_pass)
        if unreachable:
            report.postgres_skipped = unreachable
            print(f"PostgreSQL cells skipped: {unreachable}", flush=True)
    admin = options.postgres_pass if not unreachable else None
    databases = [(SQLITE, None), *([(POSTGRES, admin)] if admin else [])]
    if options.database_url:
        databases = [(_database(options), None)]
    for name, url in databases:
        print(f"{name} pass" + (f" ({shown(url)})" if url else ""), flush=True)
        started = time.monotonic()
        async with _recorded(report, f"{name} pass", fatal=not report.passes):
            report.passes.append(await measure(_per_pass(options, name, url, len(databases))))
        report.durations[f"{name} pass"] = time.monotonic() - started
    if options.storage_n and not options.database_url:
        started = time.monotonic()
        for name, url in databases:
            print(f"storage /code days on {name}, n={options.storage_n}", flush=True)
            async with _recorded(report, f"storage on {name}"):
                report.storage.append(await storage.measure_on(options.storage_n, url))
        report.durations["storage"] = time.monotonic() - started
    if admin and options.scaling_n:
        started = time.monotonic()
        args = scaling.parse(
            ["--postgres", admin, "-n", str(options.scaling_n), "-c", str(options.scaling_c)]
        )
        async with _recorded(report, "two-process cell"):
            report.scaling = await scaling.measure(args)
            report.scaling_args = args
            print(scaling.verdict(report.scaling), flush=True)
        report.durations["two processes"] = time.monotonic() - started
    return report


@contextlib.asynccontextmanager
async def _recorded(report: Report, what: str, *, fatal: bool = False) -> AsyncIterator[None]:
    """Run a part; unless ``fatal``, an exception is printed and kept in ``report.errors``."""
    try:
        yield
    except Exception as exc:
        if fatal:
            raise
        traceback.print_exc()
        report.errors.append(f"{what} failed: {type(exc).__name__}: {exc}")
        print(f"!!! {report.errors[-1]}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    report = asyncio.run(measure_all(options))
    for line in report_lines(report):
        print(line)
    if options.out is not None:
        findings = FINDINGS.read_text() if FINDINGS.exists() else ""
        options.out.write_text(markdown(report, findings))
        print(f"results written to {options.out}")
    return 1 if report.broken else 0
