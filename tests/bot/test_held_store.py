"""Kept messages (bot.storage.held) on SQLite and PostgreSQL: sealed and bound to their user,
claimed once, given back on failure, taken again after a stale claim, expired; watched messages
(found by the platform's message id, never handed over until held); and revisions bot0009 (the
table) and bot0010 (the message id), their downgrades and upgrades again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.messages import Code, Reply
from bot.storage.base import migrate
from bot.storage.held import CLAIM_STALE, KEPT_FOR, WATCHED_FOR, HeldStore
from erm.secret_box import SecretBox
from tests.bot.test_people_store import _move, _tables

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
CODE = Reply(title="Code ready", codes=(Code("*413 572#", "413572"),))
NOTE = Reply(title="Request R1 was denied")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def held(engine: AsyncEngine, secret_box: SecretBox, clock: Clock) -> HeldStore:
    await migrate(engine)
    return HeldStore(engine, box=secret_box, clock=clock)


async def _column(engine: AsyncEngine, sql: str) -> list[object]:
    async with engine.connect() as connection:
        return list((await connection.execute(text(sql))).scalars())


async def test_kept_sealed_and_taken_oldest_first_once(
    held: HeldStore, engine: AsyncEngine
) -> None:
    await held.keep("pager", "7", CODE)
    await held.keep("pager", "7", NOTE)
    await held.keep("pager", "8", NOTE)
    [sealed, *_] = await _column(engine, "SELECT sealed FROM bot_held_messages ORDER BY id")
    assert "413" not in str(sealed)

    taken = await held.take("pager", "7")
    assert [m.reply for m in taken.messages] == [CODE, NOTE]
    assert (await held.take("pager", "7")).messages == ()  # claimed: not handed out twice
    assert await held.done(taken) == 2
    assert len((await held.take("pager", "8")).messages) == 1


async def test_a_release_or_a_stale_claim_hands_it_over_again(
    held: HeldStore, clock: Clock
) -> None:
    await held.keep("pager", "7", CODE)
    await held.release(await held.take("pager", "7"))
    dead = await held.take("pager", "7")  # this process dies before sending
    assert len(dead.messages) == 1

    clock.now += CLAIM_STALE + timedelta(seconds=1)
    again = await held.take("pager", "7")
    assert [m.reply for m in again.messages] == [CODE]
    assert await held.done(dead) == 0  # the dead claim no longer owns it
    assert await held.done(again) == 1


async def test_a_row_moved_to_another_user_does_not_open(
    held: HeldStore, engine: AsyncEngine
) -> None:
    await held.keep("pager", "7", CODE)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE bot_held_messages SET user_id = '8'"))
    assert (await held.take("pager", "8")).messages == ()
    assert await _column(engine, "SELECT id FROM bot_held_messages") == []


async def test_expired_messages_are_never_handed_over_and_the_purge_drops_them(
    held: HeldStore, clock: Clock
) -> None:
    await held.keep("pager", "7", CODE)
    clock.now += KEPT_FOR
    assert (await held.take("pager", "7")).messages == ()
    await held.keep("pager", "7", NOTE)
    assert [m.reply for m in (await held.take("pager", "7")).messages] == [NOTE]
    clock.now += KEPT_FOR
    assert await held.purge() == 2


async def test_a_returned_message_is_found_by_its_id_once_and_held_unless_sent_another_way(
    held: HeldStore, engine: AsyncEngine, clock: Clock
) -> None:
    await held.watch("pager", "7", CODE, "wamid.A")
    await held.watch("pager", "7", NOTE, "wamid.B")
    [sealed, _] = await _column(engine, "SELECT sealed FROM bot_held_messages ORDER BY id")
    assert "413" not in str(sealed)
    assert (await held.take("pager", "7")).messages == ()  # sent: nothing to hand over
    assert await held.returned("other", "wamid.A") is None
    assert await held.returned("pager", "wamid.C") is None

    found = await held.returned("pager", "wamid.A")
    assert found is not None
    assert (found.user_id, found.reply) == ("7", CODE)
    assert await held.returned("pager", "wamid.A") is None  # a second report finds it taken
    assert (await held.take("pager", "7")).messages == ()  # claimed by whoever took it
    await held.release(found.taken)  # not sent another way: it waits for the next message
    assert [m.reply for m in (await held.take("pager", "7")).messages] == [CODE]

    other = await held.returned("pager", "wamid.B")
    assert other is not None
    assert await held.done(other.taken) == 1  # sent another way (a template)
    assert await _column(engine, "SELECT message_ref FROM bot_held_messages") == [None]
    await held.watch("pager", "8", NOTE, "wamid.D")
    clock.now += WATCHED_FOR
    assert await held.returned("pager", "wamid.D") is None
    assert await held.purge() == 1


async def test_a_key_rotation_re_encrypts_what_waits_so_the_old_key_can_go(
    engine: AsyncEngine, clock: Clock
) -> None:
    await migrate(engine)
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    before = HeldStore(engine, box=SecretBox([old]), clock=clock)
    await before.keep("pager", "7", CODE)
    await before.watch("pager", "8", NOTE, "wamid.A")

    assert await HeldStore(engine, box=SecretBox([new, old]), clock=clock).rotate() == 2
    assert await HeldStore(engine, box=SecretBox([new, old]), clock=clock).rotate() == 0
    after = HeldStore(engine, box=SecretBox([new]), clock=clock)
    assert [m.reply for m in (await after.take("pager", "7")).messages] == [CODE]
    returned = await after.returned("pager", "wamid.A")
    assert returned is not None
    assert returned.reply == NOTE


async def test_bot0009_and_bot0010_upgrade_and_downgrade(
    held: HeldStore, engine: AsyncEngine
) -> None:
    await held.keep("pager", "7", NOTE)
    await held.watch("pager", "7", CODE, "wamid.A")
    async with engine.connect() as connection:
        await connection.run_sync(_move, "bot0009", down=True)  # bot0010 down: watched rows go
        assert await connection.scalar(text("SELECT count(*) FROM bot_held_messages")) == 1
        await connection.run_sync(_move, "bot0008", down=True)
        assert "bot_held_messages" not in await connection.run_sync(_tables)
        assert "bot_grants" in await connection.run_sync(_tables)
        await connection.run_sync(_move, "bot0010")
        assert "bot_held_messages" in await connection.run_sync(_tables)
    assert (await held.take("pager", "7")).messages == ()  # the rows went with the table
    await held.keep("pager", "7", NOTE)
    await held.watch("pager", "7", CODE, "wamid.A")
    assert len((await held.take("pager", "7")).messages) == 1
    assert await held.returned("pager", "wamid.A") is not None
