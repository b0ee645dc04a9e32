"""Typed, frozen values parsed from ERM responses: only what the bot shows or decides on.

Parsing is tolerant of missing optional fields (ERM's nullability is partly unknown) and strict
about the ones a decision depends on (ids, code values): a response without them is malformed and
raises ``ValueError``, which the client turns into ``ErmUnavailableError``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import jwt

T = TypeVar("T")

Json = Mapping[str, Any]

ERM_ID_PATTERN = re.compile(r"^[0-9a-fA-F]{24}$")


class CodeType(enum.StrEnum):
    DAYS = "DAYSCODE"
    FREE = "FREECODE"
    JUMP = "JUMPCODE"
    RESET = "RESETCODE"
    SYNC = "SYNCCODE"


class AccountStage(enum.StrEnum):
    CREATED = "ASSET_ACCOUNT_CREATED"
    PAIRED = "ASSET_USER_PAIRED"
    ACTIVATED = "ACCOUNT_ACTIVATED"
    UNLOCKED = "ASSET_UNLOCKED"
    PLAN_LOCKED = "PAYPLAN_LOCKED"
    PLAN_COMPLETED = "PAYPLAN_COMPLETED"
    CLOSED = "ACCOUNT_CLOSED"

    @property
    def label(self) -> str:
        return _STAGE_LABELS[self]


_STAGE_LABELS = {
    AccountStage.CREATED: "created",
    AccountStage.PAIRED: "paired",
    AccountStage.ACTIVATED: "activated",
    AccountStage.UNLOCKED: "unlocked",
    AccountStage.PLAN_LOCKED: "plan locked",
    AccountStage.PLAN_COMPLETED: "plan completed",
    AccountStage.CLOSED: "closed",
}


class CodeSystem(enum.StrEnum):
    ACP1 = "ACP1"
    ACP2 = "ACP2"
    OPENTOKEN = "OPENTOKEN"


def parse_datetime(value: object) -> datetime | None:
    """ERM serialises ``DateTime`` as ISO-8601 text, e.g. ``2025-03-01T08:15:30.123Z``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def keypad_digits(code: str) -> str:
    """The digits of a code, whatever decoration ERM or a person added (spaces, ``*``, ``#``)."""
    return "".join(ch for ch in code if ch.isdigit())


_KEYPAD_CODE = re.compile(r"^\*?[0-9][0-9 ]*#?$")
MIN_CODE_DIGITS = 6  # OpenPAYGO tokens have 9, ACP1 codes 21; fewer is not a code


def is_keypad_code(code: str) -> bool:
    """Whether ``code`` is digits a keypad takes, with at most ERM's ``*``/spaces/``#`` around."""
    text = code.strip()
    return bool(_KEYPAD_CODE.match(text)) and len(keypad_digits(text)) >= MIN_CODE_DIGITS


def hex_string(value: object) -> str:
    """A code's hex form, or ``""`` where ERM has none (migrated legacy events carry ``--``)."""
    if not isinstance(value, str):
        return ""
    text = value.strip()
    return "" if not text.strip("-") else text


def keypad_format(code: str) -> str:
    """``024413975593119504641`` -> ``*024 413 975 593 119 504 641#``, as typed on the keypad."""
    digits = keypad_digits(code)
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "*" + " ".join(groups) + "#"


def _req_str(data: Json, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"ERM response is missing {key!r}")
    return value


def _opt_str(data: Json | None, key: str) -> str | None:
    if not data:
        return None
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _opt_int(data: Json | None, key: str) -> int | None:
    if not data:
        return None
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _opt_bool(data: Json | None, key: str) -> bool:
    return bool(data.get(key)) if data else False


def _opt_float(data: Json | None, key: str) -> float | None:
    if not data:
        return None
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _enum(kind: type[Any], value: object) -> Any:
    try:
        return kind(value)
    except ValueError:
        return None


class SignInMethod(enum.StrEnum):
    """Which ERM mutation a distributor's credentials sign in with."""

    CLIENT = "client"  # signInClient: distributor (organisation) accounts
    USER = "user"  # signInUser: staff accounts, as in ERM's own API handbook


@dataclass(frozen=True, slots=True)
class SignIn:
    """What a sign-in returns: the account's ERM id, the distributor it acts for, and a JWT.

    ``distributor_id`` is what history and client queries want. It comes from the token's
    ``distributorId`` claim when there is one (a servicer or staff account acts for a distributor
    and has an ``_id`` of its own), otherwise from ``_id`` (a distributor signing in as itself).
    """

    account_id: str
    access_token: str = field(repr=False)
    name: str | None = None
    email: str | None = None
    distributor_id: str = ""

    def __post_init__(self) -> None:
        if not self.distributor_id:
            object.__setattr__(self, "distributor_id", self.account_id)

    @classmethod
    def parse(cls, data: Json) -> SignIn:
        token = _req_str(data, "accessToken")
        return cls(
            account_id=_req_str(data, "_id"),
            access_token=token,
            name=_opt_str(data, "name"),
            email=_opt_str(data, "email"),
            distributor_id=_opt_str(token_claims(token), "distributorId") or "",
        )


def token_claims(token: str) -> Json:
    """A JWT's claims, read without verification (ERM's key is not ours to check): the expiry and
    the distributor the token acts for. Anything unreadable is no claims at all."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass(frozen=True, slots=True)
class FleetPolicy:
    """A fleet's code rules; ``None`` means ERM did not say, a disabled rule is ``None`` too."""

    free_codes: int | None = None
    reset_codes: int | None = None
    interval_ms: int | None = None
    day_code_limit: int | None = None
    total_code_limit: int | None = None
    max_credit_stack_days: int | None = None
    # How many of the newest code events the credit-stack rule adds up (None: all of them).
    max_credit_stack_events: int | None = None
    free_codes_disabled: bool = False

    @classmethod
    def parse(cls, data: Json) -> FleetPolicy:
        def rule(key: str, switch: str) -> int | None:
            return None if _opt_bool(data, switch) else _opt_int(data, key)

        return cls(
            free_codes=rule("freeCodeCount", "disableFreeCode"),
            reset_codes=rule("resetCodeCount", "disableResetCodeCount"),
            interval_ms=rule("codeGenInterval", "disableCodeGenInterval"),
            day_code_limit=rule("dayCodeCountLimit", "disableDayCodeCountLimit"),
            total_code_limit=rule("totalCodeCountLimit", "disableTotalCodeCountLimit"),
            max_credit_stack_days=rule("maxCreditStackDays", "disableMaxCreditStackDays"),
            max_credit_stack_events=rule(
                "maxCreditStackCodeEvents", "disableMaxCreditStackCodeEvents"
            ),
            free_codes_disabled=_opt_bool(data, "disableFreeCode"),
        )


@dataclass(frozen=True, slots=True)
class FleetRef:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Item:
    """A device: the ERM id the API wants and the ids people type."""

    id: str
    oem_item_id: str
    seller_item_id: str | None = None
    seller_id: str | None = None
    description: str | None = None
    fleet: FleetRef | None = None
    code_system: CodeSystem | None = None
    account_id: str | None = None
    client_name: str | None = None
    client_phone: str | None = None

    @property
    def label(self) -> str:
        """How a person recognises the item: its OEM id, plus the seller id when it differs."""
        if self.seller_item_id and self.seller_item_id != self.oem_item_id:
            return f"{self.oem_item_id} ({self.seller_item_id})"
        return self.oem_item_id

    @classmethod
    def parse(cls, data: Json) -> Item:
        fleet = data.get("itemFleet")
        firmware = data.get("itemFirmware")
        account = data.get("assetAccount")
        owner = (account or {}).get("credit", {}) or {}
        owner = owner.get("owner") or {}
        return cls(
            id=_req_str(data, "_id"),
            oem_item_id=_opt_str(data, "oemItemID") or "",
            seller_item_id=_opt_str(data, "sellerItemID"),
            seller_id=_opt_str(data, "sellerID"),
            description=_opt_str(data, "description"),
            fleet=FleetRef(fleet["_id"], fleet.get("fleetName") or "")
            if fleet and fleet.get("_id")
            else None,
            code_system=_enum(CodeSystem, (firmware or {}).get("codeSystem")),
            account_id=_opt_str(account, "_id"),
            client_name=_opt_str(owner, "name"),
            client_phone=_opt_str(owner.get("contact"), "phone"),
        )


@dataclass(frozen=True, slots=True)
class ItemFleet:
    id: str
    name: str
    description: str | None = None
    policy: FleetPolicy = field(default_factory=FleetPolicy)
    items: tuple[Item, ...] = ()

    @classmethod
    def parse(cls, data: Json) -> ItemFleet:
        return cls(
            id=_req_str(data, "_id"),
            name=_opt_str(data, "fleetName") or "",
            description=_opt_str(data, "description"),
            policy=FleetPolicy.parse(data),
            items=tuple(Item.parse(i) for i in data.get("itemList") or ()),
        )


@dataclass(frozen=True, slots=True)
class CodeEvent:
    """One code ERM generated for an item (history is newest first)."""

    id: str
    code_type: CodeType | None
    code_days: int
    code_dec: str
    code_hex: str
    created_at: datetime | None
    description: str | None = None
    actor: str | None = None

    @property
    def keypad(self) -> str:
        return keypad_format(self.code_dec)

    @classmethod
    def parse(cls, data: Json) -> CodeEvent:
        return cls(
            id=_req_str(data, "_id"),
            code_type=_enum(CodeType, data.get("codeType")),
            code_days=_opt_int(data, "codeDays") or 0,
            # A history entry without digits (a damaged migrated row) is still shown, codeless.
            code_dec=keypad_digits(_opt_str(data, "codeDecString") or ""),
            code_hex=hex_string(data.get("codeHexString")),
            created_at=parse_datetime(data.get("createdAt")),
            description=_opt_str(data, "description"),
            actor=_opt_str(data, "actorName"),
        )


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A code ERM generated for this request (``CodeResponse``), with the item it is for.

    ``reconciled`` is true when the mutation's answer was lost and the code was found afterwards in
    the item's history: the code is real and must not be generated again. ``likely``: it was
    found without this request's reference (ERM did not keep the description), as the one code
    of this type that appeared since the request began.
    """

    code_type: CodeType
    code_dec: str
    code_hex: str
    item: Item
    days: int | None = None
    reconciled: bool = False
    likely: bool = False

    @property
    def keypad(self) -> str:
        return keypad_format(self.code_dec)

    @classmethod
    def parse(cls, data: Json, *, item: Item, code_type: CodeType, days: int | None) -> IssuedCode:
        """ERM's answer to a code mutation, if it is a well-formed code of the type asked for.

        Anything else raises ``ValueError``: an enum value the schema does not list, another code
        type, or a code string without the digits a keypad takes.
        """
        answered = data.get("codeType")
        if answered != code_type.value:
            raise ValueError(f"codeType {str(answered)[:20]!r} where {code_type.value} was asked")
        code = data.get("codeDec")
        if not isinstance(code, str) or not is_keypad_code(code):
            raise ValueError("codeDec is not a keypad code")
        return cls(
            code_type=code_type,
            code_dec=keypad_digits(code),
            code_hex=hex_string(data.get("codeHex")),
            item=item,
            days=days,
        )


@dataclass(frozen=True, slots=True)
class Payment:
    amount: float
    at: datetime | None
    instruction: str | None = None

    @classmethod
    def parse(cls, data: Json) -> Payment:
        return cls(
            amount=_opt_float(data, "amount") or 0.0,
            at=parse_datetime(data.get("datetime")),
            instruction=_opt_str(data, "instruction"),
        )


@dataclass(frozen=True, slots=True)
class PayPlan:
    name: str | None
    description: str | None
    details: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, data: Json) -> PayPlan:
        details = tuple(
            (d.get("pName") or "", d.get("pValue") or "") for d in data.get("planDetails") or ()
        )
        return cls(
            name=_opt_str(data, "planName"),
            description=_opt_str(data, "planDescription"),
            details=details,
        )


@dataclass(frozen=True, slots=True)
class AssetAccount:
    """An item's account with its client: stage, credit, pay plan and payments."""

    id: str
    stage: AccountStage | None
    item: Item
    status: str | None = None
    balance: float | None = None
    currency: str | None = None
    client_name: str | None = None
    client_phone: str | None = None
    pay_plan: PayPlan | None = None
    payments: tuple[Payment, ...] = ()
    schedule: tuple[Payment, ...] = ()

    @classmethod
    def parse(cls, data: Json) -> AssetAccount:
        credit = data.get("credit") or {}
        owner = credit.get("owner") or data.get("user") or {}
        plan = data.get("paymentPlan")
        payments = sorted(
            (Payment.parse(p) for p in data.get("payHistory") or ()),
            key=lambda p: p.at.timestamp() if p.at else 0.0,
            reverse=True,
        )
        return cls(
            id=_req_str(data, "_id"),
            stage=_enum(AccountStage, data.get("accountStage")),
            item=Item.parse(data.get("asset") or {}),
            status=_opt_str(credit, "accountStatus"),
            balance=_opt_float(credit, "balance"),
            currency=_opt_str(credit, "currency"),
            client_name=_opt_str(owner, "name"),
            client_phone=_opt_str(owner.get("contact"), "phone"),
            pay_plan=PayPlan.parse(plan) if plan else None,
            payments=tuple(payments),
            schedule=tuple(Payment.parse(p) for p in data.get("paySchedule") or ()),
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a Relay connection; ``end_cursor`` continues it when ``has_next``."""

    nodes: tuple[T, ...]
    end_cursor: str | None = None
    has_next: bool = False
    total: int | None = None

    @classmethod
    def parse(cls, data: Json, node: Callable[[Json], T], *, limit: int | None = None) -> Page[T]:
        """One page; with ``limit``, at most that many nodes even if ERM ignored ``first`` (the
        page then continues after the last node kept, when its cursor is known)."""
        connection = data.get("page") or {}
        info = connection.get("pageInfo") or {}
        edges = [edge for edge in connection.get("edges") or () if edge and edge.get("node")]
        end_cursor = _opt_str(info, "endCursor")
        has_next = bool(info.get("hasNextPage"))
        if limit is not None and len(edges) > max(limit, 0):
            edges = edges[: max(limit, 0)]
            end_cursor = _opt_str(edges[-1], "cursor") if edges else None
            has_next = end_cursor is not None
        return cls(
            nodes=tuple(node(edge["node"]) for edge in edges),
            end_cursor=end_cursor,
            has_next=has_next,
            total=_opt_int(data.get("pageData"), "count"),
        )
