"""The audit log: a hash chain that shows edited, deleted and reordered rows; search; CSV export."""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.audit import CSV_COLUMNS, GENESIS_HASH, AuditEntry, AuditLog, AuditRecord, row_hash
from bot.storage.base import migrate

if TYPE_CHECKING:
    from support import TestDatabase

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def bot_engine(engine: AsyncEngine) -> AsyncEngine:
    """The test database with the bot's tables too."""
    await migrate(engine)
    return engine


@pytest.fixture
def audit(bot_engine: AsyncEngine) -> AuditLog:
    return AuditLog(bot_engine)


def entry(n: int = 0, **changes: Any) -> AuditEntry:
    base = AuditEntry(
        at=T0 + timedelta(seconds=n),
        platform="slack",
        chat_id="C1",
        user_id="U1",
        user_name="Ada",
        command="code days",
        arguments=f"item=TEST2503000017 days={n + 1}",
        outcome="ok",
        detail="DAYSCODE issued",
        distributor="acme",
        item_id="65f0c0ffee0000000000000a",
        erm_code_event="0a1b2c3d",
        approval_id=None,
        request_key=f"slack:trigger:{n}",
    )
    return replace(base, **changes)


async def append_many(audit: AuditLog, count: int) -> list[AuditRecord]:
    return [await audit.append(entry(n)) for n in range(count)]


async def tamper(engine: AsyncEngine, statement: str, **params: Any) -> None:
    """Change the log behind the bot's back, as someone with write access to the database could."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.exec_driver_sql("ALTER TABLE bot_audit_log DISABLE TRIGGER USER")
        else:
            await connection.exec_driver_sql("DROP TRIGGER IF EXISTS bot_audit_log_no_update")
            await connection.exec_driver_sql("DROP TRIGGER IF EXISTS bot_audit_log_no_delete")
        await connection.execute(text(statement), params)


async def test_append_chains_rows_from_the_genesis_hash(audit: AuditLog) -> None:
    records = await append_many(audit, 3)

    assert [r.id for r in records] == [1, 2, 3]
    assert records[0].prev_hash == GENESIS_HASH
    assert records[1].prev_hash == records[0].hash
    assert records[2].prev_hash == records[1].hash
    assert records[0].command == "code days"
    assert records[0].at == T0


async def test_hash_covers_the_fields_and_prev_hash(audit: AuditLog) -> None:
    [record] = await append_many(audit, 1)
    fields = {name: getattr(record, name) for name in CSV_COLUMNS[1:-2]}

    assert row_hash(1, fields, GENESIS_HASH) == record.hash
    assert row_hash(1, fields | {"outcome": "denied"}, GENESIS_HASH) != record.hash
    assert row_hash(1, fields, "1" * 64) != record.hash
    assert row_hash(2, fields, GENESIS_HASH) != record.hash


async def test_verify_accepts_an_untouched_log(audit: AuditLog) -> None:
    records = await append_many(audit, 5)

    verdict = await audit.verify()

    assert (verdict.ok, verdict.rows, verdict.first_bad_id, verdict.problem) == (
        True,
        5,
        None,
        None,
    )
    assert verdict.last_hash == records[-1].hash


async def test_verify_accepts_an_empty_log(audit: AuditLog) -> None:
    verdict = await audit.verify()
    assert (verdict.ok, verdict.rows, verdict.last_hash) == (True, 0, None)


async def test_verify_reports_an_edited_row(audit: AuditLog, bot_engine: AsyncEngine) -> None:
    await append_many(audit, 5)
    await tamper(bot_engine, "UPDATE bot_audit_log SET outcome = 'denied' WHERE id = 3")

    verdict = await audit.verify()

    assert (verdict.ok, verdict.first_bad_id) == (False, 3)
    assert verdict.problem is not None
    assert "row 3 was changed" in verdict.problem


async def test_verify_reports_an_edited_time(audit: AuditLog, bot_engine: AsyncEngine) -> None:
    await append_many(audit, 3)
    await tamper(
        bot_engine, "UPDATE bot_audit_log SET at = :at WHERE id = 2", at=T0 - timedelta(days=1)
    )

    verdict = await audit.verify()

    assert (verdict.ok, verdict.first_bad_id) == (False, 2)


async def test_verify_reports_a_row_rewritten_with_a_fresh_hash(
    audit: AuditLog, bot_engine: AsyncEngine
) -> None:
    records = await append_many(audit, 4)
    forged = replace(records[1], outcome="denied")
    fields = {name: getattr(forged, name) for name in CSV_COLUMNS[1:-2]}
    forged_hash = row_hash(2, fields, forged.prev_hash)
    await tamper(
        bot_engine,
        "UPDATE bot_audit_log SET outcome = 'denied', hash = :hash WHERE id = 2",
        hash=forged_hash,
    )

    verdict = await audit.verify()

    assert (verdict.ok, verdict.first_bad_id) == (False, 3)
    assert verdict.problem is not None
    assert "prev_hash" in verdict.problem


async def test_verify_reports_a_deleted_row(audit: AuditLog, bot_engine: AsyncEngine) -> None:
    await append_many(audit, 5)
    await tamper(bot_engine, "DELETE FROM bot_audit_log WHERE id = 3")

    verdict = await audit.verify()

    assert (verdict.ok, verdict.first_bad_id) == (False, 4)
    assert verdict.problem is not None
    assert "row 3 is missing" in verdict.problem


async def test_verify_reports_a_deleted_first_row(audit: AuditLog, bot_engine: AsyncEngine) -> None:
    await append_many(audit, 3)
    await tamper(bot_engine, "DELETE FROM bot_audit_log WHERE id = 1")

    verdict = await audit.verify()

    assert (verdict.ok, verdict.first_bad_id) == (False, 2)


async def test_verify_reports_a_deleted_and_renumbered_row(
    audit: AuditLog, bot_engine: AsyncEngine
) -> None:
    await append_many(audit, 4)
    await tamper(bot_engine, "DELETE FROM bot_audit_log WHERE id = 2")
    await tamper(bot_engine, "UPDATE bot_audit_log SET id = id - 1 WHERE id = 3")

    verdict = await audit.verify()

    assert (verdict.ok, verdict.first_bad_id) == (False, 2)


async def test_verify_reports_reordered_rows(audit: AuditLog, bot_engine: AsyncEngine) -> None:
    await append_many(audit, 4)
    await tamper(bot_engine, "UPDATE bot_audit_log SET id = 100 WHERE id = 2")
    await tamper(bot_engine, "UPDATE bot_audit_log SET id = 2 WHERE id = 3")
    await tamper(bot_engine, "UPDATE bot_audit_log SET id = 3 WHERE id = 100")

    verdict = await audit.verify()

    assert (verdict.ok, verdict.first_bad_id) == (False, 2)


async def test_the_database_refuses_to_change_or_delete_audit_rows(
    audit: AuditLog, bot_engine: AsyncEngine
) -> None:
    await append_many(audit, 1)

    for statement in (
        "UPDATE bot_audit_log SET outcome = 'denied'",
        "DELETE FROM bot_audit_log",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with bot_engine.begin() as connection:
                await connection.execute(text(statement))

    assert (await audit.verify()).rows == 1


async def test_concurrent_appends_keep_one_chain(
    database: TestDatabase, bot_engine: AsyncEngine
) -> None:
    other = database.create_engine()
    try:
        logs = [AuditLog(bot_engine), AuditLog(other)]
        records = await asyncio.gather(*(logs[n % 2].append(entry(n)) for n in range(20)))
    finally:
        await other.dispose()

    assert sorted(r.id for r in records) == list(range(1, 21))
    verdict = await AuditLog(bot_engine).verify()
    assert (verdict.ok, verdict.rows) == (True, 20)


async def test_long_and_odd_values_are_cut_and_still_verify(audit: AuditLog) -> None:
    record = await audit.append(
        entry(arguments="x" * 5000, user_name="A\x00da " * 50, detail="bad \udcff surrogate")
    )

    assert len(record.arguments) == 2000
    assert record.user_name is not None
    assert len(record.user_name) == 128
    assert "\x00" not in record.user_name
    assert (await audit.verify()).ok
    [stored] = await audit.recent()
    assert stored == record


async def test_append_refuses_a_naive_time(audit: AuditLog) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await audit.append(entry(at=datetime(2025, 6, 1, 12, 0)))


async def test_recent_is_newest_first_and_filters(audit: AuditLog) -> None:
    await audit.append(entry(0))
    await audit.append(entry(1, item_id="other-item"))
    await audit.append(entry(2, platform="telegram", user_id="42", distributor="beta"))
    await audit.append(entry(3))

    assert [r.id for r in await audit.recent()] == [4, 3, 2, 1]
    assert [r.id for r in await audit.recent(limit=2)] == [4, 3]
    assert [r.id for r in await audit.recent(item_id="other-item")] == [2]
    assert [r.id for r in await audit.recent(user=("telegram", "42"))] == [3]
    assert [r.id for r in await audit.recent(distributor="acme")] == [4, 2, 1]


async def test_export_csv_round_trips_every_row(audit: AuditLog) -> None:
    records = await append_many(audit, 3)
    records.append(await audit.append(entry(3, chat_id=None, detail='comma, "quote"\nnewline')))
    out = io.StringIO(newline="")

    count = await audit.export_csv(out)

    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert count == len(rows) == 4
    assert tuple(rows[0]) == CSV_COLUMNS
    for row, record in zip(rows, records, strict=True):
        assert row == {name: _cell(getattr(record, name)) for name in CSV_COLUMNS}
    # The chain can be checked from the file alone.
    for row in rows:
        fields: dict[str, Any] = {name: row[name] or None for name in CSV_COLUMNS[1:-2]}
        fields |= {name: row[name] for name in ("arguments", "detail")}
        assert row_hash(int(row["id"]), fields, row["prev_hash"]) == row["hash"]


async def test_export_csv_keeps_to_the_time_range(audit: AuditLog) -> None:
    await append_many(audit, 5)
    out = io.StringIO(newline="")

    count = await audit.export_csv(
        out, since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=3)
    )

    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert count == 2
    assert [row["id"] for row in rows] == ["2", "3"]


async def test_export_of_an_empty_log_is_the_header(audit: AuditLog) -> None:
    out = io.StringIO(newline="")
    assert await audit.export_csv(out) == 0
    assert out.getvalue().strip() == ",".join(CSV_COLUMNS)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return str(value)
