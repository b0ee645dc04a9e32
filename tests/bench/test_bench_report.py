"""``RESULTS.md`` from fabricated figures (no process is started), the PostgreSQL probe and the
options that decide which databases ``python -m bench`` runs on."""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

from bench import scaling
from bench.common import ERMCalls
from bench.database import DEFAULT_ADMIN_URL, postgres_unreachable
from bench.figures import POSTGRES, SQLITE, Report, Results
from bench.report import markdown, report_lines
from bench.run import parse_options
from bench.slack_bench import SlackCell
from bench.storage import STEPS, StorageResult


def _slack(system: str, concurrency: int, per_second: float, ack_ms: float) -> SlackCell:
    cell = SlackCell(system, "code", 0, concurrency, sent=10)
    cell.ack = [ack_ms / 1000] * 10
    cell.e2e = [0.01] * 10
    cell.wall = 10 / per_second
    cell.cpu_seconds = 0.05
    cell.erm_calls = ERMCalls({"IssueDaysCode": 10}, measured=True)
    return cell


def _pass(database: str, ours_per_second: float) -> Results:
    results = Results(machine={"CPU": "test"}, settings={"erm-bot database": database})
    results.database = database
    for concurrency in (1, 50):
        results.slack.append(_slack("erm-bot", concurrency, ours_per_second, 1.0))
        results.slack.append(_slack("bare bolt", concurrency, 100.0, 10.0))
    results.peak_rss_mb = {"erm-bot": 90.0}
    results.duration = 12.0
    return results


def _storage(database: str, cpu_ms: float, trips: float | None) -> StorageResult:
    cpu = dict.fromkeys(STEPS, cpu_ms / len(STEPS))
    cpu["total"] = cpu_ms
    round_trips = None
    if trips is not None:
        round_trips = dict.fromkeys(STEPS, trips)
        round_trips["total"] = trips * len(STEPS)
    return StorageResult(database, 5, cpu, round_trips)


def _scaling(duplicate: bool = False) -> tuple[scaling.Outcome, argparse.Namespace]:
    cells = []
    for processes, per_second in ((1, 100.0), (2, 180.0)):
        cell = scaling.Cell(processes, _slack("erm-bot", 4, per_second, 1.0))
        cell.machine_cpu, cell.machine_busy = 0.2, 1.0
        cell.erm_cpu = cell.harness_cpu = 0.01
        cell.erm_codes = cell.answered
        if duplicate and processes == 2:
            cell.duplicates = ["item-1 30 days x2"]
        cells.append(cell)
    outcome = scaling.Outcome(cells, code_commands=20, bot_rows=20)
    return outcome, scaling.parse(["--postgres", DEFAULT_ADMIN_URL, "-n", "10", "-c", "4"])


def test_results_show_sqlite_and_postgresql_side_by_side() -> None:
    outcome, args = _scaling()
    report = Report(
        [_pass(SQLITE, 120.0), _pass(POSTGRES, 80.0)],
        storage=[_storage(SQLITE, 1.0, None), _storage(POSTGRES, 2.5, 1.0)],
        scaling=outcome,
        scaling_args=args,
    )

    text = markdown(report, "## Findings\n\nprofiled")

    assert "| target | wanted | SQLite | met (SQLite) | PostgreSQL | met (PostgreSQL) |" in text
    throughput = next(x for x in text.splitlines() if x.startswith("| Slack throughput |"))
    assert "c=50 1.20x" in throughput
    assert "c=50 0.80x" in throughput
    assert throughput.endswith(
        "| yes | /code days erm+0ms c=1 0.80x<br>/code days erm+0ms c=50 0.80x | **no** |"
    )
    assert "## Slack: SQLite and PostgreSQL side by side" in text
    assert (
        "| /code days | 0 ms | 50 | 120.0 | 1.20x | 0.10x | 80.0 | 0.80x **(< 1)** | 0.10x |"
        in text
    )
    assert "| 50 | SQLite | erm-bot |" in text
    assert "| 50 | PostgreSQL | bare bolt |" in text
    storage = next(x for x in text.splitlines() if x.startswith("| Storage CPU per"))
    assert "| 1.00 ms (in process: no round trips) | — |" in storage
    assert storage.endswith("| 2.50 ms<br>round trips per step: 1.0, 1.0, 1.0 (most 1.0, "
                            "3.0 per command) | yes |")  # fmt: skip
    ratio = next(x for x in text.splitlines() if "processes on one database: commands/s" in x)
    assert "| — | — | 1.80x (100.0 -> 180.0 commands/s)" in ratio
    assert ratio.endswith("| yes |")
    twice = next(x for x in text.splitlines() if "no code issued twice |" in x)
    assert "| yes<br>0 duplicate codes, 0 problems | yes |" in twice
    assert "## Storage per `/code days` (in process)" in text
    assert "| total | 1.00 | 2.50 | 3.0 |" in text
    assert "## Two processes on one database (issue 18)" in text
    assert "- erm-bot database: SQLite; then PostgreSQL" in text
    assert "- Peak RSS (VmHWM) of erm-bot (PostgreSQL pass): 90.0 MB" in text
    assert text.rstrip().endswith("profiled")
    assert not report.broken
    lines = report_lines(report)
    assert any(x.startswith("PostgreSQL: slack /code days erm+0ms c=50 throughput:") for x in lines)
    assert "storage /code days PostgreSQL total: 2.50 ms CPU, 3.0 round trips per command" in lines


def test_a_duplicate_code_in_the_two_process_cell_breaks_the_run() -> None:
    outcome, args = _scaling(duplicate=True)
    report = Report([_pass(SQLITE, 120.0)], scaling=outcome, scaling_args=args)

    assert report.broken
    assert any("DUPLICATE CODES" in line for line in report_lines(report))
    twice = next(x for x in markdown(report).splitlines() if "no code issued twice |" in x)
    assert twice.endswith("| **no** |")


def test_a_skipped_postgresql_is_said_where_its_figures_would_be() -> None:
    report = Report([_pass(SQLITE, 120.0)], postgres_skipped="127.0.0.1:1: refused")

    text = markdown(report)

    assert "| target | wanted | SQLite | met (SQLite) | PostgreSQL | met (PostgreSQL) |" in text
    assert "| not run | — |" in text
    scaled = next(x for x in text.splitlines() if "processes on one database: commands/s" in x)
    assert scaled.endswith("| — | — | not run | — |")
    assert "PostgreSQL skipped (127.0.0.1:1: refused)" in text
    assert "Not run: PostgreSQL did not answer (127.0.0.1:1: refused)." in text
    assert "side by side" not in text


def test_one_database_keeps_the_old_shape() -> None:
    text = markdown(_pass(SQLITE, 120.0))  # a single pass, as before: one column of figures

    assert "| target | wanted | SQLite | met (SQLite) |\n" in text
    assert "PostgreSQL" not in text


def test_the_probe_gives_up_quickly_on_a_closed_port() -> None:
    with socket.socket() as probe:  # a port nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()

    why = asyncio.run(postgres_unreachable(f"postgresql+asyncpg://postgres:pw@127.0.0.1:{port}/x"))

    assert why is not None
    assert f"127.0.0.1:{port}" in why
    assert "pw" not in why  # the password is never shown
    assert time.monotonic() - started < 5


def test_which_databases_a_run_uses() -> None:
    assert parse_options([]).postgres_pass == DEFAULT_ADMIN_URL
    assert parse_options(["--quick"]).postgres_pass is None
    assert parse_options(["--quick", "--postgres", "postgresql://x/y"]).postgres_pass == (
        "postgresql://x/y"
    )
    assert parse_options(["--no-postgres"]).postgres_pass is None
    assert parse_options(["--database-url", "sqlite:///x.db"]).postgres_pass is None
    assert parse_options(["--no-scaling"]).scaling_n == 0
    assert parse_options(["--scaling-n", "40"]).scaling_n == 40
