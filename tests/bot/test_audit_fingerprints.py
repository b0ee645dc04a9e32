"""The audit trail holds no usable code (issue 14, item 9): a keyed fingerprint and the last 3
digits instead; the CSV export cannot be made to run formulas. SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from approval_harness import pending_id, with_approvals, with_channel
from bot_harness import Bot
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.audit import CSV_COLUMNS, AuditEntry, AuditLog, csv_value, row_hash
from bot.storage.base import migrate
from erm.models import keypad_format
from erm.sandbox import OPEN_ACP1_OEM_ID, OPEN_OPENTOKEN_OEM_ID
from erm.secret_box import SecretBox

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CODE = "024413975593119504641"
FINGERPRINT = re.compile(r"fp:[0-9a-f]{8}\.[0-9a-f]{16}·…\d{3}")


def entry(n: int = 0, **changes: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "at": T0 + timedelta(seconds=n),
        "platform": "slack",
        "chat_id": "C1",
        "user_id": "U1",
        "user_name": "Ada",
        "command": "code days",
        "arguments": "item=TEST2503000017 days=30",
        "outcome": "ok",
        "detail": "DAYSCODE issued",
        "distributor": "acme",
        "item_id": "65f0c0ffee0000000000000a",
        "erm_code_event": CODE,
        "request_key": f"slack:trigger:{n}",
    }
    return AuditEntry(**(values | changes))


@pytest.fixture
async def bot_engine(engine: AsyncEngine) -> AsyncEngine:
    await migrate(engine)
    return engine


async def test_a_code_is_stored_as_its_fingerprint_and_last_three_digits(
    bot_engine: AsyncEngine, secret_box: SecretBox
) -> None:
    log = AuditLog(bot_engine, box=secret_box)

    stored = await log.append(entry())

    assert stored.erm_code_event is not None
    assert FINGERPRINT.fullmatch(stored.erm_code_event)
    assert stored.erm_code_event.endswith("·…641")
    assert secret_box.matches(CODE, stored.erm_code_event) is True
    assert secret_box.matches(keypad_format(CODE), stored.erm_code_event) is True
    assert secret_box.matches("024413975593119504642", stored.erm_code_event) is False
    other_keys = SecretBox([SecretBox.generate_key()])
    assert other_keys.matches(CODE, stored.erm_code_event) is None  # made under another key
    assert other_keys.fingerprint(CODE) != stored.erm_code_event  # keyed: no table of codes
    async with bot_engine.connect() as connection:
        raw = await connection.scalar(text("SELECT erm_code_event FROM bot_audit_log"))
    assert raw == stored.erm_code_event
    assert (await log.verify()).ok


async def test_without_keys_only_the_last_three_digits_are_kept(bot_engine: AsyncEngine) -> None:
    stored = await AuditLog(bot_engine).append(entry())
    assert stored.erm_code_event == "…641"


async def test_a_fingerprint_is_kept_as_given_after_rotation(
    bot_engine: AsyncEngine, secret_box: SecretBox, secret_keys: list[str]
) -> None:
    """Rows are never rewritten: one made under the old key stays checkable while it is kept."""
    first = await AuditLog(bot_engine, box=secret_box).append(entry(0))
    rotated = SecretBox([SecretBox.generate_key(), *secret_keys])
    assert first.erm_code_event is not None

    again = await AuditLog(bot_engine, box=rotated).append(
        entry(1, erm_code_event=first.erm_code_event)
    )

    assert again.erm_code_event == first.erm_code_event
    assert rotated.matches(CODE, first.erm_code_event) is True


# -- CSV ----------------------------------------------------------------------------------------

HOSTILE = ['=HYPERLINK("http://x.test","pay")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "'=x"]


async def test_export_neutralises_cells_a_spreadsheet_would_run(
    bot_engine: AsyncEngine, secret_box: SecretBox
) -> None:
    log = AuditLog(bot_engine, box=secret_box)
    for n, name in enumerate(HOSTILE):
        await log.append(entry(n, user_name=name, detail=name, arguments=name))
    out = io.StringIO(newline="")

    await log.export_csv(out)

    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert [row["user_name"] for row in rows] == ["'" + name for name in HOSTILE]
    for row in rows:
        for name in CSV_COLUMNS:
            assert not row[name].startswith(("=", "+", "-", "@", "\t", "\r")), (name, row[name])
    # The chain is still checked from the file alone, each cell read with csv_value.
    for row in rows:
        fields: dict[str, Any] = {n: csv_value(row[n]) or None for n in CSV_COLUMNS[1:-2]}
        fields |= {n: csv_value(row[n]) for n in ("arguments", "detail")}
        assert row_hash(int(row["id"]), fields, row["prev_hash"]) == row["hash"]


# -- a whole flow -------------------------------------------------------------------------------


def all_forms(bot: Bot) -> set[str]:
    """Every code ERM made for the test items, as digits, keypad form and hex."""
    found: set[str] = set()
    for oem in (OPEN_ACP1_OEM_ID, OPEN_OPENTOKEN_OEM_ID):
        for event in bot.sandbox.item_by_oem_id(oem).code_generator.events:
            digits = re.sub(r"\D", "", event.code_dec_string)
            if digits:
                found |= {digits, keypad_format(digits), keypad_format(digits).replace(" ", "")}
            if event.code_hex_string.strip("-"):
                found |= {event.code_hex_string, event.code_hex_string.lower()}
    return found


async def test_no_code_issued_in_a_flow_reaches_the_audit_table_or_its_export(
    any_bot: Bot,
) -> None:
    bot = with_approvals(any_bot)
    await with_channel(bot)
    shown: list[str] = []
    for user, command in (
        ("agent", f"/code days {OPEN_ACP1_OEM_ID} 3"),
        ("agent", f"/code days {OPEN_ACP1_OEM_ID} 3"),  # the same code shown again
        ("agent", f"/code days {OPEN_ACP1_OEM_ID} 3 --again"),
        ("agent", f"/code days {OPEN_OPENTOKEN_OEM_ID} 2"),
        ("supervisor", f"/code free {OPEN_OPENTOKEN_OEM_ID} paid off"),
        ("agent", f"/resend {OPEN_ACP1_OEM_ID}"),
    ):
        reply = await bot.say(user, command)
        assert reply.codes, reply.text()
        shown += [code.digits for code in reply.codes]
    approval = pending_id(await bot.say("agent", f"/code reset {OPEN_ACP1_OEM_ID} broken"))
    await bot.say("supervisor", f"/approvals approve {approval}")
    codes = all_forms(bot)
    assert set(shown) <= codes  # the forms below cover what people saw

    async with bot.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM bot_audit_log"))).all()
    out = io.StringIO(newline="")
    await bot.audit.export_csv(out)
    audit_reply = await bot.say("admin", f"/audit {OPEN_ACP1_OEM_ID} 20")

    table = repr(rows)
    assert sorted(code for code in codes if code in table) == []
    assert sorted(code for code in codes if code in out.getvalue()) == []
    assert sorted(code for code in codes if code in audit_reply.text()) == []
    fingerprints = [r.erm_code_event for r in await bot.audit.recent(limit=50) if r.erm_code_event]
    assert len(fingerprints) >= 5
    assert all(FINGERPRINT.fullmatch(f) for f in fingerprints), fingerprints
    assert "code fp:" in audit_reply.text()
    assert (await bot.audit.verify()).ok
