"""The sandbox's in-memory records, one dataclass per ERM object type.

Attribute names are the snake_case form of the GraphQL field names (``oemItemID`` ->
``oem_item_id``, ``_id`` -> ``id``) so the schema layer can resolve every plain field with one
generic ``getattr`` instead of a hand-written resolver per field. Objects hold direct references to
each other (an item to its fleet, an account to its item) because the sandbox never persists
anything and lookups by reference keep the hot path cheap. Timestamps are epoch seconds (floats)
and are rendered as ISO-8601 by the schema's ``DateTime`` scalar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

HASH_CHAIN_LENGTH = 100_000
"""Where a generator's ``hashIndex`` starts (production's chain length, erm-api.md §8)."""


class CodeType(StrEnum):
    """ERM ``CodeTypes``; the sandbox issues DAYSCODE, FREECODE and RESETCODE."""

    DAYSCODE = "DAYSCODE"
    FREECODE = "FREECODE"
    JUMPCODE = "JUMPCODE"
    RESETCODE = "RESETCODE"
    SYNCCODE = "SYNCCODE"


class CodeSystem(StrEnum):
    """ERM ``CodeSystemType``: which algorithm a device's keypad understands."""

    ACP1 = "ACP1"
    ACP2 = "ACP2"
    OPENTOKEN = "OPENTOKEN"


class AccountStage(StrEnum):
    """ERM ``AssetAccountStages``."""

    ASSET_ACCOUNT_CREATED = "ASSET_ACCOUNT_CREATED"
    ASSET_USER_PAIRED = "ASSET_USER_PAIRED"
    ACCOUNT_ACTIVATED = "ACCOUNT_ACTIVATED"
    ASSET_UNLOCKED = "ASSET_UNLOCKED"
    PAYPLAN_LOCKED = "PAYPLAN_LOCKED"
    PAYPLAN_COMPLETED = "PAYPLAN_COMPLETED"
    ACCOUNT_CLOSED = "ACCOUNT_CLOSED"


class AccountStatus(StrEnum):
    """ERM ``AccountStatus``."""

    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    SUSPENDED = "SUSPENDED"


@dataclass(slots=True)
class Contact:
    phone: str | None = None
    email: str | None = None
    social: str | None = None


@dataclass(slots=True)
class AddressLocation:
    address_latitude: float
    address_longitude: float


@dataclass(slots=True)
class Address:
    street: str
    city: str
    srpc: str
    country: str
    postcode: str
    unit: str | None = None
    address_location: AddressLocation | None = None


@dataclass(slots=True)
class Person:
    id: str
    name: str
    contact: Contact | None = None
    address: Address | None = None


@dataclass(slots=True)
class Distributor:
    """A distributor organisation; signs in with ``signInClient`` and owns fleets and items."""

    id: str
    name: str
    email: str
    password: str
    display_name: str
    org_contact_person: Person
    created_at: float


@dataclass(slots=True)
class Servicer:
    """A service organisation acting for one distributor (``distributorDelegate``, §8).

    It signs in with ``signInClient`` and gets its own ``_id``; its token names the distributor
    whose data it works on.
    """

    id: str
    name: str
    email: str
    password: str
    display_name: str
    distributor: Distributor
    created_at: float


@dataclass(slots=True)
class StaffUser:
    """A person on a distributor's staff; signs in with ``signInUser`` (§8)."""

    id: str
    name: str
    email: str
    password: str
    display_name: str
    distributor: Distributor
    role_id: str
    created_at: float


@dataclass(slots=True)
class CodePolicy:
    """A fleet's code-generation rules; every limit has a ``disable_*`` switch (erm-api.md §3)."""

    free_code_count: int = 5
    reset_code_count: int = 5
    day_code_count_limit: int = 10
    total_code_count_limit: int = 1096
    code_gen_interval: int = 60_000
    max_credit_stack_days: int = 60
    max_credit_stack_code_events: int = 5
    days_to_check_duration: int = 30
    minimum_day_codes_generated: int = 1
    disable_free_code: bool = False
    disable_reset_code_count: bool = False
    disable_day_code_count_limit: bool = False
    disable_total_code_count_limit: bool = False
    disable_code_gen_interval: bool = False
    disable_max_credit_stack_days: bool = False
    disable_max_credit_stack_code_events: bool = False
    disable_days_to_check_duration: bool = True
    disable_minimum_day_codes_generated: bool = True


@dataclass(slots=True)
class Fleet:
    """An ERM ``ItemFleet``: a distributor's group of items sharing one code policy."""

    id: str
    fleet_name: str
    description: str
    distributor: Distributor
    policy: CodePolicy
    assign_date: float
    created_at: float
    updated_at: float
    item_list: list[Item] = field(default_factory=list)
    action_scope: str = "CLIENT"
    actor_name: str = ""
    type: str = "ORGANIZATION"
    delete_status: bool = False


@dataclass(slots=True)
class Firmware:
    id: str
    version: str
    code_system: CodeSystem


@dataclass(slots=True)
class Batch:
    """An ERM ``ItemBatch``; for OPENTOKEN items it carries the OpenPAYGO key and starting code."""

    id: str
    batch_number: str
    batch_date: float
    description: str
    code_gen_type: CodeSystem
    starting_code: str | None = None
    secret_key: str | None = None


@dataclass(slots=True)
class CodeEvent:
    """One issued code, as ``getAllCodeEventsForSpecificItemByDistributor`` lists it."""

    id: str
    created_at: float
    updated_at: float
    code_type: CodeType
    code_days: int
    code_number: int
    code_generator: CodeGenerator
    code_hex_string: str
    code_dec_string: str
    description: str | None
    hash_index: int
    hash_top: str
    hash_root: str
    code_count: int
    actor_name: str
    visible_from: float = 0.0
    """When history starts to list the event (later than ``created_at`` under a commit delay)."""
    triggers: list[str] = field(default_factory=list)
    type: str = "EVENT"
    action_scope: str = "CLIENT"
    delete_status: bool = False


@dataclass(slots=True)
class CodeGenerator:
    """Per-item generator state: hash chain position, counters and the full history.

    ``hash_index`` starts at the chain length and jumps by each code's days (§8, see
    :func:`erm.sandbox.codes.hash_jump`). ``free_code_count`` / ``reset_code_count`` are the codes
    of that kind the item may still get; they start at the fleet's allowance and are raised by
    ``distributorIncrease...``. ``token_count`` is the OpenPAYGO counter of OPENTOKEN items (not
    part of the ERM schema).
    """

    id: str
    hash_root: str
    hash_top: str
    hash_top_initial: str
    created_at: float
    updated_at: float
    free_code_count: int
    reset_code_count: int
    hash_index: int = HASH_CHAIN_LENGTH
    code_count: int = 0
    code_reversal_count: int = 0
    token_count: int = 0
    events: list[CodeEvent] = field(default_factory=list)  # oldest first; append-only


@dataclass(slots=True)
class Item:
    """An ERM ``Item`` (a device), always owned by exactly one distributor."""

    id: str
    oem_id: str
    oem_item_id: str
    seller_id: str
    seller_item_id: str
    description: str
    distributor: Distributor
    item_firmware: Firmware
    item_batch: Batch
    code_generator: CodeGenerator
    created_at: float
    updated_at: float
    creation_date: float
    item_fleet: Fleet | None = None
    asset_account: AssetAccount | None = None
    id_string: str | None = None
    life_cycle: str = "ASSIGNED"
    delete_status: bool = False

    @property
    def code_system(self) -> CodeSystem:
        return self.item_firmware.code_system


@dataclass(slots=True)
class Payment:
    amount: float
    datetime: float
    instruction: str


@dataclass(slots=True)
class Activity:
    action: str
    datetime: float
    amount: float | None = None
    notes: str | None = None


@dataclass(slots=True)
class CreditAccount:
    account_status: AccountStatus
    balance: float
    currency: str
    owner: Person
    activities: list[Activity] = field(default_factory=list)


@dataclass(slots=True)
class PlanDetail:
    p_name: str
    p_value: str


@dataclass(slots=True)
class PayPlan:
    plan_name: str
    plan_description: str
    plan_details: list[PlanDetail]


@dataclass(slots=True)
class AccountMeta:
    name: str
    value: str


@dataclass(slots=True)
class AssetAccount:
    """An ERM ``AssetAccount``: the customer's pay-as-you-go contract for one item."""

    id: str
    account_stage: AccountStage
    asset: Item
    credit: CreditAccount
    manager: Distributor
    user: Person
    created_at: float
    updated_at: float
    c2u_ratio: float = 1.0
    pay_schedule: list[Payment] = field(default_factory=list)
    pay_history: list[Payment] = field(default_factory=list)
    payment_plan: PayPlan | None = None
    meta: list[AccountMeta] = field(default_factory=list)
    delete_status: bool = False
