"""Liveness of pooled PostgreSQL connections, by how long each sat idle.

Servers, proxies and load balancers drop connections left idle, so a pooled connection idle
:data:`IDLE_CHECK_AFTER` seconds is pinged before use and replaced when it is gone; one in steady
use is not. SQLAlchemy's ``pool_pre_ping`` pings on every checkout, at three round trips with
asyncpg (BEGIN, a ping, ROLLBACK): more than most of our transactions cost themselves.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy
from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger(__name__)

IDLE_CHECK_AFTER = 30.0  # seconds
POOL_RECYCLE = 1800  # seconds: no connection lives longer (a server restart, a failover)


def check_when_idle(engine: Engine, after: float) -> None:
    """Ping a pooled connection at checkout only when it sat idle ``after`` seconds or more; a
    failed ping makes the pool replace it (``DisconnectionError``: it retries with a new one)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi: DBAPIConnection, record: ConnectionPoolEntry, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < after:
            return  # new, or in steady use
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:
            log.info("an idle database connection was gone: replaced (%s)", type(exc).__name__)
            raise sqlalchemy.exc.DisconnectionError("idle connection gone") from None
