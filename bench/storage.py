"""``python -m bench.storage``: the database work of one ``/code days``, in process, by step.

It runs, N times, exactly the transactions the dispatcher and the code command make for a days
code (claim with grants, rate limits and approval policy; item lock with the duplicate check;
record with the lock's release; stored reply with the audit row), through the real stores, and
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event

from bench.run import postgres_database
from bot.audit import AuditEntry, AuditLog
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
    "lock + duplicate check",
    "record + unlock",
    "reply + audit",
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
            started, before = time.process_time(), trips[0]
            async with codes.item_lock("acme", item, key, recent=recent) as lock:
                spent[STEPS[1]] += time.process_time() - started
                made[STEPS[1]] += trips[0] - before
                with step(STEPS[2]):
                    await codes.record_issue(record, release=lock)  # the exit has nothing left
            entry = AuditEntry(
                at=now,
                platform="slack",
                user_id="UBENCH",
                command="code",
                outcome="ok",
                erm_code_event=record.code_dec,
            )
            with step(STEPS[3]):
                await transaction(
                    engine,
                    lambda c: (
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


async def _main(args: argparse.Namespace) -> None:
    if args.postgres:
        async with postgres_database(args.postgres) as url:
            figures, trips = await measure(url, args.n)
        where = "PostgreSQL"
    else:
        with tempfile.TemporaryDirectory(prefix="erm-bot-storage-") as tmp:
            figures, trips = await measure(f"sqlite:///{Path(tmp) / 'bench.db'}", args.n)
        where = "SQLite file"
    for name, ms in figures.items():
        # SQLite runs in process: there is no trip to count (and its own engine is not seen).
        counted = f", {trips[name]:.1f} round trips" if args.postgres else ""
        print(f"storage /code days {where} {name}: {ms:.2f} ms CPU{counted} per command")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage", description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="commands (default 1000)")
    parser.add_argument("--postgres", help="an admin URL; a fresh database is made and dropped")
    asyncio.run(_main(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
