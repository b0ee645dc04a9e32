"""Revision bot0006 keeps every approval and card, and gives existing pending requests their key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.base import BOT_MIGRATIONS
from erm import db

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _move(connection: Connection, revision: str, *, down: bool = False) -> None:
    config = db._alembic_config([BOT_MIGRATIONS])
    config.attributes["connection"] = connection
    if connection.in_transaction():
        connection.commit()
    if connection.dialect.name == "sqlite":
        # Table rebuilds must not cascade to the cards (erm.db.upgrade does the same).
        db._sqlite_pragma(connection, "PRAGMA foreign_keys=OFF")
    with connection.begin():
        (command.downgrade if down else command.upgrade)(config, revision)


def approval_of(approval_id: str, created: datetime, status: str = "pending") -> dict[str, Any]:
    return {
        "id": approval_id,
        "distributor": "acme",
        "status": status,
        "requester_platform": "telegram",
        "requester_user": "42",
        "code_type": "free",
        "item_id": "item-1",
        "item_label": "TEST2503000017",
        "command_text": "/code free TEST2503000017",
        "fingerprint": "f" * 64,
        "needs": "free codes need approval",
        "context": "{}",
        "created_at": created,
        "expires_at": created + timedelta(hours=24),
        "remind_at": created + timedelta(hours=12),
    }


_INSERT = text(
    "INSERT INTO bot_approvals (id, distributor, status, requester_platform, requester_user, "
    "code_type, item_id, item_label, command_text, fingerprint, needs, context, created_at, "
    "expires_at, remind_at) VALUES (:id, :distributor, :status, :requester_platform, "
    ":requester_user, :code_type, :item_id, :item_label, :command_text, :fingerprint, :needs, "
    ":context, :created_at, :expires_at, :remind_at)"
)


async def test_bot0006_keeps_approvals_and_cards_and_keys_one_of_identical_pending(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        await connection.run_sync(_move, "bot0005")
        async with connection.begin():
            for approval_id, minutes, status in (
                ("AAAAAA", 0, "pending"),
                ("BBBBBB", 1, "pending"),  # the same ask, made twice by the old race
                ("CCCCCC", 2, "approved"),
            ):
                row = approval_of(approval_id, NOW + timedelta(minutes=minutes), status)
                await connection.execute(_INSERT, row)
            await connection.execute(
                text(
                    "INSERT INTO bot_approval_cards (approval_id, platform, chat_id, kind, "
                    "message_ref, posted_at) VALUES ('AAAAAA', 'slack', 'C1', 'card', NULL, :at)"
                ),
                {"at": NOW},
            )
        await connection.run_sync(_move, "bot0006")
        keys = dict(
            (await connection.execute(text("SELECT id, dedupe_key FROM bot_approvals"))).all()
        )
        card = (
            await connection.execute(
                text("SELECT approval_id, attempts, retry_at, message_ref FROM bot_approval_cards")
            )
        ).one()
        await connection.run_sync(_move, "bot0005", down=True)
        after_downgrade = (
            await connection.execute(text("SELECT count(*) FROM bot_approvals"))
        ).scalar()
        cards_after_downgrade = (
            await connection.execute(text("SELECT count(*) FROM bot_approval_cards"))
        ).scalar()
        await connection.commit()

    assert keys["AAAAAA"] is not None
    assert len(keys["AAAAAA"]) == 64
    assert keys["BBBBBB"] is None
    assert keys["CCCCCC"] is None
    assert tuple(card) == ("AAAAAA", 0, None, None)  # left claimed: the sweep posts it again
    assert after_downgrade == 3
    assert cards_after_downgrade == 1
