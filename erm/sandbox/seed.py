"""Deterministic demo data: two distributors, six fleets, 240 items, accounts and code history.

The same ``seed`` always gives the same ids, codes and accounts, so demos and benchmark runs are
comparable. The layout is fixed and documented here so tests can pick the right item for a rule:

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

from erm.sandbox.faults import FaultConfig
from erm.sandbox.model import (
    AccountMeta,
    AccountStage,
    AccountStatus,
    Activity,
    Address,
    AddressLocation,
    AssetAccount,
    Batch,
    CodeGenerator,
    CodePolicy,
    CodeSystem,
    CodeType,
    Contact,
    CreditAccount,
    Distributor,
    Firmware,
    Fleet,
    Item,
    Payment,
    PayPlan,
    Person,
    PlanDetail,
)
from erm.sandbox.state import DAY_SECONDS, SandboxConfig, SandboxState

SEED_EPOCH = 1_748_736_000.0
"""2025-06-01T00:00:00Z: all seeded timestamps (except future pay schedules) lie before it."""


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    """A seeded distributor login, printed by ``erm-bot sandbox`` and used by tests."""

    name: str
    email: str
    password: str


ACME = DemoCredentials("acme", "acme@sandbox.erm", "acme-sandbox-pass")
SUNBRIGHT = DemoCredentials("sunbright", "sunbright@sandbox.erm", "sunbright-sandbox-pass")
DEMO_DISTRIBUTORS: tuple[DemoCredentials, ...] = (ACME, SUNBRIGHT)

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
    currency: str
    country: str
    phone_prefix: str
    cities: tuple[str, ...]
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
        "KES",
        "Kenya",
        "+2547",
        ("Nairobi",),
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
        "KES",
        "Kenya",
        "+2547",
        ("Nairobi", "Thika", "Machakos", "Nakuru"),
    ),
    _FleetPlan(
        FLEET_STRICT,
        "acme",
        "Pilot pumps with one free and one reset code per device",
        STRICT_POLICY,
        (_Product("PUMP", "2501", 1, 20, "Solar water pump 300W"),),
        "TZS",
        "Tanzania",
        "+2557",
        ("Arusha", "Moshi"),
        seeded_code_types=_DAYS_ONLY,
    ),
    _FleetPlan(
        FLEET_ANGAZA,
        "acme",
        "Systems sold through Angaza; seller ids are Angaza account numbers",
        CodePolicy(),
        (_Product("SHSA", "2406", 501, 30, "Solar home system A 50W"),),
        "UGX",
        "Uganda",
        "+2567",
        ("Kampala", "Entebbe", "Jinja"),
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
        "NGN",
        "Nigeria",
        "+2348",
        ("Lagos", "Ikeja", "Ibadan"),
    ),
    _FleetPlan(
        FLEET_KANO,
        "sunbright",
        "Battery packs on a slow, strict code schedule",
        KANO_POLICY,
        (_Product("BTRY", "2412", 1, 30, "Lithium battery pack 1kWh"),),
        "NGN",
        "Nigeria",
        "+2348",
        ("Kano", "Kaduna"),
        seeded_code_types=_DAYS_ONLY,
    ),
)

_DISTRIBUTORS = {
    "acme": ("ACME Solar Distribution Ltd", "Grace Wanjiku", "+254711000100", "Nairobi"),
    "sunbright": ("SunBright Energy Nigeria", "Chinedu Okafor", "+2348030000200", "Lagos"),
}

_FIRST_NAMES = (
    "Amina", "Brian", "Caroline", "David", "Esther", "Faith", "George", "Halima", "Isaac",
    "Joyce", "Kevin", "Lydia", "Moses", "Njeri", "Obinna", "Patience", "Robert", "Sarah",
    "Tunde", "Wanjiru", "Yusuf", "Zainab", "Peter", "Grace", "Samuel", "Ruth",
)  # fmt: skip
_LAST_NAMES = (
    "Achieng", "Mwangi", "Otieno", "Kamau", "Nakato", "Okello", "Adeyemi", "Balogun", "Mensah",
    "Wekesa", "Mutua", "Nansubuga", "Chukwu", "Abubakar", "Kiprono", "Njoroge", "Ssempala",
)  # fmt: skip

_STREETS = ("Market", "Station", "Church", "Mission", "Hospital", "Moi", "Lumumba")
_ACCOUNT_STAGES = tuple(AccountStage)
_ACCOUNT_STATUSES = tuple(AccountStatus)


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
                address=_address(rng, city, "Kenya" if credentials.name == "acme" else "Nigeria"),
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
                _seed_history(state, rng, item, plan, created)
                if position % 7 != 3:
                    account_counter += 1
                    state.add_account(_account(state, rng, item, plan, account_counter))


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


def _account(
    state: SandboxState, rng: random.Random, item: Item, plan: _FleetPlan, counter: int
) -> AssetAccount:
    opened = item.created_at + rng.uniform(1, 20) * DAY_SECONDS
    owner = Person(
        id=state.new_id(opened),
        name=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
        contact=Contact(phone=f"{plan.phone_prefix}{rng.randrange(10**8):08d}"),
        address=_address(rng, rng.choice(plan.cities), plan.country),
    )
    daily = rng.choice((20, 30, 50, 75, 100)) * (40 if plan.currency in ("UGX", "TZS") else 1)
    if plan.currency == "NGN":
        daily *= 10
    deposit = daily * 30
    duration = rng.choice((180, 360, 540))
    history = [
        Payment(
            amount=float(daily * rng.choice((7, 14, 30))),
            datetime=opened + (index + 1) * rng.uniform(6, 25) * DAY_SECONDS,
            instruction=f"M-PESA {rng.randrange(10**9):09d}"
            if plan.currency == "KES"
            else f"MOBILE MONEY {rng.randrange(10**9):09d}",
        )
        for index in range(rng.randint(0, 5))
    ]
    schedule = [
        Payment(
            amount=float(daily * 30),
            datetime=SEED_EPOCH + (month + 1) * 30 * DAY_SECONDS,
            instruction="monthly instalment",
        )
        for month in range(3)
    ]
    activities = [
        Activity(action="CREATE", datetime=opened, notes="account created"),
        *(
            Activity(action="CREDIT", datetime=p.datetime, amount=p.amount, notes=p.instruction)
            for p in history
        ),
    ]
    return AssetAccount(
        id=state.new_id(opened),
        account_stage=_ACCOUNT_STAGES[counter % len(_ACCOUNT_STAGES)],
        asset=item,
        credit=CreditAccount(
            account_status=_ACCOUNT_STATUSES[counter % len(_ACCOUNT_STATUSES)],
            balance=round(rng.uniform(-deposit, deposit * 4), 2),
            currency=plan.currency,
            owner=owner,
            activities=activities,
        ),
        manager=item.distributor,
        user=owner,
        created_at=opened,
        updated_at=max([opened, *(p.datetime for p in history)]),
        c2u_ratio=1.0,
        pay_schedule=schedule,
        pay_history=history,
        payment_plan=PayPlan(
            plan_name=f"{item.description} {duration}-day plan",
            plan_description=f"Deposit {deposit} {plan.currency}, then {daily} per day",
            plan_details=[
                PlanDetail("deposit", str(deposit)),
                PlanDetail("dailyRate", str(daily)),
                PlanDetail("planDuration", str(duration)),
                PlanDetail("currency", plan.currency),
                PlanDetail("freeDays", str(rng.choice((0, 3, 7)))),
            ],
        ),
        meta=[AccountMeta("source", "sandbox seed"), AccountMeta("accountNumber", str(counter))],
    )


def _address(rng: random.Random, city: str, country: str) -> Address:
    return Address(
        street=f"{rng.randint(1, 400)} {rng.choice(_STREETS)} Road",
        city=city,
        srpc=city,
        country=country,
        postcode=f"{rng.randrange(10**5):05d}",
        address_location=AddressLocation(
            address_latitude=round(rng.uniform(-4.5, 12.0), 5),
            address_longitude=round(rng.uniform(3.0, 40.0), 5),
        ),
    )


def _month_start(yymm: str) -> float:
    """Epoch seconds of the first day of month ``YYMM`` (UTC)."""
    return datetime(2000 + int(yymm[:2]), int(yymm[2:]), 1, tzinfo=UTC).timestamp()
