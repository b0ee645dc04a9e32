"""Issued codes at rest (issue 14, item 13): only ciphertext in the database, rotated with the
ERM tokens' keys, shown again by /resend; rows an older release wrote in plain text are
encrypted by the upgrade; a new SQLite file is private to its owner. SQLite and PostgreSQL.
"""

from __future__ import annotations

import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from alembic import command
from bot_harness import Bot
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.audit import AuditLog, row_hash
from bot.storage.base import BOT_MIGRATIONS, migrate
from bot.storage.code_records import IssuedCodeRecord
from bot.storage.codes import CodeStore
from bot.storage.requests import RequestStore
from erm import db
from erm.db import MigrationError, create_engine
from erm.errors import VaultError
from erm.models import keypad_format
from erm.sandbox import OPEN_ACP1_OEM_ID
from erm.secret_box import SecretBox

if TYPE_CHECKING:
    from support import TestDatabase

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CODE_DEC = "024413975593119504641"
CODE_HEX = "0A1B2C3D4E5F6071"
ITEM = "65f0c0ffee0000000000000a"


def record(**changes: Any) -> IssuedCodeRecord:
    base = IssuedCodeRecord(
        distributor="acme",
        item_id=ITEM,
        item_label="TEST2503000017",
        code_type="DAYSCODE",
        days=30,
        code_dec=CODE_DEC,
        code_hex=CODE_HEX,
        issued_by_platform="slack",
        issued_by_user="U1",
        issued_by_name="Ada",
        request_key="slack:trigger:1",
        issued_at=T0,
    )
    return replace(base, **changes)


async def dump(database: TestDatabase, engine: AsyncEngine) -> str:
    """All the database holds: the SQLite files (WAL too), or every PostgreSQL row as text."""
    if database.path is not None:
        files = sorted(database.path.parent.glob(f"{database.path.name}*"))
        return b"".join(path.read_bytes() for path in files).decode("latin-1")
    async with engine.connect() as connection:
        tables = await connection.scalars(
            text(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        )
        rows: list[str] = []
        for table in list(tables):
            result = await connection.scalars(text(f'SELECT t::text FROM "{table}" t'))  # noqa: S608
            rows.extend(result)
    return "\n".join(rows)


def forms(code_dec: str, code_hex: str = "") -> list[str]:
    """Every way a code could be written down."""
    found = [code_dec, keypad_format(code_dec), keypad_format(code_dec).replace(" ", "")]
    return found + ([code_hex, code_hex.lower()] if code_hex else [])


@pytest.fixture
async def bot_engine(engine: AsyncEngine) -> AsyncEngine:
    await migrate(engine)
    return engine


@pytest.fixture
def codes(bot_engine: AsyncEngine, secret_box: SecretBox) -> CodeStore:
    return CodeStore(bot_engine, box=secret_box)


# -- the store ----------------------------------------------------------------------------------


async def test_a_recorded_code_is_only_ciphertext_and_reads_back_whole(
    database: TestDatabase, bot_engine: AsyncEngine, codes: CodeStore
) -> None:
    row_id = await codes.record_issue(record())

    assert await codes.last_issue("acme", ITEM) == replace(record(), id=row_id)
    async with bot_engine.connect() as connection:
        stored = (await connection.execute(text("SELECT * FROM bot_issued_codes"))).mappings().one()
    assert "code_dec" not in stored
    assert "code_hex" not in stored
    assert stored["code_last3"] == "641"
    assert str(stored["code_secret"]).startswith("v1.")
    contents = await dump(database, bot_engine)
    assert "TEST2503000017" in contents  # the dump does see the row
    assert [form for form in forms(CODE_DEC, CODE_HEX) if form in contents] == []


async def test_a_code_moved_to_another_items_row_does_not_decrypt(
    bot_engine: AsyncEngine, codes: CodeStore
) -> None:
    await codes.record_issue(record())
    await codes.record_issue(record(item_id="other-item", code_dec="111222333", code_hex="AB"))
    async with bot_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE bot_issued_codes SET code_secret ="
                " (SELECT code_secret FROM bot_issued_codes WHERE item_id = :item)"
                " WHERE item_id = 'other-item'"
            ),
            {"item": ITEM},
        )

    with pytest.raises(VaultError, match="cannot decrypt issued code") as raised:
        await codes.last_issue("acme", "other-item")

    assert [form for form in forms(CODE_DEC, CODE_HEX) if form in str(raised.value)] == []


async def test_rotation_moves_every_code_to_the_new_key_and_the_old_key_can_go(
    bot_engine: AsyncEngine,
) -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    before = CodeStore(bot_engine, box=SecretBox([old]))
    for n in range(3):
        await before.record_issue(record(item_id=f"item-{n}", code_dec=f"{n}" * 9))

    assert await CodeStore(bot_engine, box=SecretBox([new, old])).rotate() == 3
    assert await CodeStore(bot_engine, box=SecretBox([new, old])).rotate() == 0

    after = CodeStore(bot_engine, box=SecretBox([new]))
    for n in range(3):
        found = await after.last_issue("acme", f"item-{n}")
        assert found is not None
        assert found.code_dec == f"{n}" * 9


async def test_rotation_reports_codes_it_cannot_decrypt_and_rotates_the_rest(
    bot_engine: AsyncEngine,
) -> None:
    old, new, lost = (SecretBox.generate_key() for _ in range(3))
    await CodeStore(bot_engine, box=SecretBox([lost])).record_issue(record(item_id="lost"))
    await CodeStore(bot_engine, box=SecretBox([old])).record_issue(record(item_id="kept"))

    with pytest.raises(VaultError, match=r"re-encrypted 1 issued code.* could not decrypt 1"):
        await CodeStore(bot_engine, box=SecretBox([new, old])).rotate()

    found = await CodeStore(bot_engine, box=SecretBox([new])).last_issue("acme", "kept")
    assert found is not None
    assert found.code_dec == CODE_DEC


async def test_resend_decrypts_the_stored_code(any_bot: Bot) -> None:
    issued = await any_bot.say("agent", f"/code days {OPEN_ACP1_OEM_ID} 3")
    assert issued.codes

    resent = await any_bot.say("agent", f"/resend {OPEN_ACP1_OEM_ID}")

    assert resent.codes == issued.codes
    contents = await dump_rows(any_bot.engine, "bot_issued_codes")
    assert [c.digits for c in issued.codes if c.digits in contents] == []


async def test_the_reply_kept_for_a_repeat_holds_the_code_sealed_and_shows_it_again(
    any_bot: Bot,
) -> None:
    asked = f"/code days {OPEN_ACP1_OEM_ID} 2"
    made_before = any_bot.code_events(OPEN_ACP1_OEM_ID)
    issued = await any_bot.say("agent", asked, key="repeat:1")
    assert issued.codes

    stored = await dump_rows(any_bot.engine, "bot_requests")
    again = await any_bot.say("agent", asked, key="repeat:1")

    assert [c.digits for c in issued.codes if c.digits in stored] == []
    assert again.codes == issued.codes
    assert any_bot.code_events(OPEN_ACP1_OEM_ID) == made_before + 1


async def test_a_kept_reply_no_key_opens_says_where_the_code_is(bot_engine: AsyncEngine) -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    before = RequestStore(bot_engine, box=SecretBox([old]))
    await before.claim("k", "fp", now=T0)
    code = {"keypad": "*024 413#", "digits": "024413", "label": ""}
    await before.finish("k", {"title": "Code", "codes": [code], "notes": []}, now=T0)

    claim = await RequestStore(bot_engine, box=SecretBox([new])).claim("k", "fp", now=T0)

    assert claim.reply is not None
    assert claim.reply["codes"] == []
    assert "/resend" in claim.reply["notes"][-1]


async def dump_rows(engine: AsyncEngine, table: str) -> str:
    async with engine.connect() as connection:
        rows = (await connection.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608
    return repr(rows)


# -- the upgrade from plain text ----------------------------------------------------------------


def upgrade_to(connection: Connection, revision: str) -> None:
    config = db._alembic_config([BOT_MIGRATIONS])
    config.attributes["connection"] = connection
    with connection.begin():
        command.upgrade(config, revision)


def downgrade_to(connection: Connection, revision: str, box: SecretBox) -> None:
    config = db._alembic_config([BOT_MIGRATIONS])
    config.attributes.update(connection=connection, secret_box=box)
    with connection.begin():
        command.downgrade(config, revision)


OLD_CODES = [  # (item, code_dec, code_hex) as release 0.1 stored them
    (ITEM, CODE_DEC, CODE_HEX),
    ("65f0c0ffee0000000000000b", "987654321", "3ADE68B1"),
]


def write_release_0_1_rows(connection: Connection) -> None:
    """Issued codes in plain text and audit rows holding ERM's hex form, chained as 0.1 did."""
    for n, (item, code_dec, code_hex) in enumerate(OLD_CODES):
        connection.execute(
            text(
                "INSERT INTO bot_issued_codes (distributor, item_id, item_label, code_type, days,"
                " code_dec, code_hex, issued_by_platform, issued_by_user, issued_by_name,"
                " reconciled, issued_at) VALUES ('acme', :item, :label, 'DAYSCODE', 7, :dec,"
                " :hex, 'slack', 'U1', 'Ada', false, :at)"
            ),
            {
                "item": item,
                "label": f"TEST25030000{n}",
                "dec": code_dec,
                "hex": code_hex,
                "at": T0 + timedelta(minutes=n),
            },
        )
    prev = "0" * 64
    events = [None, CODE_HEX, None, "3ADE68B1", "DEADBEEF00"]  # the last one: not in the table
    for n, event in enumerate(events, start=1):
        fields: dict[str, Any] = {
            "at": T0 + timedelta(minutes=n),
            "platform": "slack",
            "chat_id": "C1",
            "user_id": "U1",
            "user_name": "Ada",
            "command": "code days" if event else "help",
            "arguments": "",
            "outcome": "ok",
            "detail": "",
            "distributor": "acme",
            "item_id": OLD_CODES[0][0] if event == CODE_HEX else OLD_CODES[1][0],
            "erm_code_event": event,
            "approval_id": None,
            "request_key": f"slack:{n}",
        }
        digest = row_hash(n, fields, prev)
        values = {**fields, "at": fields["at"].replace(tzinfo=None), "id": n}
        connection.execute(
            text(
                "INSERT INTO bot_audit_log (id, at, platform, chat_id, user_id, user_name,"
                " command, arguments, outcome, detail, distributor, item_id, erm_code_event,"
                " approval_id, request_key, prev_hash, hash) VALUES (:id, :at, :platform,"
                " :chat_id, :user_id, :user_name, :command, :arguments, :outcome, :detail,"
                " :distributor, :item_id, :erm_code_event, :approval_id, :request_key, :prev,"
                " :hash)"
            ),
            {**values, "prev": prev, "hash": digest},
        )
        prev = digest


@pytest.fixture
async def release_0_1(database: TestDatabase) -> Any:
    """A database at bot0004 with plain-text codes and audit rows, and a vault key."""
    engine = database.create_engine()
    async with engine.connect() as connection:
        await connection.run_sync(upgrade_to, "bot0004")
    async with engine.begin() as connection:
        await connection.run_sync(write_release_0_1_rows)
    yield engine
    await engine.dispose()


async def test_upgrade_encrypts_old_codes_and_fingerprints_the_audit_leaving_no_plain_text(
    database: TestDatabase, release_0_1: AsyncEngine, secret_box: SecretBox
) -> None:
    engine = release_0_1
    assert CODE_DEC in await dump(database, engine)  # the check below is meaningful

    await migrate(engine, secret_box=lambda: secret_box)

    contents = await dump(database, engine)
    for _, code_dec, code_hex in OLD_CODES:
        assert [form for form in forms(code_dec, code_hex) if form in contents] == []
    assert "DEADBEEF00" not in contents
    store = CodeStore(engine, box=secret_box)
    for item, code_dec, code_hex in OLD_CODES:
        found = await store.last_issue("acme", item)
        assert found is not None
        assert (found.code_dec, found.code_hex) == (code_dec, code_hex)
    log = AuditLog(engine)
    verdict = await log.verify()
    assert (verdict.ok, verdict.rows, verdict.problem) == (True, 6, None)
    rows = list(reversed(await log.recent()))
    assert secret_box.matches(CODE_DEC, str(rows[1].erm_code_event)) is True
    assert str(rows[1].erm_code_event).endswith("·…641")
    assert secret_box.matches("987654321", str(rows[3].erm_code_event)) is True
    assert secret_box.matches("DEADBEEF00", str(rows[4].erm_code_event)) is True
    marker = rows[5]
    assert (marker.command, marker.outcome, marker.arguments) == (
        "db upgrade",
        "rechained",
        "bot0005",
    )
    assert "3 unlock code(s) replaced by fingerprints" in marker.detail


async def test_upgrade_without_keys_stops_saying_what_to_set_and_keeps_everything(
    database: TestDatabase, release_0_1: AsyncEngine
) -> None:
    engine = release_0_1
    with pytest.raises(MigrationError, match="needs the keys: set ERM_BOT_SECRET_KEYS"):
        await migrate(engine)

    async with engine.connect() as connection:
        codes = (await connection.execute(text("SELECT code_dec FROM bot_issued_codes"))).all()
        version = await connection.scalar(
            text("SELECT version_num FROM alembic_version WHERE version_num LIKE 'bot%'")
        )
    assert sorted(c for (c,) in codes) == sorted(c for _, c, _ in OLD_CODES)
    assert version == "bot0004"
    assert (await AuditLog(engine).verify()).ok


async def test_the_upgrade_of_an_empty_database_needs_no_keys(engine: AsyncEngine) -> None:
    await migrate(engine)  # nothing to encrypt: no key asked for


async def test_downgrade_gives_the_codes_back_in_plain_text(
    release_0_1: AsyncEngine, secret_box: SecretBox
) -> None:
    engine = release_0_1
    await migrate(engine, secret_box=secret_box)

    async with engine.connect() as connection:
        await connection.run_sync(downgrade_to, "bot0004", secret_box)
        rows = (
            await connection.execute(
                text("SELECT item_id, code_dec, code_hex FROM bot_issued_codes")
            )
        ).all()
    assert sorted(tuple(r) for r in rows) == sorted(OLD_CODES)
    assert (await AuditLog(engine).verify()).ok


# -- the SQLite file ----------------------------------------------------------------------------


async def test_a_new_sqlite_file_is_readable_by_its_owner_only(
    tmp_path: Path, secret_box: SecretBox
) -> None:
    path = tmp_path / "fresh.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate(engine)
        await CodeStore(engine, box=secret_box).record_issue(record())
        modes = file_modes(tmp_path, "fresh.db")  # while open: the WAL files exist
    finally:
        await engine.dispose()

    assert set(modes) == {"fresh.db", "fresh.db-wal", "fresh.db-shm"}
    assert modes == dict.fromkeys(modes, "0o600")


def file_modes(directory: Path, name: str) -> dict[str, str]:
    return {
        file.name: oct(stat.S_IMODE(file.stat().st_mode)) for file in directory.glob(name + "*")
    }
