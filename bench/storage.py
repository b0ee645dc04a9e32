"""``python -m bench.storage``: the database work of one ``/code days``, in process, by step.

It runs, N times, exactly the transactions the dispatcher and the code command make for a days
code (claim with grants, rate limits and approval policy; item lock with the duplicate check and
the request's intent, before ERM is asked; after it, the code's record, the intent's close and the
lock's release with the stored reply and the audit row), through the real stores, and
prints the CPU time of each step and of the whole per command, and on PostgreSQL its round trips
to the server (statements, plus BEGIN and COMMIT). No HTTP, no ERM: this is the part of a command
that is erm-bot's own storage, and what ``findings.md`` quotes.

    .venv/bin/python -m bench.storage                   # SQLite file in a temporary directory
    .venv/bin/python -m bench.storage --postgres postgresql+asyncpg://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event

from bench.database import postgres_database
from bot.audit import AuditEntry, AuditLog
from bot.intents import Intent, IntentState, IntentStore
from bot.messages import Identity
from bot.people import PeopleStore
from bot.storage.approvals import ApprovalStore
from bot.storage.base import migrate
from bot.storage.code_records import IssuedCodeRecord, RecentQuery
from bot.storage.codes import CodeStore
from bot.storage.limits import RateLimiter
from bot.storage.requests import RequestStore
from erm.db import create_engine, transaction
from erm.secret_box import SecretBox

STEPS = (
    "claim + grants + rate limits + policy",
    "lock + duplicate check + intent",
    "record + intent closed + unlock + reply + audit",
)


TRIPS_COUNTED = 20  # commands whose round trips are counted, after the timed ones


async def measure(url: str, n: int) -> tuple[dict[str, float], dict[str, float]]:
    """CPU milliseconds and round trips per command, by step and in total (``"total"``).

    The round trips are counted by SQLAlchemy event listeners, which cost CPU themselves: they
    listen only to :data:`TRIPS_COUNTED` more commands, after the timed ones.
    """
    engine = create_engine(url)
    trips = [0]

    def count(*_args: object) -> None:
        trips[0] += 1

    try:
        await migrate(engine)
        box = SecretBox([SecretBox.generate_key()])  # codes and fingerprints cost what they do
        requests, rate = RequestStore(engine, box=box), RateLimiter(engine)
        codes, audit = CodeStore(engine, box=box), AuditLog(engine, box=box)
        intents = IntentStore(engine)
        policies, people = ApprovalStore(engine), PeopleStore(engine)
        identity = Identity("slack", "UBENCH")
        spent: dict[str, float] = dict.fromkeys(STEPS, 0.0)
        made: dict[str, int] = dict.fromkeys(STEPS, 0)

        @contextmanager
        def step(name: str) -> Iterator[None]:
            started, before = time.process_time(), trips[0]
            yield
            spent[name] += time.process_time() - started
            made[name] += trips[0] - before

        run = f"{time.time_ns():x}"

        async def one(key: str, item: str, now: datetime) -> None:
            with step(STEPS[0]):
                await transaction(
                    engine,
                    lambda c: (
                        requests.claim_in(c, key, "f" * 64, now),
                        people.known.within(c, identity),  # grants of the person, and who
                        rate.hit.within(c, "codes:user", "slack:UBENCH", 10**9, 3600, now),
                        rate.hit.within(c, "codes:dist", "acme", 10**9, 3600, now),
                        policies.policy.within(c, "acme"),
                    ),
                )
            recent = RecentQuery("DAYSCODE", 30, now - timedelta(minutes=10))
            record = IssuedCodeRecord(
                distributor="acme",
                item_id=item,
                item_label=item,
                code_type="DAYSCODE",
                days=30,
                code_dec="123456789",
                code_hex="75bcd15",
                issued_by_platform="slack",
                issued_by_user="UBENCH",
                issued_by_name="bench",
                request_key=key,
                issued_at=now,
            )
            intent = Intent(
                distributor="acme",
                item_id=item,
                oem_item_id=item,
                item_label=item,
                code_type="DAYSCODE",
                days=30,
                note=None,
                reference=key[-8:],
                request_key=key,
                approval_id=None,
                command="code",
                requester_platform="slack",
                requester_user="UBENCH",
                requester_name="bench",
                chat_id="DBENCH",
                notify_user="UBENCH",
                started_at=now,
            )
            entry = AuditEntry(
                at=now,
                platform="slack",
                user_id="UBENCH",
                command="code",
                outcome="ok",
                erm_code_event=record.code_dec,
            )
            started, before = time.process_time(), trips[0]
            async with codes.item_lock(
                "acme", item, key, recent=recent, also=lambda c: intents.begin_in(c, intent)
            ) as lock:
                spent[STEPS[1]] += time.process_time() - started
                made[STEPS[1]] += trips[0] - before
                begun = lock.also
                assert isinstance(begun, Intent), begun
                codes.keep(lock)  # given back with the record, as the code command does
            with step(STEPS[2]):
                values = codes.record_values(record)
                await transaction(
                    engine,
                    lambda c: (
                        codes.record_in(
                            c,
                            values,
                            release=lock,
                            also=lambda c: intents.close_in(
                                c, begun, IntentState.DELIVERED, now=now
                            ),
                        ),
                        requests.finish.within(c, key, {"title": "30-day code"}, now),
                        audit.append.within(c, entry),
                    ),
                )

        for i in range(n):
            await one(f"bench:{run}:{i}", f"item-{run}-{i}", datetime.now(UTC))
        timed = dict(spent)
        made.update(dict.fromkeys(STEPS, 0))
        for name in ("before_cursor_execute", "begin", "commit", "rollback"):
            event.listen(engine.sync_engine, name, count)
        for i in range(n, n + TRIPS_COUNTED):
            await one(f"bench:{run}:{i}", f"item-{run}-{i}", datetime.now(UTC))
    finally:
        await engine.dispose()
    figures = {name: 1e3 * timed[name] / n for name in STEPS}
    figures["total"] = sum(figures.values())
    round_trips = {name: made[name] / TRIPS_COUNTED for name in STEPS}
    round_trips["total"] = sum(round_trips.values())
    return figures, round_trips


@dataclass
class StorageResult:
    """One database's figures per ``/code days``: CPU ms and, on PostgreSQL, round trips."""

    database: str  # "SQLite" or "PostgreSQL"
    n: int
    cpu_ms: dict[str, float]  # by step, and "total"
    round_trips: dict[str, float] | None  # None on SQLite: in process, nothing to count

    @property
    def where(self) -> str:
        return "SQLite file" if self.database == "SQLite" else self.database

    def lines(self) -> list[str]:
        out = []
        for name, ms in self.cpu_ms.items():
            # SQLite runs in process: there is no trip to count (and its own engine is not seen).
            trips = self.round_trips
            counted = f", {trips[name]:.1f} round trips" if trips is not None else ""
            out.append(
                f"storage /code days {self.where} {name}: {ms:.2f} ms CPU{counted} per command"
            )
        return out


async def measure_on(n: int, postgres: str | None = None) -> StorageResult:
    """:func:`measure` on a SQLite file in a temporary directory, or on a fresh PostgreSQL
    database made through the admin URL ``postgres`` (and dropped)."""
    if postgres:
        async with postgres_database(postgres) as url:
            figures, trips = await measure(url, n)
        return StorageResult("PostgreSQL", n, figures, trips)
    with tempfile.TemporaryDirectory(prefix="erm-bot-storage-") as tmp:
        figures, _ = await measure(f"sqlite:///{Path(tmp) / 'bench.db'}", n)
    return StorageResult("SQLite", n, figures, None)


def markdown(results: Sequence[StorageResult]) -> str:
    """A section for ``RESULTS.md``: CPU ms (and round trips) per step, databases side by side."""
    head = ["| step |"]
    for result in results:
        head.append(f" {result.database} CPU ms |")
        if result.round_trips is not None:
            head.append(f" {result.database} round trips |")
    rows = ["".join(head), "|---|" + "---:|" * (len(head) - 1)]
    for name in [*STEPS, "total"]:
        cells = [f"| {name} |"]
        for result in results:
            cells.append(f" {result.cpu_ms[name]:.2f} |")
            if result.round_trips is not None:
                cells.append(f" {result.round_trips[name]:.1f} |")
        rows.append("".join(cells))
    counts = ", ".join(f"{r.database} {r.n}" for r in results)
    return "\n".join(
        [
            "## Storage per `/code days` (in process)",
            "",
            "`python -m bench.storage [--postgres URL]`: the transactions the dispatcher and the "
            "code command make for one days code, through the real stores, with no HTTP and no "
            f"ERM ({counts} commands). CPU ms is this process's CPU time per command; round trips "
            f"(statements, BEGIN and COMMIT sent to the server) are counted on {TRIPS_COUNTED} "
            "more commands. SQLite runs in process: nothing to count.",
            "",
            *rows,
            "",
        ]
    )


async def _main(args: argparse.Namespace) -> None:
    result = await measure_on(args.n, args.postgres)
    for line in result.lines():
        print(line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="commands (default 1000)")
    parser.add_argument("--postgres", help="an admin URL; a fresh database is made and dropped")
    asyncio.run(_main(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
