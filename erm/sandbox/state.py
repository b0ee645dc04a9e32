"""The sandbox's data, rules and operations, independent of GraphQL and HTTP.

:class:`SandboxState` is what the schema's resolvers call: sign-in and token checks, the scoped
lookups and lists, and code issuing with the fleet policy of erm-api.md §3. Every check runs before
anything changes, so a refused request leaves the state as it was. Time comes only from
``config.clock`` so tests can move it forward instead of sleeping.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from erm.sandbox.codes import GeneratedCode, generate_code, next_hash_top
from erm.sandbox.errors import (
    BAD_USER_INPUT,
    FORBIDDEN,
    MSG_ACCOUNT_FORBIDDEN,
    MSG_ACCOUNT_NOT_FOUND,
    MSG_COUNT_INCREASE,
    MSG_CREDIT_STACK,
    MSG_DAY_LIMIT,
    MSG_DAYS_RANGE,
    MSG_FLEET_FORBIDDEN,
    MSG_FLEET_NOT_FOUND,
    MSG_FORBIDDEN,
    MSG_FREE_LIMIT,
    MSG_INTERVAL,
    MSG_INVALID_CREDENTIALS,
    MSG_INVALID_ID,
    MSG_ITEM_FORBIDDEN,
    MSG_ITEM_NOT_FOUND,
    MSG_RESET_LIMIT,
    MSG_TOTAL_LIMIT,
    MSG_UNAUTHORIZED,
    NOT_FOUND,
    UNAUTHENTICATED,
    SandboxError,
)
from erm.sandbox.faults import FaultConfig, FaultInjector
from erm.sandbox.model import (
    AssetAccount,
    CodeEvent,
    CodePolicy,
    CodeSystem,
    CodeType,
    Distributor,
    Fleet,
    Item,
)
from erm.sandbox.pagination import connection

MIN_CODE_DAYS = 1
MAX_CODE_DAYS = 1095
DAY_SECONDS = 86_400.0
DEFAULT_POLICY = CodePolicy()
"""Applied to an item that belongs to no fleet."""

_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
_TOKEN_CACHE_SIZE = 4096
_JWT_OPTIONS: Any = {
    "verify_exp": False,  # checked against the injectable clock instead
    "verify_iat": False,
    "verify_nbf": False,
    "require": ["sub", "exp"],
}


@dataclass(slots=True)
class SandboxConfig:
    """Knobs of one sandbox instance."""

    token_ttl_seconds: int = 3600
    clock: Callable[[], float] = time.time
    """Epoch seconds; the only source of time for tokens, rules and ``createdAt``."""
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    """HS256 key; random per instance, so a restarted sandbox rejects old tokens like ERM would."""
    code_secret: bytes = b"erm-sandbox-acp1-stand-in-secret"
    """Key of the stand-in ACP1 recipe; fixed so the same seed gives the same codes."""


@dataclass(slots=True)
class Paging:
    """Relay arguments of one list query."""

    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None


class SandboxState:
    """All sandbox data plus the operations the GraphQL schema exposes."""

    def __init__(
        self, config: SandboxConfig | None = None, faults: FaultConfig | None = None
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.faults = faults if faults is not None else FaultConfig()
        self.fault_injector = FaultInjector()
        self.distributors: dict[str, Distributor] = {}
        self.fleets: dict[str, Fleet] = {}
        self.items: dict[str, Item] = {}
        self.accounts: dict[str, AssetAccount] = {}
        self._by_email: dict[str, Distributor] = {}
        self._items_of: dict[str, list[Item]] = {}
        self._fleets_of: dict[str, list[Fleet]] = {}
        self._accounts_of: dict[str, list[AssetAccount]] = {}
        self._token_cache: dict[str, tuple[str, float]] = {}
        self._id_counter = 0
        self._id_machine = "5ad0b0c0de"
        self.seed = 0
        """The seed the data was generated from (re-seeding uses it again)."""

    # -- building ---------------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget all data (faults and config stay), e.g. before seeding again."""
        for table in (self.distributors, self.fleets, self.items, self.accounts, self._by_email):
            table.clear()
        self._items_of.clear()
        self._fleets_of.clear()
        self._accounts_of.clear()
        self._token_cache.clear()
        self._id_counter = 0

    def new_id(self, at: float) -> str:
        """A fresh ObjectId-shaped id: 4 bytes of time, a fixed middle, a counter."""
        self._id_counter += 1
        return f"{int(at) & 0xFFFFFFFF:08x}{self._id_machine}{self._id_counter & 0xFFFFFF:06x}"

    def add_distributor(self, distributor: Distributor) -> None:
        self.distributors[distributor.id] = distributor
        self._by_email[distributor.email.lower()] = distributor
        self._items_of.setdefault(distributor.id, [])
        self._fleets_of.setdefault(distributor.id, [])
        self._accounts_of.setdefault(distributor.id, [])

    def add_fleet(self, fleet: Fleet) -> None:
        self.fleets[fleet.id] = fleet
        self._fleets_of[fleet.distributor.id].append(fleet)
        self._fleets_of[fleet.distributor.id].sort(key=lambda f: (f.created_at, f.fleet_name))

    def add_item(self, item: Item) -> None:
        self.items[item.id] = item
        self._items_of[item.distributor.id].append(item)
        self._items_of[item.distributor.id].sort(key=lambda i: (i.created_at, i.oem_item_id))
        if item.item_fleet is not None:
            item.item_fleet.item_list.append(item)

    def add_account(self, account: AssetAccount) -> None:
        self.accounts[account.id] = account
        account.asset.asset_account = account
        owned = self._accounts_of[account.manager.id]
        owned.append(account)
        owned.sort(key=lambda a: (a.created_at, a.id))

    # -- helpers for tests and demos --------------------------------------------------------------

    def distributor_by_name(self, name: str) -> Distributor:
        """The distributor with this short name (``"acme"``, ``"sunbright"``)."""
        for distributor in self.distributors.values():
            if distributor.name == name:
                return distributor
        raise KeyError(name)

    def fleet_by_name(self, fleet_name: str) -> Fleet:
        for fleet in self.fleets.values():
            if fleet.fleet_name == fleet_name:
                return fleet
        raise KeyError(fleet_name)

    def item_by_oem_id(self, oem_item_id: str) -> Item:
        for item in self.items.values():
            if item.oem_item_id == oem_item_id:
                return item
        raise KeyError(oem_item_id)

    def items_of(
        self,
        distributor: str | Distributor,
        *,
        fleet: str | Fleet | None = None,
        code_system: CodeSystem | None = None,
        with_account: bool | None = None,
    ) -> list[Item]:
        """A distributor's items sorted by ``oemItemID``, optionally narrowed.

        ``distributor`` and ``fleet`` may be objects or names (short distributor name, fleet name).
        """
        owner = (
            distributor
            if isinstance(distributor, Distributor)
            else self.distributor_by_name(distributor)
        )
        wanted_fleet = self.fleet_by_name(fleet) if isinstance(fleet, str) else fleet
        found = [
            item
            for item in self._items_of[owner.id]
            if (wanted_fleet is None or item.item_fleet is wanted_fleet)
            and (code_system is None or item.code_system is code_system)
            and (with_account is None or (item.asset_account is not None) == with_account)
        ]
        return sorted(found, key=lambda i: i.oem_item_id)

    def fleets_of(self, distributor: str | Distributor) -> list[Fleet]:
        owner = (
            distributor
            if isinstance(distributor, Distributor)
            else self.distributor_by_name(distributor)
        )
        return list(self._fleets_of[owner.id])

    # -- authentication ---------------------------------------------------------------------------

    def sign_in(self, email: str, password: str) -> dict[str, Any]:
        """Check a distributor's credentials and issue an HS256 access token."""
        distributor = self._by_email.get(email.strip().lower())
        if distributor is None or not hmac.compare_digest(
            distributor.password.encode(), password.encode()
        ):
            raise SandboxError(MSG_INVALID_CREDENTIALS, UNAUTHENTICATED)
        issued_at = int(self.config.clock())
        claims = {
            "sub": distributor.id,
            "_id": distributor.id,
            "email": distributor.email,
            "iat": issued_at,
            "exp": issued_at + self.config.token_ttl_seconds,
        }
        token = jwt.encode(claims, self.config.jwt_secret, algorithm="HS256")
        return {
            "_id": distributor.id,
            "accessToken": token,
            "email": distributor.email,
            "name": distributor.display_name,
            "firstName": distributor.org_contact_person.name.split(" ")[0],
            "lastName": distributor.org_contact_person.name.split(" ")[-1],
            "role": "DISTRIBUTOR",
            "roleName": "DISTRIBUTOR",
            "profile": None,
            "idString": distributor.id,
            "type": "ORGANIZATION",
            "deleteStatus": False,
            "createdAt": distributor.created_at,
            "updatedAt": distributor.created_at,
        }

    def revoke_tokens(self) -> None:
        """Refuse every access token issued so far, as ERM does after a restart or key change."""
        self.config.jwt_secret = secrets.token_hex(32)
        self._token_cache.clear()

    def authenticate(self, authorization: str | None) -> Distributor:
        """The distributor behind an ``Authorization: Bearer <jwt>`` header, or ``Unauthorized``.

        Verified signatures are cached per token (the benchmark sends the same one thousands of
        times); expiry is checked against the clock on every call.
        """
        if not authorization:
            raise SandboxError(MSG_UNAUTHORIZED, UNAUTHENTICATED)
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise SandboxError(MSG_UNAUTHORIZED, UNAUTHENTICATED)
        known = self._token_cache.get(token)
        if known is None:
            try:
                claims = jwt.decode(
                    token, self.config.jwt_secret, algorithms=["HS256"], options=_JWT_OPTIONS
                )
            except jwt.InvalidTokenError:
                raise SandboxError(MSG_UNAUTHORIZED, UNAUTHENTICATED) from None
            subject, expires = claims.get("sub"), claims.get("exp")
            if not isinstance(subject, str) or not isinstance(expires, int | float):
                raise SandboxError(MSG_UNAUTHORIZED, UNAUTHENTICATED)
            if len(self._token_cache) >= _TOKEN_CACHE_SIZE:
                self._token_cache.clear()
            known = (subject, float(expires))
            self._token_cache[token] = known
        subject, expires = known
        distributor = self.distributors.get(subject)
        if distributor is None or self.config.clock() >= expires:
            raise SandboxError(MSG_UNAUTHORIZED, UNAUTHENTICATED)
        return distributor

    # -- scoped lookups ---------------------------------------------------------------------------

    @staticmethod
    def _object_id(value: str) -> str:
        if not _OBJECT_ID.fullmatch(value):
            raise SandboxError(MSG_INVALID_ID, BAD_USER_INPUT)
        return value.lower()

    def _own_client(self, caller: Distributor, client_id: str) -> None:
        if self._object_id(client_id) != caller.id:
            raise SandboxError(MSG_FORBIDDEN, FORBIDDEN)

    def item(self, caller: Distributor, item_id: str) -> Item:
        item = self.items.get(self._object_id(item_id))
        if item is None:
            raise SandboxError(MSG_ITEM_NOT_FOUND, NOT_FOUND)
        if item.distributor is not caller:
            raise SandboxError(MSG_ITEM_FORBIDDEN, FORBIDDEN)
        return item

    def fleet(self, caller: Distributor, fleet_id: str) -> Fleet:
        fleet = self.fleets.get(self._object_id(fleet_id))
        if fleet is None:
            raise SandboxError(MSG_FLEET_NOT_FOUND, NOT_FOUND)
        if fleet.distributor is not caller:
            raise SandboxError(MSG_FLEET_FORBIDDEN, FORBIDDEN)
        return fleet

    def account(self, caller: Distributor, account_id: str) -> AssetAccount:
        account = self.accounts.get(self._object_id(account_id))
        if account is None:
            raise SandboxError(MSG_ACCOUNT_NOT_FOUND, NOT_FOUND)
        if account.manager is not caller:
            raise SandboxError(MSG_ACCOUNT_FORBIDDEN, FORBIDDEN)
        return account

    # -- lists ------------------------------------------------------------------------------------

    def code_events(
        self, caller: Distributor, item_id: str, distributor_id: str | None, paging: Paging
    ) -> dict[str, Any]:
        """An item's code history, newest first; ``distributor_id`` defaults to the caller."""
        if distributor_id is not None:
            self._own_client(caller, distributor_id)
        item = self.item(caller, item_id)
        return _page(item.code_generator.code_history, paging)

    def fleets_for_client(
        self, caller: Distributor, client_id: str, search: str | None, paging: Paging
    ) -> dict[str, Any]:
        self._own_client(caller, client_id)
        fleets: Iterable[Fleet] = self._fleets_of[caller.id]
        if search:
            needle = search.lower()
            fleets = [f for f in fleets if needle in f.fleet_name.lower()]
        return _page(list(fleets), paging)

    def items_in_fleet(
        self, caller: Distributor, fleet_id: str, client_id: str, paging: Paging
    ) -> dict[str, Any]:
        self._own_client(caller, client_id)
        fleet = self.fleet(caller, fleet_id)
        items = sorted(fleet.item_list, key=lambda i: (i.created_at, i.oem_item_id))
        return _page(items, paging)

    def client_items(
        self,
        caller: Distributor,
        client_id: str,
        paging: Paging,
        *,
        descending: bool = False,
        with_account_only: bool = False,
        search: str | None = None,
        oem_item_id: str | None = None,
        open_token_only: bool = False,
    ) -> dict[str, Any]:
        """The caller's items by ``createdAt``, narrowed as ``getAllClientItems`` asks."""
        self._own_client(caller, client_id)
        items: list[Item] = self._items_of[caller.id]
        if with_account_only or search or oem_item_id or open_token_only:
            needle = search.lower() if search else None
            exact = oem_item_id.lower() if oem_item_id else None
            items = [
                i
                for i in items
                if (not with_account_only or i.asset_account is not None)
                and (not open_token_only or i.code_system is CodeSystem.OPENTOKEN)
                and (exact is None or i.oem_item_id.lower() == exact)
                and (
                    needle is None
                    or needle in i.oem_item_id.lower()
                    or needle in i.seller_item_id.lower()
                    or needle in i.description.lower()
                )
            ]
        if descending:
            items = items[::-1]
        return _page(items, paging)

    def accounts_for_client(
        self, caller: Distributor, client_id: str, search: str | None, paging: Paging
    ) -> dict[str, Any]:
        self._own_client(caller, client_id)
        accounts: list[AssetAccount] = self._accounts_of[caller.id]
        if search:
            needle = search.lower()
            accounts = [
                a
                for a in accounts
                if needle in a.asset.oem_item_id.lower()
                or needle in a.asset.seller_item_id.lower()
                or needle in a.credit.owner.name.lower()
                or needle in a.user.name.lower()
            ]
        return _page(accounts, paging)

    # -- codes ------------------------------------------------------------------------------------

    def generate(
        self,
        caller: Distributor,
        item_id: str,
        code_type: CodeType,
        days: int = 0,
        description: str | None = None,
    ) -> GeneratedCode:
        """Check the request against the item's fleet policy, then issue and record the code."""
        if code_type is CodeType.DAYSCODE and not MIN_CODE_DAYS <= days <= MAX_CODE_DAYS:
            raise SandboxError(MSG_DAYS_RANGE, BAD_USER_INPUT)
        item = self.item(caller, item_id)
        now = self.config.clock()
        self._check_policy(item, code_type, days, now)
        code = generate_code(item, code_type, days, self.config.code_secret)
        self.record(item, code, days, description, now, caller.display_name)
        return code

    def issue(
        self,
        item: Item,
        code_type: CodeType,
        days: int,
        description: str | None,
        at: float,
    ) -> CodeEvent:
        """Issue a code without any policy check (seeding history)."""
        code = generate_code(item, code_type, days, self.config.code_secret)
        return self.record(item, code, days, description, at, item.distributor.display_name)

    def record(
        self,
        item: Item,
        code: GeneratedCode,
        days: int,
        description: str | None,
        at: float,
        actor_name: str,
    ) -> CodeEvent:
        """Advance the generator and append the code event (the only place codes change state)."""
        generator = item.code_generator
        generator.code_count += 1
        generator.hash_index += 1
        generator.hash_top = next_hash_top(generator.hash_top, code.code_hex)
        generator.token_count = code.token_count
        generator.updated_at = at
        if code.code_type is CodeType.FREECODE:
            generator.free_code_count = max(0, generator.free_code_count - 1)
        elif code.code_type is CodeType.RESETCODE:
            generator.reset_code_count = max(0, generator.reset_code_count - 1)
        event = CodeEvent(
            id=self.new_id(at),
            created_at=at,
            updated_at=at,
            code_type=code.code_type,
            code_days=days if code.code_type is CodeType.DAYSCODE else 0,
            code_number=generator.code_count,
            code_generator=generator,
            code_hex_string=code.code_hex,
            code_dec_string=code.code_dec,
            description=description,
            hash_index=generator.hash_index,
            hash_top=generator.hash_top,
            hash_root=generator.hash_root,
            code_count=generator.code_count,
            actor_name=actor_name,
        )
        generator.events.append(event)
        return event

    @staticmethod
    def _check_policy(item: Item, code_type: CodeType, days: int, now: float) -> None:
        policy = item.item_fleet.policy if item.item_fleet is not None else DEFAULT_POLICY
        generator = item.code_generator
        events = generator.events
        if (
            not policy.disable_total_code_count_limit
            and len(events) >= policy.total_code_count_limit
        ):
            raise SandboxError(MSG_TOTAL_LIMIT, BAD_USER_INPUT)
        if not policy.disable_day_code_count_limit:
            since = now - DAY_SECONDS
            today = 0
            for event in reversed(events):
                if event.created_at <= since:
                    break
                today += 1
            if today >= policy.day_code_count_limit:
                raise SandboxError(MSG_DAY_LIMIT, BAD_USER_INPUT)
        if (
            not policy.disable_code_gen_interval
            and events
            and (now - events[-1].created_at) * 1000 < policy.code_gen_interval
        ):
            raise SandboxError(MSG_INTERVAL, BAD_USER_INPUT)
        if (
            code_type is CodeType.FREECODE
            and not policy.disable_free_code
            and generator.free_code_count <= 0
        ):
            raise SandboxError(MSG_FREE_LIMIT, BAD_USER_INPUT)
        if (
            code_type is CodeType.RESETCODE
            and not policy.disable_reset_code_count
            and generator.reset_code_count <= 0
        ):
            raise SandboxError(MSG_RESET_LIMIT, BAD_USER_INPUT)
        if code_type is CodeType.DAYSCODE and not policy.disable_max_credit_stack_days:
            if policy.disable_max_credit_stack_code_events:
                window = events
            else:
                window = events[-policy.max_credit_stack_code_events :]
                if policy.max_credit_stack_code_events <= 0:
                    window = []
            since = now - policy.max_credit_stack_days * DAY_SECONDS
            stacked = sum(
                e.code_days
                for e in window
                if e.code_type is CodeType.DAYSCODE and e.created_at >= since
            )
            if days + stacked > policy.max_credit_stack_days:
                raise SandboxError(MSG_CREDIT_STACK, BAD_USER_INPUT)

    def increase_free_codes(self, caller: Distributor, item_id: str, count: int) -> Item:
        """Raise how many more free codes the item may get."""
        if count < 1:
            raise SandboxError(MSG_COUNT_INCREASE, BAD_USER_INPUT)
        item = self.item(caller, item_id)
        item.code_generator.free_code_count += count
        item.code_generator.updated_at = self.config.clock()
        return item

    def increase_reset_codes(self, caller: Distributor, item_id: str, count: int) -> Item:
        """Raise how many more reset codes the item may get."""
        if count < 1:
            raise SandboxError(MSG_COUNT_INCREASE, BAD_USER_INPUT)
        item = self.item(caller, item_id)
        item.code_generator.reset_code_count += count
        item.code_generator.updated_at = self.config.clock()
        return item


def _page(nodes: list[Any], paging: Paging) -> dict[str, Any]:
    return connection(
        nodes, first=paging.first, after=paging.after, last=paging.last, before=paging.before
    )
