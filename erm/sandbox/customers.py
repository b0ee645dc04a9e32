"""Seeded customers: the asset account of an item, its owner, payments and plan.

Split from :mod:`.seed` because it is the bulk of the generated data and needs nothing from the
fleet layout but the market it is sold in. The order of the random draws is part of the seeded
data: changing it changes every account after the first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from erm.sandbox.model import (
    AccountMeta,
    AccountStage,
    AccountStatus,
    Activity,
    Address,
    AddressLocation,
    AssetAccount,
    Contact,
    CreditAccount,
    Item,
    Payment,
    PayPlan,
    Person,
    PlanDetail,
)
from erm.sandbox.rules import DAY_SECONDS
from erm.sandbox.state import SandboxState


@dataclass(frozen=True, slots=True)
class Market:
    """Where a fleet's items are sold: the customers' currency, country, phones and towns."""

    currency: str
    country: str
    phone_prefix: str
    cities: tuple[str, ...]


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


def make_account(
    state: SandboxState,
    rng: random.Random,
    item: Item,
    market: Market,
    counter: int,
    epoch: float,
) -> AssetAccount:
    """The ``counter``-th seeded account, for ``item``, with a customer of ``market``; its pay
    schedule lies after ``epoch`` (the seeded "now")."""
    opened = item.created_at + rng.uniform(1, 20) * DAY_SECONDS
    owner = Person(
        id=state.new_id(opened),
        name=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
        contact=Contact(phone=f"{market.phone_prefix}{rng.randrange(10**8):08d}"),
        address=make_address(rng, rng.choice(market.cities), market.country),
    )
    daily = rng.choice((20, 30, 50, 75, 100)) * (40 if market.currency in ("UGX", "TZS") else 1)
    if market.currency == "NGN":
        daily *= 10
    deposit = daily * 30
    duration = rng.choice((180, 360, 540))
    history = [
        Payment(
            amount=float(daily * rng.choice((7, 14, 30))),
            datetime=opened + (index + 1) * rng.uniform(6, 25) * DAY_SECONDS,
            instruction=f"M-PESA {rng.randrange(10**9):09d}"
            if market.currency == "KES"
            else f"MOBILE MONEY {rng.randrange(10**9):09d}",
        )
        for index in range(rng.randint(0, 5))
    ]
    schedule = [
        Payment(
            amount=float(daily * 30),
            datetime=epoch + (month + 1) * 30 * DAY_SECONDS,
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
            currency=market.currency,
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
            plan_description=f"Deposit {deposit} {market.currency}, then {daily} per day",
            plan_details=[
                PlanDetail("deposit", str(deposit)),
                PlanDetail("dailyRate", str(daily)),
                PlanDetail("planDuration", str(duration)),
                PlanDetail("currency", market.currency),
                PlanDetail("freeDays", str(rng.choice((0, 3, 7)))),
            ],
        ),
        meta=[AccountMeta("source", "sandbox seed"), AccountMeta("accountNumber", str(counter))],
    )


def make_address(rng: random.Random, city: str, country: str) -> Address:
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
