"""Key rotation while a fleet of replicas runs (issue 14, item 5), on SQLite and PostgreSQL.

Each replica is an ErmService with its own vault over one database, holding the keys it read at
start: an "old" process (the old key only), a "during" process (new key first, old second) and an
"after" process (the new key only), following the README steps.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import TOKEN_TTL, FakeClock, make_service

from erm.client import ErmClient
from erm.errors import VaultError
from erm.models import SignInMethod
from erm.sandbox import ACME
from erm.secret_box import SecretBox
from erm.service import ErmService
from erm.vault import StoredToken, TokenVault


def key_id(key: str) -> str:
    return hashlib.sha256(base64.urlsafe_b64decode(key)).hexdigest()[:8]


async def envelope_key(engine: AsyncEngine, column: str) -> str | None:
    """The key id of ACME's stored ``column`` (None when nothing is stored)."""
    async with engine.connect() as connection:
        value = await connection.scalar(
            text(f"SELECT {column} FROM erm_distributors WHERE name = 'acme'")  # noqa: S608
        )
    return None if value is None else str(value).split(".")[1]


class Fleet:
    def __init__(self, engine: AsyncEngine, client: ErmClient, clock: FakeClock) -> None:
        self.engine, self.client, self.clock = engine, client, clock
        self.old, self.new = SecretBox.generate_key(), SecretBox.generate_key()

    def replica(self, *keys: str) -> ErmService:
        return make_service(self.client, TokenVault(self.engine, SecretBox(list(keys))), self.clock)

    async def stale_replica_saves_a_token(self) -> None:
        """What a replica still on the old keys does after signing in: save its token."""
        signed = await self.client.sign_in(SignInMethod.CLIENT, ACME.email, ACME.password)
        stale = TokenVault(self.engine, SecretBox([self.old]))
        await stale.save_token(
            "acme", StoredToken(signed.distributor_id, signed.access_token, None)
        )


@pytest.fixture
async def fleet(engine: AsyncEngine, erm_client: ErmClient, clock: FakeClock) -> Fleet:
    fleet = Fleet(engine, erm_client, clock)
    await fleet.replica(fleet.old).add_distributor(ACME.name, ACME.email, ACME.password)
    return fleet


async def test_a_token_saved_under_the_old_key_after_rotation_is_a_cache_miss(
    fleet: Fleet, engine: AsyncEngine
) -> None:
    # 1) every replica gets the new key first, the old one second; 2) rotate.
    assert await TokenVault(engine, SecretBox([fleet.new, fleet.old])).rotate() == 2
    # The race: a replica not yet restarted saves the token it just signed in for.
    await fleet.stale_replica_saves_a_token()
    assert await envelope_key(engine, "token_secret") == key_id(fleet.old)
    # 3) the old key is dropped everywhere.
    after = fleet.replica(fleet.new)

    fleets = await after.item_fleets(ACME.name)

    assert fleets
    assert after.sign_ins == 1  # signed in again with the stored password
    assert await envelope_key(engine, "token_secret") == key_id(fleet.new)  # saved under the new
    restarted = fleet.replica(fleet.new)
    await restarted.item_fleets(ACME.name)
    assert restarted.sign_ins == 0  # and that token serves the next process


async def test_replicas_on_old_and_new_keys_work_side_by_side_during_a_rolling_deploy(
    fleet: Fleet, engine: AsyncEngine, clock: FakeClock
) -> None:
    old, during = fleet.replica(fleet.old), fleet.replica(fleet.new, fleet.old)
    for _ in range(3):
        clock.advance(TOKEN_TTL)  # the tokens run out: the next caller signs in and saves its own
        assert await during.item_fleets(ACME.name)
        assert await envelope_key(engine, "token_secret") == key_id(fleet.new)
        old.forget_sessions()  # a restart, or another request on another replica
        assert await old.item_fleets(ACME.name)  # cannot read the new token: signs in, no error
    assert (old.sign_ins, during.sign_ins) == (3, 3)
    assert await envelope_key(engine, "password_secret") == key_id(fleet.old)  # untouched


async def test_a_replica_left_on_the_old_key_says_which_key_it_lacks_and_writes_nothing(
    fleet: Fleet, engine: AsyncEngine, clock: FakeClock
) -> None:
    stale = fleet.replica(fleet.old)
    await stale.item_fleets(ACME.name)
    await TokenVault(engine, SecretBox([fleet.new, fleet.old])).rotate()
    clock.advance(TOKEN_TTL)  # its token runs out: it must read the password again

    with pytest.raises(VaultError) as raised:
        await stale.item_fleets(ACME.name)

    message = str(raised.value)
    assert f"encrypted under key {key_id(fleet.new)}, which is not in ERM_BOT_SECRET_KEYS" in (
        message
    )
    assert "add that key after the newest one and restart" in message
    assert ACME.password not in message
    assert fleet.new not in message
    assert await envelope_key(engine, "password_secret") == key_id(fleet.new)
    assert await envelope_key(engine, "token_secret") == key_id(fleet.new)


async def test_rotate_run_by_a_replica_on_the_old_key_changes_nothing(
    fleet: Fleet, engine: AsyncEngine
) -> None:
    """A stale process never puts a password back under the old key."""
    await fleet.replica(fleet.new, fleet.old).item_fleets(ACME.name)
    await TokenVault(engine, SecretBox([fleet.new, fleet.old])).rotate()

    with pytest.raises(VaultError, match="password of distributor 'acme'"):
        await TokenVault(engine, SecretBox([fleet.old])).rotate()

    assert await envelope_key(engine, "password_secret") == key_id(fleet.new)
    assert await envelope_key(engine, "token_secret") == key_id(fleet.new)
    assert (await TokenVault(engine, SecretBox([fleet.new])).credentials("acme")).password == (
        ACME.password
    )
