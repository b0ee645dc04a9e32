"""The sandbox's data and operations, independent of GraphQL and HTTP.

:class:`SandboxState` is what the schema's resolvers call: the scoped lookups and lists, and code
issuing (its checks live in :mod:`.rules`); sign-in and tokens live in :mod:`.auth`. Every check
runs before anything changes, so a refused request leaves the state as it was. Time comes only from
``config.clock`` so tests can move it forward instead of sleeping.

Every request works on the data of the distributor its token names (``distributorId``), whoever
signed in: the distributor itself, a servicer acting for it, or one of its staff (erm-api.md §8),
so the methods take that distributor. Lookups raise :class:`~erm.sandbox.errors.UnknownIdError`
for an id that matches nothing and ``Forbidden resource`` for another distributor's data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from erm.sandbox.auth import Logins
from erm.sandbox.codes import GeneratedCode, decorate, generate_code, hash_jump, next_hash_top
from erm.sandbox.config import SandboxConfig
from erm.sandbox.errors import FORBIDDEN, MSG_FORBIDDEN, SandboxError, UnknownIdError
from erm.sandbox.faults import FaultConfig, FaultInjector
from erm.sandbox.model import (
    AssetAccount,
    CodeEvent,
    CodeGenerator,
    CodeSystem,
    CodeType,
    Distributor,
    Fleet,
    Item,
)
from erm.sandbox.pagination import connection
from erm.sandbox.rules import check_code_days, check_count_increase, check_policy

MIGRATED_ACTOR_NAME = "eIOT"
"""The actor production's migrated legacy events carry (§8)."""
MIGRATED_DESCRIPTION = "Migrated from legacy OTP system"
"""The one description every migrated legacy event carries."""


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
        self.logins = Logins(self.config)
        """Distributors, servicers and staff, their sign-in and their tokens (:mod:`.auth`)."""
        self.distributors = self.logins.distributors  # the same dict: distributors are logins too
        self.fleets: dict[str, Fleet] = {}
        self.items: dict[str, Item] = {}
        self.accounts: dict[str, AssetAccount] = {}
        self._items_of: dict[str, list[Item]] = {}
        self._fleets_of: dict[str, list[Fleet]] = {}
        self._accounts_of: dict[str, list[AssetAccount]] = {}
        self._id_counter = 0
        self._id_machine = "5ad0b0c0de"
        self.seed = 0
        """The seed the data was generated from (re-seeding uses it again)."""

    # -- building ---------------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget all data (faults, config and signing key stay), e.g. before seeding again."""
        self.logins.clear()
        tables: tuple[dict[str, Any], ...] = (
            self.fleets,
            self.items,
            self.accounts,
            self._items_of,
            self._fleets_of,
            self._accounts_of,
        )
        for table in tables:
            table.clear()
        self._id_counter = 0

    def new_id(self, at: float) -> str:
        """A fresh ObjectId-shaped id: 4 bytes of time, a fixed middle, a counter."""
        self._id_counter += 1
        return f"{int(at) & 0xFFFFFFFF:08x}{self._id_machine}{self._id_counter & 0xFFFFFF:06x}"

    def add_distributor(self, distributor: Distributor) -> None:
        self.logins.add_distributor(distributor)
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

    def revoke_tokens(self) -> None:
        """Refuse every access token issued so far, as ERM does after a restart or key change."""
        self.logins.tokens.rotate()

    # -- scoped lookups ---------------------------------------------------------------------------
    # Ids are stored as 24 lowercase hex digits, so anything else (not an ObjectId, where
    # production's cast fails) simply matches nothing, which production answers the same way.

    @staticmethod
    def _own_client(distributor: Distributor, client_id: str) -> None:
        if client_id.strip().lower() != distributor.id:
            raise SandboxError(MSG_FORBIDDEN, FORBIDDEN)

    def item(self, distributor: Distributor, item_id: str) -> Item:
        item = self.items.get(item_id.lower())
        if item is None:
            raise UnknownIdError(item_id)
        if item.distributor is not distributor:
            raise SandboxError(MSG_FORBIDDEN, FORBIDDEN)
        return item

    def fleet(self, distributor: Distributor, fleet_id: str) -> Fleet:
        fleet = self.fleets.get(fleet_id.lower())
        if fleet is None:
            raise UnknownIdError(fleet_id)
        if fleet.distributor is not distributor:
            raise SandboxError(MSG_FORBIDDEN, FORBIDDEN)
        return fleet

    def account(self, distributor: Distributor, account_id: str) -> AssetAccount:
        account = self.accounts.get(account_id.lower())
        if account is None:
            raise UnknownIdError(account_id)
        if account.manager is not distributor:
            raise SandboxError(MSG_FORBIDDEN, FORBIDDEN)
        return account

    # -- lists ------------------------------------------------------------------------------------

    def history(self, generator: CodeGenerator) -> list[CodeEvent]:
        """An item's code events newest first, without those a commit delay still hides."""
        now = self.config.clock()
        return [event for event in reversed(generator.events) if event.visible_from <= now]

    def code_events(
        self, distributor: Distributor, item_id: str, distributor_id: str, paging: Paging
    ) -> dict[str, Any]:
        self._own_client(distributor, distributor_id)
        item = self.item(distributor, item_id)
        return self._page(self.history(item.code_generator), paging)

    def fleets_for_client(
        self, distributor: Distributor, client_id: str, search: str | None, paging: Paging
    ) -> dict[str, Any]:
        self._own_client(distributor, client_id)
        fleets: Iterable[Fleet] = self._fleets_of[distributor.id]
        if search:
            needle = search.lower()
            fleets = [f for f in fleets if needle in f.fleet_name.lower()]
        return self._page(list(fleets), paging)

    def items_in_fleet(
        self, distributor: Distributor, fleet_id: str, client_id: str, paging: Paging
    ) -> dict[str, Any]:
        self._own_client(distributor, client_id)
        fleet = self.fleet(distributor, fleet_id)
        items = sorted(fleet.item_list, key=lambda i: (i.created_at, i.oem_item_id))
        return self._page(items, paging)

    def client_items(
        self,
        distributor: Distributor,
        client_id: str,
        paging: Paging,
        *,
        descending: bool = False,
        with_account_only: bool = False,
        search: str | None = None,
        oem_item_id: str | None = None,
        open_token_only: bool = False,
    ) -> dict[str, Any]:
        """The distributor's items by ``createdAt``, narrowed as ``getAllClientItems`` asks."""
        self._own_client(distributor, client_id)
        items: list[Item] = self._items_of[distributor.id]
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
        return self._page(items, paging)

    def accounts_for_client(
        self, distributor: Distributor, client_id: str, search: str | None, paging: Paging
    ) -> dict[str, Any]:
        self._own_client(distributor, client_id)
        accounts: list[AssetAccount] = self._accounts_of[distributor.id]
        if search:
            # As production is read (erm-api.md §2.6): a case-insensitive substring of the item's
            # ids or of the client's name or phone number, as stored.
            needle = search.lower()
            accounts = [
                a
                for a in accounts
                if any(
                    needle in (text or "").lower()
                    for text in (
                        a.asset.oem_item_id,
                        a.asset.seller_item_id,
                        a.credit.owner.name,
                        a.credit.owner.contact.phone if a.credit.owner.contact else None,
                        a.user.name,
                        a.user.contact.phone if a.user.contact else None,
                    )
                )
            ]
        return self._page(accounts, paging)

    def _page(self, nodes: list[Any], paging: Paging) -> dict[str, Any]:
        return connection(
            nodes,
            first=paging.first,
            after=paging.after,
            last=paging.last,
            before=paging.before,
            stuck_cursor=self.faults.stuck_cursor,
            ignore_first=self.faults.ignore_first,
        )

    # -- codes ------------------------------------------------------------------------------------

    def generate(
        self,
        distributor: Distributor,
        item_id: str,
        code_type: CodeType,
        days: int = 0,
        description: str | None = None,
        *,
        actor_name: str | None = None,
    ) -> GeneratedCode:
        """Check the request against the item's fleet policy, then issue and record the code.

        Under ``commit_delay_seconds`` the code counts for the rules at once but shows in history
        only after the delay.
        """
        if code_type is CodeType.DAYSCODE:
            check_code_days(days)
        item = self.item(distributor, item_id)
        now = self.config.clock()
        check_policy(item, code_type, days, now)
        code = generate_code(item, code_type, days, self.config.code_secret)
        self.record(
            item,
            code,
            days,
            self._kept_description(description),
            now,
            actor_name if actor_name is not None else distributor.display_name,
            visible_from=now + self.faults.commit_delay_seconds,
        )
        return code

    def _kept_description(self, description: str | None) -> str | None:
        mode = self.faults.description_mode
        if description is None or mode == "verbatim":
            return description
        if mode == "drop":
            return None
        return description[: self.faults.description_max_chars]

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

    def migrate(self, item: Item, code_type: CodeType, days: int, at: float) -> CodeEvent:
        """Add a code from the legacy OTP system the way production's migration stored it (§8).

        The event carries a decorated ``codeDecString``, ``codeHexString`` ``--``, actor ``eIOT``,
        ``codeNumber`` 0, the fixed migration description, and for free / reset codes the ACP
        jump (1096 / 2192) as ``codeDays``. Legacy codes predate ERM's allowances, so they leave
        the item's free / reset counters alone.
        """
        code = generate_code(item, code_type, days, self.config.code_secret)
        event = self.record(
            item,
            code,
            days,
            MIGRATED_DESCRIPTION,
            at,
            MIGRATED_ACTOR_NAME,
            consume_allowance=False,
        )
        event.code_days = hash_jump(code_type, days)
        event.code_number = 0
        event.code_hex_string = "--"
        event.code_dec_string = decorate(code.code_dec)
        return event

    def record(
        self,
        item: Item,
        code: GeneratedCode,
        days: int,
        description: str | None,
        at: float,
        actor_name: str,
        *,
        consume_allowance: bool = True,
        visible_from: float = 0.0,
    ) -> CodeEvent:
        """Advance the generator and append the code event (the only place codes change state)."""
        generator = item.code_generator
        generator.code_count += 1
        generator.hash_index += hash_jump(code.code_type, days)
        generator.hash_top = next_hash_top(generator.hash_top, code.code_hex)
        generator.token_count = code.token_count
        generator.updated_at = at
        if consume_allowance and code.code_type is CodeType.FREECODE:
            generator.free_code_count = max(0, generator.free_code_count - 1)
        elif consume_allowance and code.code_type is CodeType.RESETCODE:
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
            visible_from=visible_from,
        )
        generator.events.append(event)
        return event

    def increase_free_codes(self, distributor: Distributor, item_id: str, count: int) -> Item:
        """Raise how many more free codes the item may get."""
        check_count_increase("freeCodeCount", count)
        item = self.item(distributor, item_id)
        item.code_generator.free_code_count += count
        item.code_generator.updated_at = self.config.clock()
        return item

    def increase_reset_codes(self, distributor: Distributor, item_id: str, count: int) -> Item:
        """Raise how many more reset codes the item may get."""
        check_count_increase("resetCodeCount", count)
        item = self.item(distributor, item_id)
        item.code_generator.reset_code_count += count
        item.code_generator.updated_at = self.config.clock()
        return item
