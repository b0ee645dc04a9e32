"""ErmClient: one async method per ERM GraphQL operation, each turning ERM's answer into models.

The client is stateless about who is calling: each method takes the access token to send. The
calls go through :class:`~erm.transport.GraphQLTransport` (one shared ``httpx.AsyncClient``;
queries retried with backoff on transient failures, code-generating mutations never retried), and
ERM's answers are mapped to the ``erm.errors`` tree in :mod:`erm.answers`. A mutation whose answer
was lost after it may have reached ERM raises ``UncertainOutcomeError`` so the caller can reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from erm import operations as ops
from erm.errors import ErmAuthError, ErmRejectedError, ErmUnavailableError, UncertainOutcomeError
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

# PRODUCTION_URL and ClientConfig are re-exported: adapters/ and tests import them from here.
from erm.transport import PRODUCTION_URL, CallObserver, ClientConfig, GraphQLTransport

__all__ = ["MAX_PAGES", "PRODUCTION_URL", "ClientConfig", "ErmClient", "walk_pages"]

log = logging.getLogger(__name__)

T = TypeVar("T")

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
        self._transport = GraphQLTransport(self.config, transport=transport, observer=observer)

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
        await self._transport.aclose()

    # -- authentication -------------------------------------------------------------------------

    async def sign_in(self, method: SignInMethod, email: str, password: str) -> SignIn:
        """Sign in with ``signInClient`` or ``signInUser``; any refusal is an ``ErmAuthError``."""
        op, argument = _SIGN_INS[method]
        variables = {argument: {"email": email, "password": password}}
        try:
            data = await self._transport.call(op, variables, token=None)
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
        data = await self._transport.call(op, {argument: payload}, token=token)
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
        data = await self._transport.call(ops.CODE_HISTORY, variables, token=token)
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
        data = await self._transport.call(ops.ITEM_FLEETS, variables, token=token)
        return self._parse(lambda d: Page.parse(d, ItemFleet.parse, limit=first), data)

    async def fleet(self, token: str, fleet_id: str) -> ItemFleet:
        """One fleet with its items and code policy."""
        data = await self._transport.call(ops.FLEET, {"id": fleet_id}, token=token)
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
        data = await self._transport.call(ops.CLIENT_ITEMS, variables, token=token)
        return self._parse(lambda d: Page.parse(d, Item.parse, limit=first), data)

    async def item(self, token: str, item_id: str) -> Item:
        data = await self._transport.call(ops.ITEM, {"itemId": item_id}, token=token)
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
        data = await self._transport.call(ops.ASSET_ACCOUNTS, variables, token=token)
        return self._parse(lambda d: Page.parse(d, AssetAccount.parse, limit=first), data)

    async def asset_account(self, token: str, account_id: str) -> AssetAccount:
        data = await self._transport.call(ops.ASSET_ACCOUNT, {"id": account_id}, token=token)
        return self._parse(AssetAccount.parse, data)

    # -- any operation --------------------------------------------------------------------------

    async def execute(
        self, op: ops.Operation, variables: Mapping[str, Any], *, token: str | None
    ) -> Mapping[str, Any]:
        """Send any operation (the contract check's probes, introspection) and return the data
        under its root field, with the same error mapping and retries as every other call."""
        return await self._transport.call(op, variables, token=token)

    @staticmethod
    def _parse(parse: Callable[[Mapping[str, Any]], T], data: Mapping[str, Any]) -> T:
        try:
            return parse(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ErmUnavailableError(f"ERM answer could not be read ({exc})") from exc


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
