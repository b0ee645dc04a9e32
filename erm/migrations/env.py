"""Alembic environment, entered only through :func:`erm.db.upgrade` and :func:`erm.db.is_current`.

There is no alembic.ini and no logging setup here: the caller hands over a connection that is
already inside the upgrade's transaction (``config.attributes["connection"]``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, MetaData

import erm.distributors  # noqa: F401  (registers erm's tables on Base.metadata for autogenerate)
from erm.db import Base

config = context.config

if context.is_offline_mode():
    raise RuntimeError("erm migrations run online only, through erm.db.upgrade()")

connection = config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("erm migrations need a connection: run them through erm.db.upgrade()")

target_metadata: MetaData | list[MetaData] = config.attributes.get("target_metadata", Base.metadata)

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by rebuilding
    compare_type=True,
)

with context.begin_transaction():
    context.run_migrations()
