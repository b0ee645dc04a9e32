"""Fixtures shared by the whole suite: a migrated database on SQLite and PostgreSQL, secret keys.

Database tests take ``engine`` (or ``database``) and so run once per backend:

- ``sqlite``: a fresh file in ``tmp_path``;
- ``postgres`` (marked ``postgres``): the server at ``ERM_BOT_TEST_POSTGRES_URL``, each test in a
  schema of its own that is dropped afterwards. Without that variable these tests are skipped,
  unless ``ERM_BOT_REQUIRE_POSTGRES=1`` (CI), which makes them fail instead.

    ERM_BOT_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/postgres \\
        ERM_BOT_REQUIRE_POSTGRES=1 python -m pytest
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import TestDatabase, postgres_server_url

from erm.db import create_engine, upgrade
from erm.secret_box import SecretBox
from erm.vault import TokenVault


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestDatabase]:
    """An empty database of each backend, private to the test."""
    if request.param == "sqlite":
        path = tmp_path / "erm-bot.db"
        yield TestDatabase("sqlite", f"sqlite+aiosqlite:///{path}", path=path)
        return

    url = postgres_server_url()
    schema = f"test_{secrets.token_hex(6)}"
    admin = create_engine(url)
    try:
        async with admin.begin() as connection:
            await connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            yield TestDatabase(
                "postgresql",
                url,
                connect_args={"server_settings": {"search_path": schema}},
                schema=schema,
            )
        finally:
            async with admin.begin() as connection:
                await connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await admin.dispose()


@pytest.fixture
def database_url(database: TestDatabase) -> str:
    """The test database's URL. On PostgreSQL, pair it with ``database.connect_args``."""
    return database.url


@pytest.fixture
async def engine(database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    """An engine on the test database, migrated to the newest revision, disposed afterwards."""
    engine = database.create_engine()
    try:
        await upgrade(engine)
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def secret_keys() -> list[str]:
    """A fresh key list in ``ERM_BOT_SECRET_KEYS`` form (one key)."""
    return [SecretBox.generate_key()]


@pytest.fixture
def secret_box(secret_keys: list[str]) -> SecretBox:
    return SecretBox(secret_keys)


@pytest.fixture
def vault(engine: AsyncEngine, secret_box: SecretBox) -> TokenVault:
    """An empty token vault on the test database."""
    return TokenVault(engine, secret_box)
