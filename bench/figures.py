"""The figures of a benchmark run: what one pass holds, what the whole run holds, and the small
helpers every part of the report uses (pairs of cells, ratios, formatting)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from bench.common import percentile
from bench.scaling import Outcome, problems
from bench.slack_bench import SlackCell
from bench.storage import StorageResult
from bench.telegram_bench import TelegramCell
from bench.whatsapp_bench import WhatsAppCell

OURS = "erm-bot"
SLACK_BASE = "bare bolt"
TELEGRAM_BASE = "bare PTB"
WHATSAPP_BASE = "bare pywa"
COMMANDS = {"code": "/code days", "history": "/history"}
SQLITE = "SQLite"
POSTGRES = "PostgreSQL"

RSS_LIMIT_MB = 150.0
# Issue 18: at a realistic ERM latency, a known item's /code days costs ERM's latency plus this.
REALISTIC_OVERHEAD_S = 0.015


@dataclass
class Results:
    """One pass of ``python -m bench``: every cell on one database, with its own baselines."""

    machine: dict[str, str]
    settings: dict[str, str]
    slack: list[SlackCell] = field(default_factory=list)
    realistic: list[SlackCell] = field(default_factory=list)  # Slack /code days at ERM +250 ms
    telegram: list[TelegramCell] = field(default_factory=list)
    whatsapp: list[WhatsAppCell] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    log_problems: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    duration: float = float("nan")
    database: str = SQLITE  # what erm-bot ran on in this pass: SQLITE or POSTGRES

    @property
    def broken(self) -> bool:
        """A command went unanswered or was answered wrongly in some cell."""
        return (
            any(c.failed or c.wrong for c in [*self.slack, *self.realistic])
            or any(c.timed_out or c.wrong for c in self.telegram)
            or any(c.timed_out or c.failed or c.wrong for c in self.whatsapp)
        )


@dataclass
class Report:
    """Everything one ``python -m bench`` measured: a pass per database (SQLite first), the
    in-process storage figures per database, and the two-process cell (PostgreSQL only)."""

    passes: list[Results]
    storage: list[StorageResult] = field(default_factory=list)
    scaling: Outcome | None = None
    scaling_args: argparse.Namespace | None = None  # n, c, latency, as bench.scaling takes them
    postgres_skipped: str | None = None  # why the PostgreSQL cells did not run (None: they did)
    durations: dict[str, float] = field(default_factory=dict)  # part -> seconds
    errors: list[str] = field(default_factory=list)  # parts that failed after the first pass

    @property
    def databases(self) -> list[str]:
        """The databases a reader should see a column for (a skipped PostgreSQL too)."""
        found = [r.database for r in self.passes]
        found += [s.database for s in self.storage if s.database not in found]
        if (self.postgres_skipped or self.scaling is not None) and POSTGRES not in found:
            found.append(POSTGRES)
        return found

    @property
    def broken(self) -> bool:
        """A command failed or was wrong in a pass, a part failed, or the two-process cell found a
        problem."""
        return (
            any(r.broken for r in self.passes)
            or bool(self.errors)
            or bool(self.scaling is not None and problems(self.scaling))
        )


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def ratio(ours: float, base: float) -> float:
    return ours / base if base and not math.isnan(base) else float("nan")


def rx(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def per(value: float) -> str:
    """ERM calls per command."""
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def slack_pair(
    cells: Sequence[SlackCell], command: str, latency: int, concurrency: int
) -> tuple[SlackCell, SlackCell] | None:
    found = {
        c.system: c
        for c in cells
        if (c.command, c.latency_ms, c.concurrency) == (command, latency, concurrency)
    }
    if OURS in found and SLACK_BASE in found:
        return found[OURS], found[SLACK_BASE]
    return None


def tg_pair(
    cells: Sequence[TelegramCell], command: str, latency: int
) -> tuple[TelegramCell, TelegramCell] | None:
    found = {c.system: c for c in cells if (c.command, c.latency_ms) == (command, latency)}
    if OURS in found and TELEGRAM_BASE in found:
        return found[OURS], found[TELEGRAM_BASE]
    return None


def wa_pair(
    cells: Sequence[WhatsAppCell], command: str, latency: int, senders: int
) -> tuple[WhatsAppCell, WhatsAppCell] | None:
    found = {
        c.system: c
        for c in cells
        if (c.command, c.latency_ms, c.senders) == (command, latency, senders)
    }
    if OURS in found and WHATSAPP_BASE in found:
        return found[OURS], found[WHATSAPP_BASE]
    return None


def wa_keys(cells: Sequence[WhatsAppCell]) -> list[tuple[str, int, int]]:
    return sorted(
        {(c.command, c.latency_ms, c.senders) for c in cells}, key=lambda k: (k[1], k[0], k[2])
    )


def slack_keys(cells: Iterable[SlackCell]) -> list[tuple[str, int]]:
    return sorted({(c.command, c.latency_ms) for c in cells}, key=lambda k: (k[1], k[0]))


SLACK_FIGURES: tuple[tuple[str, Callable[[SlackCell], float], bool], ...] = (
    ("ack p50", lambda c: percentile(c.ack, 50), True),
    ("ack p95", lambda c: percentile(c.ack, 95), True),
    ("ack p99", lambda c: percentile(c.ack, 99), True),
    ("end-to-end p50", lambda c: percentile(c.e2e, 50), True),
    ("end-to-end p95", lambda c: percentile(c.e2e, 95), True),
    ("end-to-end p99", lambda c: percentile(c.e2e, 99), True),
    ("throughput", lambda c: c.throughput, False),
)


def tg_order(cell: TelegramCell) -> str:
    if cell.in_order:
        return "yes"
    return f"{cell.chats_in_order}/{cell.chats} chats"


def wa_order(cell: WhatsAppCell) -> str:
    if cell.in_order:
        return "yes"
    return f"{cell.senders_in_order}/{cell.senders} senders"
