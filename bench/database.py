"""The bench's databases: is PostgreSQL there, a fresh database for one run, the bench users,
the settings of a benchmarked erm-bot.

Shared by ``python -m bench`` (``bench.run``), ``bench.scaling`` and ``bench.storage``; it
imports none of them, so each can import it (and ``bench.run`` can import the other two).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping

from bench.erm_server import DISTRIBUTOR
from bench.slack_bench import slack_user
from bench.telegram_bench import telegram_user
from bench.whatsapp_bench import wa_id

DEFAULT_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PROBE_TIMEOUT = 3.0  # seconds: a local server answers in milliseconds


RAISED_LIMIT = "1000000"  # per-user and per-distributor limits out of the way of the load


def bot_environment(erm_base: str, database: str, log_level: str) -> dict[str, str]:
    """The settings every benchmarked ``erm-bot`` gets: this ERM, this database, a fresh key."""
    from erm.secret_box import SecretBox

    return {
        "ERM_API_URL": f"{erm_base}/graphql",
        "ERM_BOT_DATABASE_URL": database,
        "ERM_BOT_SECRET_KEYS": SecretBox.generate_key(),
        "ERM_BOT_CODES_PER_USER_HOUR": RAISED_LIMIT,
        "ERM_BOT_CODES_PER_DISTRIBUTOR_HOUR": RAISED_LIMIT,
        "ERM_BOT_LOOKUPS_PER_USER_MINUTE": RAISED_LIMIT,
        "ERM_BOT_LOG_LEVEL": log_level,
    }


def shown(url: str) -> str:
    """``url`` without its password, for output."""
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


async def postgres_unreachable(admin_url: str, within: float = PROBE_TIMEOUT) -> str | None:
    """Why PostgreSQL does not answer at ``admin_url`` (``None``: it answered ``SELECT 1``).

    One short attempt, so that ``python -m bench`` can skip its PostgreSQL cells quickly on a
    machine without a server instead of failing after the SQLite cells.
    """
    from sqlalchemy import text

    from erm.db import create_engine

    try:
        engine = create_engine(admin_url, connect_args={"timeout": within})
    except Exception as exc:  # a malformed URL, a missing driver: say which
        return f"{shown(admin_url)}: {type(exc).__name__}: {exc}"
    try:
        async with asyncio.timeout(within):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except TimeoutError:
        return f"{shown(admin_url)}: no answer within {within:g} s"
    except Exception as exc:  # refused, authentication, no such database...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{shown(admin_url)}: {type(exc).__name__}" + (f": {reason}" if reason else "")
    finally:
        await engine.dispose()
    return None


@contextlib.asynccontextmanager
async def postgres_database(admin_url: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database for one run (its URL); dropped afterwards."""
    from sqlalchemy import make_url

    from erm.db import create_engine

    name = f"erm_bot_bench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(admin_url).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            async with admin.connect() as connection:
                await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


async def prepare_database(env: Mapping[str, str], workers: int, chats: int) -> None:
    """Add distributor acme (one sign-in) and grant the bench users, before the bot starts.

    ``workers`` Slack users and WhatsApp senders, ``chats`` Telegram users. Bench users are
    supervisors: they issue days codes directly. Agents' days codes go to approval above 30 days
    or after 10 codes in 24 hours (the default approval policy), which is a different path from
    the one measured here.
    """
    from adapters.runtime import open_runtime
    from adapters.settings import Settings
    from bot.roles import Role
    from bot.storage.grants import GrantStore
    from erm.sandbox import ACME

    settings = Settings.model_validate({name.lower(): value for name, value in env.items()})
    async with open_runtime(settings) as runtime:
        await runtime.service.add_distributor(ACME.name, ACME.email, ACME.password)
        grants = GrantStore(runtime.engine)
        for worker in range(workers):
            await grants.grant("slack", slack_user(worker), Role.SUPERVISOR, DISTRIBUTOR, "bench")
        for chat in range(chats):
            user = str(telegram_user(chat).id)
            await grants.grant("telegram", user, Role.SUPERVISOR, DISTRIBUTOR, "bench")
        for sender in range(workers):
            await grants.grant("whatsapp", wa_id(sender), Role.SUPERVISOR, DISTRIBUTOR, "bench")
