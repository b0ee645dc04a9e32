"""The GraphQL transport under :class:`erm.client.ErmClient`: one shared ``httpx.AsyncClient``.

It sends an operation and returns the data under its root field; what an answer means is
:mod:`erm.answers`'s to say. Queries are retried with backoff on transient failures; code-generating
mutations are sent exactly once. Every attempt is timed under a hard deadline and reported to the
:data:`CallObserver`. Tests plug fakes in below it, at httpx's ``transport=``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from erm import operations as ops
from erm.answers import transport_error, unwrap
from erm.errors import ErmError, ErmUnavailableError

__all__ = ["PRODUCTION_URL", "CallObserver", "ClientConfig", "GraphQLTransport"]

log = logging.getLogger("erm.client")  # one logger name for everything erm-bot asks of ERM

# The federated gateway ERM's own 2026 production app calls (erm-api.md §8); the older
# production-omnivoltaic-graphql-api host is still named in the handbook. `erm-bot doctor --erm`
# says which host answered and whether erm-bot's documents fit its schema.
PRODUCTION_URL = "https://federated-graphql-api.omnivoltaic.com/graphql"

CallObserver = Callable[[str, float, ErmError | None], None]
"""Told about every HTTP call to ERM (each attempt): the operation's name, how many seconds it
took, and the error it ended with (None: it succeeded). For metrics; it must not raise or block."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Where ERM is and how long to wait for it."""

    url: str = PRODUCTION_URL
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    # A hard deadline for one call, however the server drips its answer.
    total_timeout: float = 20.0
    query_attempts: int = 3
    retry_backoff: float = 0.2
    max_connections: int = 100
    user_agent: str = "erm-bot"


class GraphQLTransport:
    """Sends ERM operations over one connection pool, with retries, deadlines and timing."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.config = config
        self._observer = observer
        cfg = self.config
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(cfg.read_timeout, connect=cfg.connect_timeout),
            limits=httpx.Limits(
                max_connections=cfg.max_connections, max_keepalive_connections=cfg.max_connections
            ),
            headers={"User-Agent": cfg.user_agent, "Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self, op: ops.Operation, variables: Mapping[str, Any], *, token: str | None
    ) -> Mapping[str, Any]:
        """Send ``op`` and return the data under its root field, retrying queries only."""
        attempts = 1 if op.mutation else max(1, self.config.query_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return await self._send(op, variables, token)
            except ErmUnavailableError as exc:
                if attempt == attempts:
                    raise
                delay = self.config.retry_backoff * 2 ** (attempt - 1)
                delay *= 0.5 + random.random()
                log.info(
                    "erm query failed, retrying",
                    extra={"operation": op.name, "attempt": attempt, "error": str(exc)},
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self, op: ops.Operation, variables: Mapping[str, Any], token: str | None
    ) -> Mapping[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {"operationName": op.name, "query": op.document, "variables": dict(variables)}
        started = time.perf_counter()
        failure: ErmError | None = None
        try:
            return unwrap(op, await self._post(op, body, headers))
        except ErmError as exc:
            failure = exc
            raise
        finally:
            seconds = time.perf_counter() - started
            log.debug("erm call", extra={"operation": op.name, "ms": round(seconds * 1e3, 1)})
            self._observe(op.name, seconds, failure)

    async def _post(
        self, op: ops.Operation, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> httpx.Response:
        try:
            async with asyncio.timeout(self.config.total_timeout):
                return await self._http.post(self.config.url, json=body, headers=headers)
        except (httpx.TransportError, TimeoutError) as exc:
            raise transport_error(op, exc) from exc

    def _observe(self, operation: str, seconds: float, failure: ErmError | None) -> None:
        if self._observer is None:
            return
        try:
            self._observer(operation, seconds, failure)
        except Exception:  # an observer's bug must not fail the call it watches
            log.exception("the ERM call observer failed")
