"""ErmClient: one async method per ERM GraphQL operation over one shared ``httpx.AsyncClient``.

The client is stateless about who is calling: each method takes the access token to send. Errors
are mapped to the ``erm.errors`` tree here and only here. Queries are retried with backoff on
transient failures; code-generating mutations are never retried, and a mutation whose answer was
lost after it may have reached ERM raises ``UncertainOutcomeError`` so the caller can reconcile.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from erm import operations as ops
from erm.errors import (
    ErmAuthError,
    ErmError,
    ErmNotFoundError,
    ErmRejectedError,
    ErmSchemaError,
    ErmUnavailableError,
    UncertainOutcomeError,
)
from erm.models import (
    AssetAccount,
    CodeEvent,
    CodeType,
    IssuedCode,
    Item,
    ItemFleet,
    Page,
    SignIn,
    SignInMethod,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# The federated gateway ERM's own 2026 production app calls (erm-api.md §8); the older
# production-omnivoltaic-graphql-api host is still named in the handbook. `erm-bot doctor --erm`
# says which host answered and whether erm-bot's documents fit its schema.
PRODUCTION_URL = "https://federated-graphql-api.omnivoltaic.com/graphql"

# Statuses after which a mutation may have been applied upstream (a gateway gave up waiting, or the
# server failed after the resolver ran). 503 means the service refused before doing any work.
_MUTATION_UNCERTAIN_STATUSES = frozenset({500, 502, 504})

# The mutation and its input argument for each code type ERM can generate.
_CODE_MUTATIONS = {
    CodeType.DAYS: (ops.GENERATE_DAYS_CODE, "generateDaysCodeInput"),
    CodeType.FREE: (ops.GENERATE_FREE_CODE, "generateFreeCodeInput"),
    CodeType.RESET: (ops.GENERATE_RESET_CODE, "generateResetCodeInput"),
}

_SIGN_INS = {
    SignInMethod.CLIENT: (ops.SIGN_IN_CLIENT, "signInCredentialsInput"),
    SignInMethod.USER: (ops.SIGN_IN_USER, "signInCredentials"),
}

# However ERM pages, a walk over one list stops here: 20 pages of up to 100 nodes.
MAX_PAGES = 20

CallObserver = Callable[[str, float, ErmError | None], None]
"""Told about every HTTP call to ERM (each attempt): the operation's name, how many seconds it
took, and the error it ended with (None: it succeeded). For metrics; it must not raise or block."""

# GraphQL request errors: ERM did not accept the document, so nothing ran.
_SCHEMA_CODES = frozenset({"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"})
# Codes that mean ERM refused before doing anything (NOT_FOUND / BAD_USER_INPUT: older servers).
_REFUSAL_CODES = frozenset({"BAD_REQUEST", "FORBIDDEN", "BAD_USER_INPUT", "NOT_FOUND"})
_NULL_ROOT = "Cannot return null for non-nullable field"

# Transport failures that prove the request never left this process.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


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


class ErmClient:
    """Speaks ERM's GraphQL API; see ``erm.operations`` for the documents."""

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.config = config or ClientConfig()
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- authentication -------------------------------------------------------------------------

    async def sign_in(self, method: SignInMethod, email: str, password: str) -> SignIn:
        """Sign in with ``signInClient`` or ``signInUser``; any refusal is an ``ErmAuthError``."""
        op, argument = _SIGN_INS[method]
        variables = {argument: {"email": email, "password": password}}
        try:
            data = await self._call(op, variables, token=None)
        except (ErmRejectedError, ErmAuthError) as exc:
            raise ErmAuthError(f"ERM refused the sign-in: {exc.erm_message}") from exc
        except UncertainOutcomeError as exc:
            # Signing in creates nothing that matters; a lost answer is simply unavailability.
            raise ErmUnavailableError(f"ERM did not answer the sign-in ({exc.reason})") from exc
        return self._parse(SignIn.parse, data)

    async def sign_in_client(self, email: str, password: str) -> SignIn:
        """Sign in with distributor credentials."""
        return await self.sign_in(SignInMethod.CLIENT, email, password)

    # -- code generation (never retried) --------------------------------------------------------

    async def generate_days_code(
        self, token: str, item: Item, days: int, description: str | None = None
    ) -> IssuedCode:
        return await self.generate_code(
            token, CodeType.DAYS, item, days=days, description=description
        )

    async def generate_free_code(
        self, token: str, item: Item, description: str | None = None
    ) -> IssuedCode:
        return await self.generate_code(token, CodeType.FREE, item, description=description)

    async def generate_reset_code(
        self, token: str, item: Item, description: str | None = None
    ) -> IssuedCode:
        return await self.generate_code(token, CodeType.RESET, item, description=description)

    async def generate_code(
        self,
        token: str,
        code_type: CodeType,
        item: Item,
        *,
        days: int | None = None,
        description: str | None = None,
    ) -> IssuedCode:
        """Send the mutation for ``code_type`` (days, free or reset) exactly once."""
        if code_type not in _CODE_MUTATIONS:
            raise ValueError(f"ERM has no mutation for {code_type.value}")
        op, argument = _CODE_MUTATIONS[code_type]
        payload: dict[str, Any] = {"itemId": item.id, "description": description}
        if code_type is CodeType.DAYS:
            if days is None:
                raise ValueError("a days code needs days")
            payload["codeDays"] = days
        data = await self._call(op, {argument: payload}, token=token)
        try:
            return IssuedCode.parse(data, item=item, code_type=code_type, days=days)
        except ValueError as exc:
            # A 200 that is not a well-formed code of the kind asked for: ERM may still have made
            # one, so this is reconciled like a lost answer, never shown or retried.
            raise UncertainOutcomeError(op.root_field, f"malformed answer: {exc}") from exc

    # -- queries (retried on transient failures) ------------------------------------------------

    async def code_history(
        self,
        token: str,
        item_id: str,
        distributor_id: str,
        *,
        first: int = 20,
        after: str | None = None,
    ) -> Page[CodeEvent]:
        """One page of an item's code events, newest first."""
        variables = {
            "itemId": item_id,
            "distributorId": distributor_id,
            "first": first,
            "after": after,
        }
        data = await self._call(ops.CODE_HISTORY, variables, token=token)
        return self._parse(lambda d: Page.parse(d, CodeEvent.parse, limit=first), data)

    async def iter_code_history(
        self, token: str, item_id: str, distributor_id: str, *, page_size: int = 50
    ) -> AsyncIterator[CodeEvent]:
        """Every code event of an item, newest first, fetching pages as they are consumed."""

        async def fetch(after: str | None) -> Page[CodeEvent]:
            return await self.code_history(
                token, item_id, distributor_id, first=page_size, after=after
            )

        async for page in walk_pages(fetch, ops.CODE_HISTORY.name):
            for event in page.nodes:
                yield event

    async def latest_codes(
        self, token: str, item_id: str, distributor_id: str, count: int
    ) -> list[CodeEvent]:
        """The newest ``count`` code events of an item."""
        events: list[CodeEvent] = []
        async for event in self.iter_code_history(
            token, item_id, distributor_id, page_size=min(max(count, 1), 100)
        ):
            events.append(event)
            if len(events) >= count:
                break
        return events

    async def item_fleets(
        self,
        token: str,
        client_id: str,
        *,
        first: int = 50,
        after: str | None = None,
        search: str | None = None,
    ) -> Page[ItemFleet]:
        variables = {"clientId": client_id, "first": first, "after": after, "search": search}
        data = await self._call(ops.ITEM_FLEETS, variables, token=token)
        return self._parse(lambda d: Page.parse(d, ItemFleet.parse, limit=first), data)

    async def fleet(self, token: str, fleet_id: str) -> ItemFleet:
        """One fleet with its items and code policy."""
        data = await self._call(ops.FLEET, {"id": fleet_id}, token=token)
        return self._parse(ItemFleet.parse, data)

    async def client_items(
        self,
        token: str,
        client_id: str,
        *,
        first: int = 10,
        after: str | None = None,
        search: str | None = None,
        oem_item_id: str | None = None,
        with_account: bool = False,
        newest_first: bool = True,
    ) -> Page[Item]:
        variables = {
            "clientId": client_id,
            "first": first,
            "after": after,
            "search": search,
            "searchByOemItemId": oem_item_id,
            "assetaccount": with_account,
            "queryorder": "DESC" if newest_first else "ASC",
        }
        data = await self._call(ops.CLIENT_ITEMS, variables, token=token)
        return self._parse(lambda d: Page.parse(d, Item.parse, limit=first), data)

    async def item(self, token: str, item_id: str) -> Item:
        data = await self._call(ops.ITEM, {"itemId": item_id}, token=token)
        return self._parse(Item.parse, data)

    async def asset_accounts(
        self,
        token: str,
        client_id: str,
        *,
        first: int = 10,
        after: str | None = None,
        search: str | None = None,
    ) -> Page[AssetAccount]:
        variables = {"clientId": client_id, "first": first, "after": after, "search": search}
        data = await self._call(ops.ASSET_ACCOUNTS, variables, token=token)
        return self._parse(lambda d: Page.parse(d, AssetAccount.parse, limit=first), data)

    async def asset_account(self, token: str, account_id: str) -> AssetAccount:
        data = await self._call(ops.ASSET_ACCOUNT, {"id": account_id}, token=token)
        return self._parse(AssetAccount.parse, data)

    # -- transport ------------------------------------------------------------------------------

    async def execute(
        self, op: ops.Operation, variables: Mapping[str, Any], *, token: str | None
    ) -> Mapping[str, Any]:
        """Send any operation (the contract check's probes, introspection) and return the data
        under its root field, with the same error mapping and retries as every other call."""
        return await self._call(op, variables, token=token)

    async def _call(
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
            return self._unwrap(op, await self._post(op, body, headers))
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
        except _NOT_SENT as exc:
            raise ErmUnavailableError(f"cannot reach ERM ({_describe(exc)})") from exc
        except (httpx.TransportError, TimeoutError) as exc:
            if op.mutation:
                raise UncertainOutcomeError(op.root_field, _describe(exc)) from exc
            raise ErmUnavailableError(f"ERM did not answer ({_describe(exc)})") from exc

    def _observe(self, operation: str, seconds: float, failure: ErmError | None) -> None:
        if self._observer is None:
            return
        try:
            self._observer(operation, seconds, failure)
        except Exception:  # an observer's bug must not fail the call it watches
            log.exception("the ERM call observer failed")

    def _unwrap(self, op: ops.Operation, response: httpx.Response) -> Mapping[str, Any]:
        status = response.status_code
        if status == 401:
            raise ErmAuthError("ERM refused the access token (HTTP 401)")
        if status >= 500:
            if op.mutation and status in _MUTATION_UNCERTAIN_STATUSES:
                raise UncertainOutcomeError(op.root_field, f"HTTP {status}")
            raise ErmUnavailableError(f"ERM answered HTTP {status}")
        try:
            payload = response.json()
        except ValueError as exc:
            if op.mutation and status == 200:
                raise UncertainOutcomeError(op.root_field, "unreadable answer") from exc
            raise ErmUnavailableError(f"ERM answered HTTP {status} with no JSON body") from exc
        if not isinstance(payload, dict):
            if op.mutation and status == 200:
                raise UncertainOutcomeError(op.root_field, "answer of an unexpected shape")
            raise ErmUnavailableError("ERM answered with an unexpected JSON shape")
        data = _dict(payload.get("data"))
        result = data.get(op.root_field)
        errors = payload.get("errors")
        if errors:
            if op.mutation and isinstance(result, dict):
                # Data and errors together: the code may be made and the answer damaged.
                raise UncertainOutcomeError(op.root_field, "answer with data and errors")
            raise _graphql_error(op, errors, status)
        if status != 200:
            raise ErmUnavailableError(f"ERM answered HTTP {status}")
        if not isinstance(result, dict):
            if op.mutation:
                raise UncertainOutcomeError(op.root_field, "answer without data")
            raise ErmUnavailableError(f"ERM answer has no {op.root_field}")
        return result

    @staticmethod
    def _parse(parse: Callable[[Mapping[str, Any]], T], data: Mapping[str, Any]) -> T:
        try:
            return parse(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ErmUnavailableError(f"ERM answer could not be read ({exc})") from exc


def _graphql_error(op: ops.Operation, errors: object, status: int) -> ErmError:
    """Map the first GraphQL error to the error tree (erm-api.md §4 and §8).

    ERM is NestJS behind Apollo: a refusal for a business or validation reason is ``BAD_REQUEST``
    with the top-level message "Bad Request Exception" and the reason in
    ``extensions.originalError.message`` (a string, or a list from class-validator); older servers
    put it in ``extensions.(exception.)response.message``. Everything but 400/401/403 arrives as
    ``INTERNAL_SERVER_ERROR``, so neither ``NOT_FOUND`` nor ``BAD_USER_INPUT`` is relied on: an id
    that matches nothing shows as a null non-nullable root field, and any other server error on a
    code mutation leaves its outcome unknown.
    """
    first = _dict(errors[0] if isinstance(errors, list) and errors else None)
    extensions = _dict(first.get("extensions"))
    code = extensions.get("code") if isinstance(extensions.get("code"), str) else None
    top = str(first.get("message") or "")
    message = (_reason(extensions) or top or "unknown error")[:500]
    if code == "UNAUTHENTICATED" or top == "Unauthorized":
        return ErmAuthError(f"ERM refused the access token: {message}", message)
    if code in _SCHEMA_CODES:
        return ErmSchemaError(op.name, message)
    if top.startswith(_NULL_ROOT) and _at_root(first, op):
        return ErmNotFoundError(message, code)
    if code in _REFUSAL_CODES or 400 <= _status_of(extensions, status) < 500:
        return ErmRejectedError(message, code)
    if op.mutation:
        return UncertainOutcomeError(op.root_field, f"ERM error {code or 'without a code'}")
    return ErmUnavailableError(f"ERM failed to answer {op.name}: {message}")


def _reason(extensions: Mapping[str, Any]) -> str | None:
    """The reason of a refusal, wherever this version of NestJS put it."""
    holders = (
        extensions.get("originalError"),
        extensions.get("response"),
        _dict(extensions.get("exception")).get("response"),
    )
    for holder in holders:
        message = _dict(holder).get("message")
        if isinstance(message, list):
            parts = [str(m).strip() for m in message if str(m).strip()]
            if parts:
                return "; ".join(parts)
        elif isinstance(message, str) and message.strip():
            return message.strip()
    return None


def _status_of(extensions: Mapping[str, Any], status: int) -> int:
    """The HTTP status ERM meant: older NestJS keeps it beside ``INTERNAL_SERVER_ERROR``."""
    for holder in (
        extensions.get("originalError"),
        extensions.get("exception"),
        extensions,
    ):
        for key in ("statusCode", "status"):
            value = _dict(holder).get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return status


def _at_root(error: Mapping[str, Any], op: ops.Operation) -> bool:
    """Whether a "Cannot return null" error is about the operation's root field itself."""
    path = error.get("path")
    if isinstance(path, list):
        return path == [op.root_field]
    return f".{op.root_field}." in f"{error.get('message')}"


def _dict(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one: error payloads are not trusted."""
    return value if isinstance(value, dict) else {}


async def walk_pages(
    fetch: Callable[[str | None], Awaitable[Page[T]]], what: str, *, max_pages: int = MAX_PAGES
) -> AsyncIterator[Page[T]]:
    """The pages of one ERM list, forward from the first, for as long as each cursor moves on.

    ERM's cursors are opaque and its gateway is not ours: a cursor that repeats, or a list that
    never ends, must not keep a request calling ERM in a loop. The walk stops (and says so in the
    log) rather than fail, since what was read so far is still true.
    """
    seen: set[str] = set()
    after: str | None = None
    for _ in range(max_pages):
        page = await fetch(after)
        yield page
        if not page.has_next or not page.end_cursor:
            return
        if page.end_cursor in seen:
            log.warning("erm list cursor did not advance; stopping", extra={"operation": what})
            return
        seen.add(page.end_cursor)
        after = page.end_cursor
    log.warning("erm list longer than the walk allows; stopping", extra={"operation": what})


def _describe(exc: BaseException) -> str:
    """A short reason naming the failure kind, never including request data or headers."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__
