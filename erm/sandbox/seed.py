"""Deterministic demo data: two distributors, six fleets, 240 items, accounts and code history.

The same ``seed`` always gives the same ids, codes and accounts, so demos and benchmark runs are
comparable. The layout is fixed and documented here so tests can pick the right item for a rule.

Logins (:class:`DemoCredentials`):

==================  =====================  ==============  ======================================
constant            email                  mutation        acts as
==================  =====================  ==============  ======================================
``ACME``            acme@sandbox.erm       signInClient    the distributor acme (``_id`` = acme)
``SUNBRIGHT``       sunbright@sandbox.erm  signInClient    the distributor sunbright
``ACME_SERVICER``   servicer@sandbox.erm   signInClient    a servicer acting for acme: its own
                                                           ``_id``, token ``distributorId`` = acme,
                                                           ``roleName`` SERVICER
``ACME_STAFF``      staff@sandbox.erm      signInUser      a staff user of acme: its own ``_id``,
                                                           token ``distributorId`` = acme,
                                                           ``userId`` = the user
==================  =====================  ==============  ======================================

Whoever signs in, requests are scoped by the token's ``distributorId``: the servicer and the staff
user pass acme's id as ``clientId`` / ``distributorId``, not their own ``_id``.

Fleets:

=================  =========  =====================================  =========================
fleet (constant)   owner      policy                                 items (OEM ids)
=================  =========  =====================================  =========================
``FLEET_OPEN``     acme       every limit disabled: codes as fast    TEST2503000001..20;
                              as you like                            17..20 are OPENTOKEN
``FLEET_DEFAULT``  acme       ERM defaults (5 free, 5 reset, 60 s,   SHSA2409000101..135,
                              60 stack days over 5 events, 10/day)   SHSB2410000201..225,
                                                                     LAMP2411000301..320
``FLEET_STRICT``   acme       1 free, 1 reset, otherwise defaults    PUMP2501000001..20
``FLEET_ANGAZA``   acme       defaults; sold through Angaza, so the  SHSA2406000501..530,
                              seller id is an account number         sellerItemID AC-1nnnnn
``FLEET_LAGOS``    sunbright  defaults                               SHSC2407000001..35,
                                                                     TVSE2408000001..25
``FLEET_KANO``     sunbright  5-minute interval, 3 codes per day     BTRY2412000001..30
=================  =========  =====================================  =========================

The first five items of ``FLEET_ANGAZA`` (:data:`MIGRATED_ITEMS`, all ACP1) came over from the
legacy OTP system: their older history is migrated data as production stores it (decorated
``codeDecString``, ``codeHexString`` ``--``, actor ``eIOT``, ``codeNumber`` 0, free / reset events
with ``codeDays`` 1096 / 2192; see :meth:`SandboxState.migrate`). ``SHSA2406000501`` has a migrated
free code, ``SHSA2406000502`` a migrated reset code; migrated codes use none of the items' free /
reset allowance. Every generator's ``hashIndex`` starts at 100000 and jumps by each code's days
(1096 for a free code, 2192 for a reset code).

Outside ``FLEET_OPEN`` every tenth item of a fleet (by position) is OPENTOKEN, the rest ACP1;
OPENTOKEN items each have their own batch holding the OpenPAYGO key. Seeded history is dated
before :data:`SEED_EPOCH` (2025-06-01), so with a real clock it never trips the interval, daily
or credit-stack rules; only free/reset allowances already used by seeded codes count.
Use :meth:`SandboxState.items_of` (sorted by ``oemItemID``) to find items, e.g.
``state.items_of("acme", fleet=FLEET_OPEN, code_system=CodeSystem.ACP1)[0]`` is ``TEST2503000001``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from erm.sandbox.config import SandboxConfig
from erm.sandbox.customers import Market, make_account, make_address
from erm.sandbox.faults import FaultConfig
from erm.sandbox.model import (
    Batch,
    CodeGenerator,
    CodePolicy,
    CodeSystem,
    CodeType,
    Contact,
    Distributor,
    Firmware,
    Fleet,
    Item,
    Person,
    Servicer,
    StaffUser,
)
from erm.sandbox.rules import DAY_SECONDS
from erm.sandbox.state import SandboxState

SEED_EPOCH = 1_748_736_000.0
"""2025-06-01T00:00:00Z: all seeded timestamps (except future pay schedules) lie before it."""


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    """A seeded login, printed by ``erm-bot sandbox`` and used by tests."""

    name: str
    email: str
    password: str


ACME = DemoCredentials("acme", "acme@sandbox.erm", "acme-sandbox-pass")
SUNBRIGHT = DemoCredentials("sunbright", "sunbright@sandbox.erm", "sunbright-sandbox-pass")
DEMO_DISTRIBUTORS: tuple[DemoCredentials, ...] = (ACME, SUNBRIGHT)
ACME_SERVICER = DemoCredentials("acme-servicer", "servicer@sandbox.erm", "servicer-sandbox-pass")
"""A servicer acting for acme; signs in with ``signInClient``."""
ACME_STAFF = DemoCredentials("acme-staff", "staff@sandbox.erm", "staff-sandbox-pass")
"""A staff user of acme; signs in with ``signInUser``."""

FLEET_OPEN = "ACME Test Bench"
FLEET_DEFAULT = "ACME Nairobi Retail"
FLEET_STRICT = "ACME Strict Pilot"
FLEET_ANGAZA = "ACME Kampala Angaza"
FLEET_LAGOS = "SunBright Lagos Retail"
FLEET_KANO = "SunBright Kano Pilot"

OPEN_ACP1_OEM_ID = "TEST2503000001"
"""An ACP1 item of acme in the open fleet: the easiest target for code tests."""
OPEN_OPENTOKEN_OEM_ID = "TEST2503000017"
"""An OPENTOKEN item of acme in the open fleet."""
MIGRATED_ITEMS: tuple[str, ...] = tuple(f"SHSA2406000{serial}" for serial in range(501, 506))
"""OEM ids of acme's items whose older history was migrated from the legacy OTP system."""

OPEN_POLICY = CodePolicy(
    disable_free_code=True,
    disable_reset_code_count=True,
    disable_day_code_count_limit=True,
    disable_total_code_count_limit=True,
    disable_code_gen_interval=True,
    disable_max_credit_stack_days=True,
    disable_max_credit_stack_code_events=True,
)
STRICT_POLICY = CodePolicy(free_code_count=1, reset_code_count=1)
KANO_POLICY = CodePolicy(code_gen_interval=300_000, day_code_count_limit=3)


@dataclass(frozen=True, slots=True)
class _Product:
    product_class: str
    yymm: str
    first_serial: int
    count: int
    description: str


@dataclass(frozen=True, slots=True)
class _FleetPlan:
    name: str
    distributor: str
    description: str
    policy: CodePolicy
    products: tuple[_Product, ...]
    market: Market
    seller_id: str = "OVES"
    history: tuple[int, int] = (0, 4)
    seeded_code_types: tuple[CodeType, ...] = field(
        default=(CodeType.DAYSCODE, CodeType.DAYSCODE, CodeType.DAYSCODE, CodeType.FREECODE)
    )


_DAYS_ONLY = (CodeType.DAYSCODE,)

_PLANS: tuple[_FleetPlan, ...] = (
    _FleetPlan(
        FLEET_OPEN,
        "acme",
        "Bench devices for integration tests: every code limit is switched off",
        OPEN_POLICY,
        (_Product("TEST", "2503", 1, 20, "Test bench solar home system"),),
        Market("KES", "Kenya", "+2547", ("Nairobi",)),
        history=(0, 2),
        seeded_code_types=_DAYS_ONLY,
    ),
    _FleetPlan(
        FLEET_DEFAULT,
        "acme",
        "Retail solar home systems sold from the Nairobi shops",
        CodePolicy(),
        (
            _Product("SHSA", "2409", 101, 35, "Solar home system A 50W"),
            _Product("SHSB", "2410", 201, 25, "Solar home system B 80W with TV"),
            _Product("LAMP", "2411", 301, 20, "Solar lantern with phone charger"),
        ),
        Market("KES", "Kenya", "+2547", ("Nairobi", "Thika", "Machakos", "Nakuru")),
    ),
    _FleetPlan(
        FLEET_STRICT,
        "acme",
        "Pilot pumps with one free and one reset code per device",
        STRICT_POLICY,
        (_Product("PUMP", "2501", 1, 20, "Solar water pump 300W"),),
        Market("TZS", "Tanzania", "+2557", ("Arusha", "Moshi")),
        seeded_code_types=_DAYS_ONLY,
    ),
    _FleetPlan(
        FLEET_ANGAZA,
        "acme",
        "Systems sold through Angaza; seller ids are Angaza account numbers",
        CodePolicy(),
        (_Product("SHSA", "2406", 501, 30, "Solar home system A 50W"),),
        Market("UGX", "Uganda", "+2567", ("Kampala", "Entebbe", "Jinja")),
        seller_id="ANGAZA",
    ),
    _FleetPlan(
        FLEET_LAGOS,
        "sunbright",
        "Retail systems around Lagos",
        CodePolicy(),
        (
            _Product("SHSC", "2407", 1, 35, "Solar home system C 120W"),
            _Product("TVSE", "2408", 1, 25, "Solar TV set 24 inch"),
        ),
        Market("NGN", "Nigeria", "+2348", ("Lagos", "Ikeja", "Ibadan")),
    ),
    _FleetPlan(
        FLEET_KANO,
        "sunbright",
        "Battery packs on a slow, strict code schedule",
        KANO_POLICY,
        (_Product("BTRY", "2412", 1, 30, "Lithium battery pack 1kWh"),),
        Market("NGN", "Nigeria", "+2348", ("Kano", "Kaduna")),
        seeded_code_types=_DAYS_ONLY,
    ),
)

_DISTRIBUTORS = {
    "acme": ("ACME Solar Distribution Ltd", "Grace Wanjiku", "+254711000100", "Nairobi"),
    "sunbright": ("SunBright Energy Nigeria", "Chinedu Okafor", "+2348030000200", "Lagos"),
}

# code types of each migrated item's legacy history, in MIGRATED_ITEMS order
_MIGRATED_HISTORY: tuple[tuple[CodeType, ...], ...] = (
    (CodeType.DAYSCODE, CodeType.DAYSCODE, CodeType.FREECODE),
    (CodeType.DAYSCODE, CodeType.RESETCODE, CodeType.DAYSCODE),
    (CodeType.DAYSCODE, CodeType.DAYSCODE),
    (CodeType.DAYSCODE, CodeType.DAYSCODE, CodeType.DAYSCODE),
    (CodeType.DAYSCODE, CodeType.DAYSCODE, CodeType.DAYSCODE, CodeType.DAYSCODE),
)
_SERVICER_NAME = "FieldFix Solar Services"
_STAFF_NAME = "Peter Kamau"


def seed_state(
    seed: int = 0,
    config: SandboxConfig | None = None,
    faults: FaultConfig | None = None,
) -> SandboxState:
    """A new sandbox state filled with the demo data for ``seed``."""
    state = SandboxState(config, faults)
    populate(state, seed)
    return state


def populate(state: SandboxState, seed: int = 0) -> None:
    """Fill ``state`` (assumed empty) with the demo data; same seed, same data."""
    rng = random.Random(seed)
    state.seed = seed
    distributors: dict[str, Distributor] = {}
    for credentials in DEMO_DISTRIBUTORS:
        display_name, contact_name, phone, city = _DISTRIBUTORS[credentials.name]
        created = SEED_EPOCH - 400 * DAY_SECONDS
        distributor = Distributor(
            id=state.new_id(created),
            name=credentials.name,
            email=credentials.email,
            password=credentials.password,
            display_name=display_name,
            org_contact_person=Person(
                id=state.new_id(created),
                name=contact_name,
                contact=Contact(phone=phone, email=credentials.email),
                address=make_address(
                    rng, city, "Kenya" if credentials.name == "acme" else "Nigeria"
                ),
            ),
            created_at=created,
        )
        state.add_distributor(distributor)
        distributors[credentials.name] = distributor

    firmware = {
        CodeSystem.ACP1: Firmware(state.new_id(SEED_EPOCH), "ovcamp-acp1 3.2.1", CodeSystem.ACP1),
        CodeSystem.OPENTOKEN: Firmware(
            state.new_id(SEED_EPOCH), "openpaygo-token 2.3.0", CodeSystem.OPENTOKEN
        ),
    }
    account_counter = 0
    seller_ids: set[str] = set()
    for plan_index, plan in enumerate(_PLANS):
        distributor = distributors[plan.distributor]
        fleet_created = SEED_EPOCH - (300 - 20 * plan_index) * DAY_SECONDS
        fleet = Fleet(
            id=state.new_id(fleet_created),
            fleet_name=plan.name,
            description=plan.description,
            distributor=distributor,
            policy=dataclasses.replace(plan.policy),  # a test may change one state's policy
            assign_date=fleet_created,
            created_at=fleet_created,
            updated_at=fleet_created,
            actor_name=distributor.display_name,
        )
        state.add_fleet(fleet)
        position = 0
        for product in plan.products:
            made = _month_start(product.yymm)
            acp1_batch = Batch(
                id=state.new_id(made),
                batch_number=f"{product.product_class}{product.yymm}{rng.randrange(10**6):06d}",
                batch_date=made,
                description=f"{product.description}, production batch {product.yymm}",
                code_gen_type=CodeSystem.ACP1,
            )
            for offset in range(product.count):
                position += 1
                # FLEET_OPEN keeps its OPENTOKEN items in one documented block at the end
                open_token = position >= 17 if plan.name == FLEET_OPEN else position % 10 == 0
                oem_item_id = (
                    f"{product.product_class}{product.yymm}{product.first_serial + offset:06d}"
                )
                created = made + rng.uniform(1, 25) * DAY_SECONDS
                system = CodeSystem.OPENTOKEN if open_token else CodeSystem.ACP1
                batch = acp1_batch
                if open_token:
                    batch = Batch(
                        id=state.new_id(made),
                        batch_number=f"{product.product_class}{product.yymm}{rng.randrange(10**6):06d}",
                        batch_date=made,
                        description=f"{product.description}, OpenPAYGO batch {product.yymm}",
                        code_gen_type=CodeSystem.OPENTOKEN,
                        secret_key=rng.randbytes(16).hex(),
                        starting_code=str(rng.randrange(100_000_000, 1_000_000_000)),
                    )
                hash_root = rng.randbytes(32).hex()
                hash_top = hashlib.sha256(hash_root.encode()).hexdigest()
                seller_item_id = oem_item_id
                if plan.seller_id != "OVES":  # an account number from the seller's own system
                    seller_item_id = f"AC-1{rng.randrange(10**5):05d}"
                    while seller_item_id in seller_ids:
                        seller_item_id = f"AC-1{rng.randrange(10**5):05d}"
                    seller_ids.add(seller_item_id)
                item = Item(
                    id=state.new_id(created),
                    oem_id="OVES",
                    oem_item_id=oem_item_id,
                    seller_id=plan.seller_id,
                    seller_item_id=seller_item_id,
                    description=product.description,
                    distributor=distributor,
                    item_firmware=firmware[system],
                    item_batch=batch,
                    code_generator=CodeGenerator(
                        id=state.new_id(created),
                        hash_root=hash_root,
                        hash_top=hash_top,
                        hash_top_initial=hash_top,
                        created_at=created,
                        updated_at=created,
                        free_code_count=plan.policy.free_code_count,
                        reset_code_count=plan.policy.reset_code_count,
                    ),
                    created_at=created,
                    updated_at=created,
                    creation_date=made,
                    item_fleet=fleet,
                    id_string=oem_item_id,
                )
                state.add_item(item)
                if oem_item_id in MIGRATED_ITEMS:
                    _seed_migrated_history(state, seed, item, created)
                _seed_history(state, rng, item, plan, created)
                if position % 7 != 3:
                    account_counter += 1
                    account = make_account(
                        state, rng, item, plan.market, account_counter, SEED_EPOCH
                    )
                    state.add_account(account)
    # last, so that adding them left every other seeded id as it was
    _seed_delegates(state, distributors["acme"])


def _seed_delegates(state: SandboxState, acme: Distributor) -> None:
    """The logins that act for acme without being acme: its servicer and a staff user."""
    created = SEED_EPOCH - 200 * DAY_SECONDS
    state.logins.add_servicer(
        Servicer(
            id=state.new_id(created),
            name=ACME_SERVICER.name,
            email=ACME_SERVICER.email,
            password=ACME_SERVICER.password,
            display_name=_SERVICER_NAME,
            distributor=acme,
            created_at=created,
        )
    )
    state.logins.add_staff(
        StaffUser(
            id=state.new_id(created),
            name=ACME_STAFF.name,
            email=ACME_STAFF.email,
            password=ACME_STAFF.password,
            display_name=_STAFF_NAME,
            distributor=acme,
            role_id=state.new_id(created),
            created_at=created,
        )
    )


def _seed_migrated_history(state: SandboxState, seed: int, item: Item, created: float) -> None:
    """Legacy codes dated before the item reached ERM, drawn from a generator of their own so the
    rest of the seeded data does not depend on them."""
    rng = random.Random(f"{seed}:{item.oem_item_id}")
    code_types = _MIGRATED_HISTORY[MIGRATED_ITEMS.index(item.oem_item_id)]
    moment = created - (len(code_types) + 1) * 40 * DAY_SECONDS
    for code_type in code_types:
        moment += rng.uniform(20, 40) * DAY_SECONDS
        days = rng.choice((30, 60, 90)) if code_type is CodeType.DAYSCODE else 0
        state.migrate(item, code_type, days, moment)


def _seed_history(
    state: SandboxState, rng: random.Random, item: Item, plan: _FleetPlan, created: float
) -> None:
    low, high = plan.history
    count = rng.randint(low, high)
    moment = created
    for number in range(count):
        moment += rng.uniform(5, 30) * DAY_SECONDS
        if moment >= SEED_EPOCH:
            break
        code_type = CodeType.DAYSCODE if number == 0 else rng.choice(plan.seeded_code_types)
        days = rng.choice((7, 14, 30)) if code_type is CodeType.DAYSCODE else 0
        state.issue(item, code_type, days, f"seeded payment {number + 1}", moment)


def _month_start(yymm: str) -> float:
    """Epoch seconds of the first day of month ``YYMM`` (UTC)."""
    return datetime(2000 + int(yymm[:2]), int(yymm[2:]), 1, tzinfo=UTC).timestamp()
