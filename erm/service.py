"""ErmService: what the bot asks of ERM, per distributor, with sign-in and reconciliation handled.

- Sessions: the access token is read from the vault or obtained by signing in, kept in memory and
  renewed shortly before its JWT ``exp``; concurrent callers share one sign-in (single flight), and
  an ``UNAUTHENTICATED`` answer causes exactly one fresh sign-in and one retry.
- Items: what a person types (ERM id, OEM item id, seller item id) becomes an ``Item``, cached.
- Codes: every code mutation carries a short reference in its description. When the answer is lost
  the item's history is read and the reference looked for, so the caller learns either the code ERM
  created or that none exists; the mutation itself is never sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from erm.client import ErmClient, walk_pages
from erm.errors import (
    ErmAuthError,
    ErmNotFoundError,
    ErmRejectedError,
    ErmUnavailableError,
    InvalidInputError,
    ItemNotFoundError,
    UncertainOutcomeError,
)
from erm.inputs import MAX_HISTORY, check_days, check_item_ref, check_note
from erm.models import (
    ERM_ID_PATTERN,
    AssetAccount,
    CodeEvent,
    CodeType,
    IssuedCode,
    Item,
    ItemFleet,
    Page,
    SignIn,
    SignInMethod,
    token_claims,
)
from erm.reconcile import (
    CodeOutcomePendingError,
    PendingCode,
    Settlement,
    Verdict,
    code_description,
    judge,
)
from erm.search import SEARCH_MATCHES, ItemMatches, merged, phone_digits
from erm.vault import DistributorInfo, StoredToken, TokenVault

log = logging.getLogger(__name__)

T = TypeVar("T")

# Another distributor's id is, to this distributor, an id that matches nothing.
_NOT_YOURS_CODES = frozenset({"FORBIDDEN"})


def _not_found(exc: ErmRejectedError) -> bool:
    return isinstance(exc, ErmNotFoundError) or exc.erm_code in _NOT_YOURS_CODES


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    # Sign in again when the token has less than this many seconds left.
    refresh_margin: float = 120.0
    item_cache_ttl: float = 600.0
    item_cache_size: int = 5000
    # After a lost mutation answer, the history is read at once, then after reconcile_delay
    # seconds, doubling up to reconcile_max_delay: for reconcile_quick seconds while the person
    # waits, then in the background until reconcile_window seconds have passed. The window must
    # outlast ERM's plausible commit delay behind its gateway (erm-api.md §8).
    reconcile_delay: float = 0.5
    reconcile_max_delay: float = 15.0
    reconcile_quick: float = 2.0
    reconcile_window: float = 120.0
    reconcile_depth: int = 10
    # How far before the request ERM's clock may date its code (untagged match), and how far
    # before it any new code means the history changed.
    reconcile_likely_skew: float = 5.0
    reconcile_changed_skew: float = 120.0


@dataclass(frozen=True, slots=True)
class _Session:
    distributor_id: str  # what ERM's history and client queries take (see SignIn)
    token: str
    expires_at: float | None


def token_expiry(token: str) -> float | None:
    """The JWT ``exp`` claim, read without verification: only to schedule the next sign-in."""
    exp = token_claims(token).get("exp")
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class ErmService:
    """One entry point per thing the bot does with ERM, for a named distributor."""

    def __init__(
        self,
        client: ErmClient,
        vault: TokenVault,
        config: ServiceConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.vault = vault
        self.config = config or ServiceConfig()
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._items: dict[tuple[str, str], tuple[float, Item]] = {}
        self.sign_ins = 0  # how many times this service signed in (observability and tests)

    # -- distributors ---------------------------------------------------------------------------

    async def add_distributor(
        self,
        name: str,
        email: str,
        password: str,
        *,
        sign_in: SignInMethod = SignInMethod.CLIENT,
        replace: bool = False,
    ) -> SignIn:
        """Check the credentials with one sign-in, then store them (and the token) encrypted."""
        if not email.strip() or not password:
            raise InvalidInputError("both an email and a password are needed")
        signed = await self.client.sign_in(sign_in, email.strip(), password)
        self.sign_ins += 1
        await self.vault.add_distributor(
            name,
            email.strip(),
            password,
            client_id=signed.distributor_id,
            sign_in=sign_in,
            replace=replace,
        )
        await self._remember(name, signed)
        return signed

    async def distributors(self) -> list[DistributorInfo]:
        return await self.vault.list_distributors()

    async def client_id(self, distributor: str) -> str:
        """The ERM id of the distributor, as its queries take it."""
        return (await self._session(distributor)).distributor_id

    # -- codes ----------------------------------------------------------------------------------

    async def generate_code(
        self,
        distributor: str,
        code_type: CodeType,
        item_ref: str,
        *,
        days: int | None = None,
        note: str | None = None,
        reference: str | None = None,
    ) -> IssuedCode:
        """Generate one code; on a lost answer, report what ERM's history shows instead."""
        if code_type is CodeType.DAYS:
            days = check_days(days)
        elif code_type in (CodeType.FREE, CodeType.RESET):
            if days is not None:
                raise InvalidInputError(f"a {code_type.name.lower()} code takes no days")
        else:
            raise InvalidInputError(f"codes of type {code_type.value} cannot be generated")
        note = check_note(note)
        item = await self.resolve_item(distributor, item_ref)
        reference = reference or secrets.token_hex(4)
        description = code_description(note, reference)

        async def mutate(session: _Session) -> IssuedCode:
            return await self.client.generate_code(
                session.token, code_type, item, days=days, description=description
            )

        started = self._clock()
        try:
            return await self._authed(distributor, mutate)
        except UncertainOutcomeError as exc:
            log.warning(
                "code mutation outcome unknown, reconciling",
                extra={"distributor": distributor, "item": item.id, "reason": exc.reason},
            )
            pending = PendingCode(
                distributor, item, code_type, days, reference, description, started, exc.reason
            )
        # A first, short look: most lost answers are in the history by now.
        settled = await self.settle(pending, patience=self.config.reconcile_quick)
        if settled.code is not None:
            return settled.code
        raise CodeOutcomePendingError(pending, settled)

    async def settle(self, pending: PendingCode, *, patience: float | None = None) -> Settlement:
        """Read the item's history until it shows the outcome of ``pending``, or ``patience``
        seconds (default: the reconcile window) have passed; then the last verdict stands.

        A verdict of ``NONE`` after the whole window is the only one that means nothing was
        issued. The history is read at growing intervals, never more than the window needs.
        """
        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (cfg.reconcile_window if patience is None else patience)
        delay = cfg.reconcile_delay
        settled = Settlement(pending, Verdict.UNREADABLE)
        while True:
            try:
                events = await self._latest_codes(
                    pending.distributor, pending.item, cfg.reconcile_depth
                )
            except (ErmUnavailableError, ErmAuthError, ErmRejectedError) as exc:
                log.info("reconciliation could not read the history", extra={"error": str(exc)})
            else:
                settled = judge(
                    pending,
                    events,
                    likely_skew=cfg.reconcile_likely_skew,
                    changed_skew=cfg.reconcile_changed_skew,
                )
                if settled.verdict.final:
                    return settled
            remaining = deadline - loop.time()
            if remaining <= 0:
                return settled
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, cfg.reconcile_max_delay)

    # -- lookups --------------------------------------------------------------------------------

    async def resolve_item(self, distributor: str, item_ref: str) -> Item:
        """Turn an OEM item id, a seller item id or an ERM id into the distributor's ``Item``."""
        ref = check_item_ref(item_ref)
        key = (distributor, ref.casefold())
        now = self._clock()
        cached = self._items.get(key)
        if cached and cached[0] > now:
            return cached[1]
        item = await self._authed(distributor, lambda s: self._find_item(s, ref))
        if len(self._items) >= self.config.item_cache_size:
            self._items.clear()
        expires = now + self.config.item_cache_ttl
        for alias in {ref.casefold(), item.id.casefold(), item.oem_item_id.casefold()}:
            self._items[(distributor, alias)] = (expires, item)
        return item

    async def _find_item(self, session: _Session, ref: str) -> Item:
        if ERM_ID_PATTERN.match(ref):
            try:
                return await self.client.item(session.token, ref.lower())
            except ErmRejectedError as exc:
                if _not_found(exc):
                    raise ItemNotFoundError(
                        f"no item with ERM id {ref} among this distributor's items"
                    ) from exc
                raise
        by_oem = await self.client.client_items(
            session.token, session.distributor_id, first=2, oem_item_id=ref
        )
        if len(by_oem.nodes) == 1:
            return by_oem.nodes[0]
        wanted = ref.casefold()
        matches = await self.client.client_items(
            session.token, session.distributor_id, first=20, search=ref
        )
        exact = [
            i
            for i in matches.nodes
            if wanted in {i.oem_item_id.casefold(), (i.seller_item_id or "").casefold()}
        ]
        if len(exact) == 1:
            return exact[0]
        if len(exact) > 1:
            labels = ", ".join(i.label for i in exact[:5])
            raise ItemNotFoundError(f"{ref} matches several items ({labels}): use the ERM id")
        raise ItemNotFoundError(
            f"no item {ref} among this distributor's items "
            "(looked for it as an OEM item id and as a seller item id)"
        )

    async def code_history(
        self, distributor: str, item_ref: str, count: int = 5
    ) -> tuple[Item, list[CodeEvent]]:
        """The item and its newest ``count`` code events (at most 50)."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_HISTORY:
            raise InvalidInputError(f"the count must be from 1 to {MAX_HISTORY}")
        item = await self.resolve_item(distributor, item_ref)
        return item, await self._latest_codes(distributor, item, count)

    async def _latest_codes(self, distributor: str, item: Item, count: int) -> list[CodeEvent]:
        return await self._authed(
            distributor,
            lambda s: self.client.latest_codes(s.token, item.id, s.distributor_id, count),
        )

    async def item_fleets(self, distributor: str) -> list[ItemFleet]:
        """Every fleet of the distributor (all pages)."""

        async def fetch(session: _Session) -> list[ItemFleet]:
            async def page(after: str | None) -> Page[ItemFleet]:
                return await self.client.item_fleets(
                    session.token, session.distributor_id, first=100, after=after
                )

            return [f async for p in walk_pages(page, "item fleets") for f in p.nodes]

        return await self._authed(distributor, fetch)

    async def fleets_named(self, distributor: str, name: str) -> list[ItemFleet]:
        """The fleets whose name contains ``name`` (case-insensitive), in ERM's order; a fleet
        named exactly so, or with that ERM id, comes alone (a name may be part of another)."""
        wanted = name.strip().casefold()
        if not wanted:
            raise InvalidInputError("name the fleet (see the list of fleets)")
        fleets = await self.item_fleets(distributor)
        exact = [f for f in fleets if wanted in {f.name.casefold(), f.id.casefold()}]
        return exact or [f for f in fleets if wanted in f.name.casefold()]

    async def fleet(self, distributor: str, name: str) -> ItemFleet:
        """One fleet, by ERM id or (part of) its name, which must match this fleet only."""
        candidates = await self.fleets_named(distributor, name)
        if len(candidates) != 1:
            known = ", ".join(f.name for f in candidates) or "none"
            what = "several fleets match" if candidates else "no fleet is named"
            raise InvalidInputError(f"{what} {name.strip()!r}; matching fleets: {known}")
        return await self.fleet_by_id(distributor, candidates[0].id)

    async def fleet_by_id(self, distributor: str, fleet_id: str) -> ItemFleet:
        """One fleet with its items and code policy."""
        return await self._authed(distributor, lambda s: self.client.fleet(s.token, fleet_id))

    async def client_items(
        self,
        distributor: str,
        *,
        search: str | None = None,
        after: str | None = None,
        page_size: int = 10,
    ) -> Page[Item]:
        if search is not None:
            search = check_note(search)
        return await self._authed(
            distributor,
            lambda s: self.client.client_items(
                s.token, s.distributor_id, first=page_size, after=after, search=search
            ),
        )

    async def find_items(
        self, distributor: str, text: str, *, limit: int = SEARCH_MATCHES
    ) -> ItemMatches:
        """The items whose ids match ``text`` and the items of clients whose name or phone
        matches it: two ERM lists of at most ``limit`` each (see :mod:`erm.search`)."""
        clean = check_note(text)
        if not clean:
            raise InvalidInputError("type part of an item id, a client's name or a phone number")
        phone = phone_digits(clean)

        async def fetch(s: _Session) -> tuple[Page[Item], Page[AssetAccount]]:
            return await asyncio.gather(
                self.client.client_items(s.token, s.distributor_id, first=limit, search=clean),
                self.client.asset_accounts(
                    s.token, s.distributor_id, first=limit, search=phone or clean
                ),
            )

        by_id, by_client = await self._authed(distributor, fetch)
        return merged(by_id, by_client, clean, phone)

    async def asset_accounts(
        self,
        distributor: str,
        *,
        search: str | None = None,
        after: str | None = None,
        page_size: int = 10,
    ) -> Page[AssetAccount]:
        if search is not None:
            search = check_note(search)
        return await self._authed(
            distributor,
            lambda s: self.client.asset_accounts(
                s.token, s.distributor_id, first=page_size, after=after, search=search
            ),
        )

    async def asset_account(self, distributor: str, ref: str) -> AssetAccount:
        """An asset account by its ERM id, or the account of the item ``ref`` names."""
        ref = check_item_ref(ref)
        if ERM_ID_PATTERN.match(ref):
            account_id = ref.lower()
            try:
                return await self._authed(
                    distributor, lambda s: self.client.asset_account(s.token, account_id)
                )
            except ErmRejectedError as exc:
                if not _not_found(exc):
                    raise
        item = await self.resolve_item(distributor, ref)
        if not item.account_id:
            raise InvalidInputError(f"{item.label} has no asset account yet")
        account_id = item.account_id
        return await self._authed(
            distributor, lambda s: self.client.asset_account(s.token, account_id)
        )

    # -- sessions -------------------------------------------------------------------------------

    async def run_as(self, distributor: str, call: Callable[[str, str], Awaitable[T]]) -> T:
        """Run ``call(access_token, distributor_id)`` for a distributor, signing in as needed;
        for callers that send their own documents (the contract check)."""
        return await self._authed(distributor, lambda s: call(s.token, s.distributor_id))

    async def _authed(self, distributor: str, call: Callable[[_Session], Awaitable[T]]) -> T:
        """Run ``call`` with a valid session; on ``UNAUTHENTICATED`` sign in once and retry once."""
        session = await self._session(distributor)
        try:
            return await call(session)
        except ErmAuthError:
            log.info("erm token refused, signing in again", extra={"distributor": distributor})
            fresh = await self._session(distributor, stale=session)
            return await call(fresh)

    async def _session(self, distributor: str, *, stale: _Session | None = None) -> _Session:
        current = self._sessions.get(distributor)
        if current is not None and current is not stale and self._fresh(current):
            return current
        lock = self._locks.setdefault(distributor, asyncio.Lock())
        async with lock:
            current = self._sessions.get(distributor)
            if current is not None and current is not stale and self._fresh(current):
                return current  # another caller signed in while this one waited
            if stale is None:
                stored = await self.vault.load_token(distributor)
                if stored is not None:
                    expires = stored.expires_at.timestamp() if stored.expires_at else None
                    candidate = _Session(stored.client_id, stored.access_token, expires)
                    if self._fresh(candidate):
                        self._sessions[distributor] = candidate
                        return candidate
            creds = await self.vault.credentials(distributor)
            try:
                signed = await self.client.sign_in(creds.sign_in, creds.email, creds.password)
            except ErmAuthError as exc:
                raise ErmAuthError(
                    f"{exc} (stored credentials of distributor {creds.name!r}; update them with "
                    f"`erm-bot distributor add {creds.name} --email ... --replace`)"
                ) from exc
            self.sign_ins += 1
            return await self._remember(distributor, signed)

    async def _remember(self, distributor: str, signed: SignIn) -> _Session:
        expires = token_expiry(signed.access_token)
        session = _Session(signed.distributor_id, signed.access_token, expires)
        self._sessions[distributor] = session
        expires_at = datetime.fromtimestamp(expires, UTC) if expires is not None else None
        await self.vault.save_token(
            distributor, StoredToken(signed.distributor_id, signed.access_token, expires_at)
        )
        return session

    def _fresh(self, session: _Session) -> bool:
        if session.expires_at is None:
            return True
        return session.expires_at - self._clock() > self.config.refresh_margin

    def forget_sessions(self) -> None:
        """Drop in-memory tokens and cached items (after rotating credentials, in tests)."""
        self._sessions.clear()
        self._items.clear()
