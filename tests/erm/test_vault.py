"""The token vault: secrets only as ciphertext, bound to their row, rotatable, loud when broken."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from erm.errors import InvalidInputError, UnknownDistributorError, VaultError
from erm.secret_box import DecryptionError, SecretBox, SecretKeyError
from erm.vault import DistributorCredentials, StoredToken, TokenVault

if TYPE_CHECKING:
    from support import TestDatabase

PASSWORD = "hunter2-Correct-Horse-Battery"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
CLIENT_ID = "5f2b8a9e1c4d3b7a6e0f9d21"
EXPIRES = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def key_id(key: str) -> str:
    return hashlib.sha256(base64.urlsafe_b64decode(key)).hexdigest()[:8]


async def stored(engine: AsyncEngine, name: str, column: str) -> str | None:
    async with engine.connect() as connection:
        value = await connection.scalar(
            text(f"SELECT {column} FROM erm_distributors WHERE name = :name"),  # noqa: S608
            {"name": name},
        )
    return None if value is None else str(value)


async def overwrite(engine: AsyncEngine, name: str, column: str, value: str | None) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(f"UPDATE erm_distributors SET {column} = :value WHERE name = :name"),  # noqa: S608
            {"name": name, "value": value},
        )


async def row_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT count(*) FROM erm_distributors")) or 0)


def flip_one_character(envelope: str) -> str:
    version, kid, payload = envelope.split(".")
    middle = len(payload) // 2
    replacement = "A" if payload[middle] != "A" else "B"
    return f"{version}.{kid}.{payload[:middle]}{replacement}{payload[middle + 1 :]}"


async def dump(database: TestDatabase, engine: AsyncEngine) -> bytes:
    """All the database holds: the SQLite files (WAL too), or every PostgreSQL row as text."""
    if database.path is not None:
        files = sorted(database.path.parent.glob(f"{database.path.name}*"))
        return b"".join(path.read_bytes() for path in files)
    async with engine.connect() as connection:
        tables = await connection.scalars(
            text(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        )
        rows: list[str] = []
        for table in list(tables):
            # table names come from the catalog, not from input
            result = await connection.scalars(text(f'SELECT t::text FROM "{table}" t'))  # noqa: S608
            rows.extend(result)
    return "\n".join(rows).encode()


# -- SecretBox ----------------------------------------------------------------------------------

BOX = SecretBox([SecretBox.generate_key()])


@given(plaintext=st.text(), context=st.text())
def test_any_text_survives_encryption(plaintext: str, context: str) -> None:
    assert BOX.decrypt(BOX.encrypt(plaintext, context=context), context=context) == plaintext


def test_generated_keys_are_32_random_bytes_in_urlsafe_base64() -> None:
    first, second = SecretBox.generate_key(), SecretBox.generate_key()

    assert len(base64.urlsafe_b64decode(first)) == 32
    assert len(first) == 44
    assert first != second


def test_envelope_names_version_and_key_id() -> None:
    key = SecretBox.generate_key()
    box = SecretBox([key])

    version, kid, payload = box.encrypt(PASSWORD, context="c").split(".")

    assert (version, kid) == ("v1", key_id(key))
    assert len(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) == 12 + 29 + 16


def test_same_plaintext_encrypts_differently_each_time(secret_box: SecretBox) -> None:
    assert secret_box.encrypt(PASSWORD, context="c") != secret_box.encrypt(PASSWORD, context="c")


def test_another_context_does_not_decrypt(secret_box: SecretBox) -> None:
    envelope = secret_box.encrypt(PASSWORD, context="erm_distributors|acme|password_secret")

    with pytest.raises(DecryptionError, match="altered"):
        secret_box.decrypt(envelope, context="erm_distributors|beta|password_secret")


def test_every_changed_character_is_detected(secret_box: SecretBox) -> None:
    envelope = secret_box.encrypt(PASSWORD, context="c")
    for position, character in enumerate(envelope):
        for replacement in sorted({"A", "g", "0", "_", ".", "="} - {character}):
            tampered = envelope[:position] + replacement + envelope[position + 1 :]
            with pytest.raises(DecryptionError):
                secret_box.decrypt(tampered, context="c")


@pytest.mark.parametrize(
    "envelope", ["", "v1", "v1.abcdefgh.AAAA", "v2.00000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
)
def test_malformed_envelope_is_refused(secret_box: SecretBox, envelope: str) -> None:
    with pytest.raises(DecryptionError, match="not an encrypted value"):
        secret_box.decrypt(envelope, context="c")


def test_older_key_still_decrypts_and_newest_encrypts() -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    envelope = SecretBox([old]).encrypt(PASSWORD, context="c")
    box = SecretBox([new, old])

    assert box.decrypt(envelope, context="c") == PASSWORD
    assert box.is_current(envelope) is False
    assert box.is_current(box.encrypt(PASSWORD, context="c")) is True


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "no secret key configured"),
        (["not-a-key"], "key 1 of 1"),
        ([base64.urlsafe_b64encode(b"k" * 16).decode()], "key 1 of 1"),
        ([SecretBox.generate_key(), "c2hvcnQ="], "key 2 of 2"),
        ([SecretBox.generate_key().replace("-", "+").replace("_", "/") + "+/"], "key 1 of 1"),
    ],
)
def test_unusable_keys_are_refused_without_showing_them(keys: list[str], message: str) -> None:
    with pytest.raises(SecretKeyError, match=message) as raised:
        SecretBox(keys)

    for key in keys:
        assert key not in str(raised.value)


def test_a_repeated_key_is_refused_without_showing_it() -> None:
    key = SecretBox.generate_key()

    with pytest.raises(SecretKeyError, match=r"keys 1 and 3 .* are the same key") as raised:
        SecretBox([key, SecretBox.generate_key(), key])

    assert key not in str(raised.value)


def test_a_single_string_is_not_taken_for_a_list_of_keys() -> None:
    with pytest.raises(SecretKeyError, match="as a list"):
        SecretBox(SecretBox.generate_key())


def test_keys_and_secrets_stay_out_of_reprs() -> None:
    key = SecretBox.generate_key()
    credentials = DistributorCredentials("acme", "a@example.org", None, PASSWORD)
    token = StoredToken(CLIENT_ID, TOKEN, None)

    assert key not in repr(SecretBox([key]))
    assert PASSWORD not in repr(credentials)
    assert TOKEN not in repr(token)


# -- TokenVault ---------------------------------------------------------------------------------


async def test_credentials_come_back_as_stored(vault: TokenVault) -> None:
    await vault.add_distributor("acme", "dist@example.org", PASSWORD)

    assert await vault.credentials("acme") == DistributorCredentials(
        "acme", "dist@example.org", None, PASSWORD
    )


async def test_token_comes_back_as_saved_with_client_id(vault: TokenVault) -> None:
    await vault.add_distributor("acme", "dist@example.org", PASSWORD)

    await vault.save_token("acme", StoredToken(CLIENT_ID, TOKEN, EXPIRES))

    assert await vault.load_token("acme") == StoredToken(CLIENT_ID, TOKEN, EXPIRES)
    assert (await vault.credentials("acme")).client_id == CLIENT_ID


async def test_token_expiry_comes_back_in_utc(vault: TokenVault) -> None:
    await vault.add_distributor("acme", "dist@example.org", PASSWORD)
    in_nairobi = EXPIRES.astimezone(timezone(timedelta(hours=3)))

    await vault.save_token("acme", StoredToken(CLIENT_ID, TOKEN, in_nairobi))
    token = await vault.load_token("acme")

    assert token is not None
    assert token.expires_at == EXPIRES
    assert token.expires_at.tzinfo == UTC


async def test_token_without_expiry_is_kept(vault: TokenVault) -> None:
    await vault.add_distributor("acme", "dist@example.org", PASSWORD)

    await vault.save_token("acme", StoredToken(CLIENT_ID, TOKEN, None))

    assert await vault.load_token("acme") == StoredToken(CLIENT_ID, TOKEN, None)


async def test_naive_token_expiry_is_refused(vault: TokenVault) -> None:
    await vault.add_distributor("acme", "dist@example.org", PASSWORD)

    with pytest.raises(ValueError, match="timezone-aware"):
        await vault.save_token("acme", StoredToken(CLIENT_ID, TOKEN, datetime(2030, 1, 1)))


async def test_no_token_until_one_is_saved(vault: TokenVault) -> None:
    await vault.add_distributor("acme", "dist@example.org", PASSWORD)

    assert await vault.load_token("acme") is None


async def test_clear_token_forgets_the_token_but_keeps_the_client_id(vault: TokenVault) -> None:
    await vault.add_distributor("acme", "dist@example.org", PASSWORD)
    await vault.save_token("acme", StoredToken(CLIENT_ID, TOKEN, EXPIRES))

    await vault.clear_token("acme")

    assert await vault.load_token("acme") is None
    [info] = await vault.list_distributors()
    assert (info.client_id, info.has_token, info.token_expires_at) == (CLIENT_ID, False, None)


async def test_names_are_stored_in_lower_case_and_found_in_any_case(vault: TokenVault) -> None:
    await vault.add_distributor("  Acme-East ", "dist@example.org", PASSWORD)

    assert await vault.names() == ["acme-east"]
    assert (await vault.credentials("ACME-EAST")).password == PASSWORD


async def test_list_distributors_shows_no_secret(vault: TokenVault) -> None:
    await vault.add_distributor("beta", "beta@example.org", PASSWORD)
    await vault.add_distributor("acme", "acme@example.org", PASSWORD, client_id=CLIENT_ID)
    await vault.save_token("acme", StoredToken(CLIENT_ID, TOKEN, EXPIRES))

    acme, beta = await vault.list_distributors()

    assert (acme.name, acme.email, acme.client_id, acme.has_token) == (
        "acme",
        "acme@example.org",
        CLIENT_ID,
        True,
    )
    assert acme.token_expires_at == EXPIRES
    assert acme.created_at.tzinfo == UTC
    assert (beta.name, beta.has_token, beta.token_expires_at) == ("beta", False, None)
    assert PASSWORD not in repr(acme) + repr(beta)
    assert TOKEN not in repr(acme) + repr(beta)


async def test_adding_an_existing_distributor_is_refused_and_keeps_it(vault: TokenVault) -> None:
    await vault.add_distributor("acme", "dist@example.org", PASSWORD)

    with pytest.raises(InvalidInputError, match="'acme' already exists"):
        await vault.add_distributor("ACME", "other@example.org", "another password")

    assert await vault.credentials("acme") == DistributorCredentials(
        "acme", "dist@example.org", None, PASSWORD
    )


async def test_replacing_credentials_forgets_the_old_token(vault: TokenVault) -> None:
    await vault.add_distributor("acme", "dist@example.org", PASSWORD, client_id=CLIENT_ID)
    await vault.save_token("acme", StoredToken(CLIENT_ID, TOKEN, EXPIRES))

    await vault.add_distributor("acme", "new@example.org", "new password", replace=True)

    assert await vault.credentials("acme") == DistributorCredentials(
        "acme", "new@example.org", None, "new password"
    )
    assert await vault.load_token("acme") is None


async def test_replace_adds_a_distributor_that_is_not_there(vault: TokenVault) -> None:
    await vault.add_distributor("acme", "dist@example.org", PASSWORD, replace=True)

    assert await vault.names() == ["acme"]


async def test_concurrent_adds_of_one_name_store_it_once(vault: TokenVault) -> None:
    results = await asyncio.gather(
        *(vault.add_distributor("acme", f"d{i}@example.org", PASSWORD) for i in range(5)),
        return_exceptions=True,
    )

    assert sum(result is None for result in results) == 1
    assert all(isinstance(r, InvalidInputError) for r in results if r is not None)
    assert await vault.names() == ["acme"]


async def test_concurrent_writers_wait_for_each_other(vault: TokenVault) -> None:
    names = [f"dist-{i}" for i in range(10)]

    async def add_and_sign_in(name: str) -> None:
        await vault.add_distributor(name, f"{name}@example.org", PASSWORD)
        await vault.save_token(name, StoredToken(CLIENT_ID, f"{TOKEN}-{name}", EXPIRES))

    await asyncio.gather(*(add_and_sign_in(name) for name in names))

    assert await vault.names() == sorted(names)
    for name in names:
        assert await vault.load_token(name) == StoredToken(CLIENT_ID, f"{TOKEN}-{name}", EXPIRES)


async def test_remove_distributor_forgets_everything(vault: TokenVault) -> None:
    await vault.add_distributor("acme", "dist@example.org", PASSWORD)
    await vault.save_token("acme", StoredToken(CLIENT_ID, TOKEN, EXPIRES))

    await vault.remove_distributor("acme")

    assert await vault.names() == []
    with pytest.raises(UnknownDistributorError, match="'acme'"):
        await vault.credentials("acme")


@pytest.mark.parametrize(
    "use",
    [
        lambda vault: vault.credentials("ghost"),
        lambda vault: vault.load_token("ghost"),
        lambda vault: vault.save_token("ghost", StoredToken(CLIENT_ID, TOKEN, None)),
        lambda vault: vault.clear_token("ghost"),
        lambda vault: vault.remove_distributor("ghost"),
    ],
    ids=["credentials", "load_token", "save_token", "clear_token", "remove_distributor"],
)
async def test_unknown_distributor_is_reported(vault: TokenVault, use: object) -> None:
    with pytest.raises(UnknownDistributorError, match="no distributor named 'ghost'"):
        await use(vault)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("name", "email", "password", "message"),
    [
        ("", "dist@example.org", PASSWORD, "cannot be a distributor name"),
        ("1acme", "dist@example.org", PASSWORD, "cannot be a distributor name"),
        ("acme east", "dist@example.org", PASSWORD, "cannot be a distributor name"),
        ("acme!", "dist@example.org", PASSWORD, "cannot be a distributor name"),
        ("acmé", "dist@example.org", PASSWORD, "cannot be a distributor name"),
        ("a" * 33, "dist@example.org", PASSWORD, "cannot be a distributor name"),
        ("acme", "", PASSWORD, "email must not be empty"),
        ("acme", "   ", PASSWORD, "email must not be empty"),
        ("acme", "dist.example.org", PASSWORD, "email must look like"),
        ("acme", "dist@@example.org", PASSWORD, "email must look like"),
        ("acme", "dist @example.org", PASSWORD, "email must look like"),
        ("acme", "d@" + "x" * 260, PASSWORD, "email must look like"),
        ("acme", "dist@example.org", "", "password must not be empty"),
    ],
)
async def test_invalid_distributor_is_refused_and_nothing_stored(
    vault: TokenVault, name: str, email: str, password: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        await vault.add_distributor(name, email, password)

    assert await vault.names() == []


async def test_longest_valid_name_is_accepted(vault: TokenVault) -> None:
    name = "a" + "b0_-" * 7 + "cde"

    await vault.add_distributor(name, "dist@example.org", PASSWORD)

    assert await vault.names() == [name]


async def test_database_holds_no_plaintext_secret(
    database: TestDatabase, engine: AsyncEngine, vault: TokenVault
) -> None:
    await vault.add_distributor("acme", "acme@example.org", PASSWORD)
    await vault.save_token("acme", StoredToken(CLIENT_ID, TOKEN, EXPIRES))

    contents = await dump(database, engine)

    assert b"acme@example.org" in contents  # the dump does see the row
    assert PASSWORD.encode() not in contents
    assert TOKEN.encode() not in contents
    assert TOKEN.split(".")[2].encode() not in contents  # not even the token's signature part


async def test_rotation_reencrypts_everything_under_the_new_key(engine: AsyncEngine) -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    before = TokenVault(engine, SecretBox([old]))
    for name in ("acme", "beta", "gamma"):
        await before.add_distributor(name, f"{name}@example.org", f"{PASSWORD}-{name}")
    for name in ("acme", "beta"):
        await before.save_token(name, StoredToken(CLIENT_ID, f"{TOKEN}-{name}", EXPIRES))

    during = TokenVault(engine, SecretBox([new, old]))
    assert (await during.credentials("gamma")).password == f"{PASSWORD}-gamma"
    assert await during.rotate() == 5
    assert await during.rotate() == 0

    after = TokenVault(engine, SecretBox([new]))
    for name in ("acme", "beta", "gamma"):
        assert (await after.credentials(name)).password == f"{PASSWORD}-{name}"
        assert await stored(engine, name, "password_secret") is not None
        assert f".{key_id(new)}." in str(await stored(engine, name, "password_secret"))
    for name in ("acme", "beta"):
        assert await after.load_token(name) == StoredToken(CLIENT_ID, f"{TOKEN}-{name}", EXPIRES)
    assert await after.load_token("gamma") is None
    assert await row_count(engine) == 3
    assert await after.check() == [("acme", None), ("beta", None), ("gamma", None)]


async def test_rotation_leaves_an_undecryptable_row_as_it_was(engine: AsyncEngine) -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    before = TokenVault(engine, SecretBox([old]))
    for name in ("acme", "beta"):
        await before.add_distributor(name, f"{name}@example.org", PASSWORD)
        await before.save_token(name, StoredToken(CLIENT_ID, TOKEN, EXPIRES))
    broken = flip_one_character(str(await stored(engine, "beta", "password_secret")))
    await overwrite(engine, "beta", "password_secret", broken)
    beta_token = await stored(engine, "beta", "token_secret")

    with pytest.raises(VaultError, match="password of distributor 'beta'") as raised:
        await TokenVault(engine, SecretBox([new, old])).rotate()

    assert PASSWORD not in str(raised.value)
    assert await stored(engine, "beta", "password_secret") == broken
    assert await stored(engine, "beta", "token_secret") == beta_token  # not half-rotated
    after = TokenVault(engine, SecretBox([new]))
    assert (await after.credentials("acme")).password == PASSWORD  # the others were rotated
    assert await row_count(engine) == 2


async def test_rotation_drops_a_token_it_cannot_decrypt(engine: AsyncEngine) -> None:
    """A token is a cache of a sign-in: one that does not decrypt is dropped, not an error."""
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    before = TokenVault(engine, SecretBox([old]))
    await before.add_distributor("acme", "acme@example.org", PASSWORD)
    await before.save_token("acme", StoredToken(CLIENT_ID, TOKEN, EXPIRES))
    stranger = TokenVault(engine, SecretBox([SecretBox.generate_key()]))
    await stranger.save_token("acme", StoredToken(CLIENT_ID, TOKEN, EXPIRES))

    assert await TokenVault(engine, SecretBox([new, old])).rotate() == 1

    after = TokenVault(engine, SecretBox([new]))
    assert await after.load_token("acme") is None
    assert await stored(engine, "acme", "token_secret") is None
    assert (await after.credentials("acme")).password == PASSWORD


async def test_password_copied_to_another_distributor_does_not_decrypt(
    engine: AsyncEngine, vault: TokenVault
) -> None:
    await vault.add_distributor("acme", "acme@example.org", PASSWORD)
    await vault.add_distributor("beta", "beta@example.org", "beta's own password")
    await overwrite(
        engine, "beta", "password_secret", await stored(engine, "acme", "password_secret")
    )

    with pytest.raises(VaultError, match="password of distributor 'beta'"):
        await vault.credentials("beta")


async def test_password_copied_into_the_token_column_is_no_token(
    engine: AsyncEngine, vault: TokenVault
) -> None:
    await vault.add_distributor("acme", "acme@example.org", PASSWORD)
    await vault.save_token("acme", StoredToken(CLIENT_ID, TOKEN, EXPIRES))
    await overwrite(engine, "acme", "token_secret", await stored(engine, "acme", "password_secret"))

    assert await vault.load_token("acme") is None  # a cache miss: never the password


@pytest.mark.parametrize("damage", ["other key", "altered", "garbage"])
async def test_a_token_that_does_not_decrypt_is_a_cache_miss(
    engine: AsyncEngine, vault: TokenVault, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    await vault.add_distributor("acme", "acme@example.org", PASSWORD)
    if damage == "other key":
        stranger = TokenVault(engine, SecretBox([SecretBox.generate_key()]))
        await stranger.save_token("acme", StoredToken(CLIENT_ID, TOKEN, EXPIRES))
    else:
        await vault.save_token("acme", StoredToken(CLIENT_ID, TOKEN, EXPIRES))
        envelope = str(await stored(engine, "acme", "token_secret"))
        changed = flip_one_character(envelope) if damage == "altered" else "garbage"
        await overwrite(engine, "acme", "token_secret", changed)

    assert await vault.load_token("acme") is None

    assert "signing in again" in caplog.text
    assert TOKEN not in caplog.text


async def test_one_changed_character_is_reported_never_decrypted(
    engine: AsyncEngine, vault: TokenVault
) -> None:
    await vault.add_distributor("acme", "acme@example.org", PASSWORD)
    envelope = str(await stored(engine, "acme", "password_secret"))
    await overwrite(engine, "acme", "password_secret", flip_one_character(envelope))

    with pytest.raises(VaultError) as raised:
        await vault.credentials("acme")

    message = str(raised.value)
    assert message.startswith("cannot decrypt the password of distributor 'acme': ")
    assert "altered" in message
    assert PASSWORD not in message


async def test_missing_key_names_the_distributor_and_the_key(
    engine: AsyncEngine, vault: TokenVault, secret_keys: list[str]
) -> None:
    await vault.add_distributor("acme", "acme@example.org", PASSWORD)
    other_key = SecretBox.generate_key()

    with pytest.raises(VaultError) as raised:
        await TokenVault(engine, SecretBox([other_key])).credentials("acme")

    message = str(raised.value)
    assert message == (
        f"cannot decrypt the password of distributor 'acme': encrypted under key"
        f" {key_id(secret_keys[0])}, which is not in ERM_BOT_SECRET_KEYS. Fix: add that key"
        " after the newest one and restart, or store the password again with"
        " `erm-bot distributor add acme --email EMAIL --replace`"
    )
    assert PASSWORD not in message
    assert secret_keys[0] not in message
    assert other_key not in message


async def test_check_reports_each_distributor(engine: AsyncEngine, vault: TokenVault) -> None:
    await vault.add_distributor("acme", "acme@example.org", PASSWORD)
    await vault.add_distributor("beta", "beta@example.org", PASSWORD)
    await vault.save_token("beta", StoredToken(CLIENT_ID, TOKEN, EXPIRES))
    await overwrite(engine, "beta", "token_secret", "garbage")

    [acme, (name, problem)] = await vault.check()

    assert acme == ("acme", None)
    assert name == "beta"
    assert problem is not None
    assert problem.startswith("cannot decrypt the access token of distributor 'beta': ")
