"""The GraphQL face of the sandbox: ``schema.graphql`` built once, with resolvers attached.

Root fields get one small resolver each that unpacks arguments and calls :class:`SandboxState`.
Every other field is resolved generically: a dict (connections, tokens, code answers) is read by
field name, a model object by the snake_case attribute of the field name, computed once at build
time so the per-field cost is a single ``getattr``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, wraps
from pathlib import Path
from typing import Any, TypeAlias

from graphql import (
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
)

from erm.sandbox.auth import Caller
from erm.sandbox.errors import UnknownIdError
from erm.sandbox.model import CodeGenerator, CodeType, Distributor, Fleet
from erm.sandbox.state import Paging, SandboxState

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")

_POLICY_FIELDS = frozenset(
    {
        "freeCodeCount",
        "resetCodeCount",
        "dayCodeCountLimit",
        "totalCodeCountLimit",
        "codeGenInterval",
        "maxCreditStackDays",
        "maxCreditStackCodeEvents",
        "daysToCheckDuration",
        "minimumDayCodesGenerated",
        "disableFreeCode",
        "disableResetCodeCount",
        "disableDayCodeCountLimit",
        "disableTotalCodeCountLimit",
        "disableCodeGenInterval",
        "disableMaxCreditStackDays",
        "disableMaxCreditStackCodeEvents",
        "disableDaysToCheckDuration",
        "disableMinimumDayCodesGenerated",
    }
)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

Resolver = Callable[..., Any]


@dataclass(slots=True)
class RequestContext:
    """Per-request context: who is calling, resolved lazily, and what the request changed."""

    state: SandboxState
    authorization: str | None
    codes_issued: int = 0
    _caller: Caller | None = field(default=None, repr=False)

    def caller(self) -> Caller:
        """The authenticated caller; raises ``Unauthorized`` for a bad or missing token."""
        if self._caller is None:
            self._caller = self.state.logins.authenticate(self.authorization)
        return self._caller

    def distributor(self) -> Distributor:
        """The distributor whose data the caller may see (the token's ``distributorId``)."""
        return self.caller().distributor


Info: TypeAlias = "GraphQLResolveInfo[RequestContext]"


def attribute_name(field_name: str) -> str:
    """``oemItemID`` -> ``oem_item_id``, ``_id`` -> ``id``: the model attribute behind a field."""
    if field_name == "_id":
        return "id"
    return _CAMEL_BOUNDARY.sub("_", field_name).lower()


def serialize_datetime(value: Any) -> str:
    """Epoch seconds (or a datetime) as ERM's ``2025-03-01T08:15:30.123Z``."""
    if isinstance(value, str):
        return value
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def load_schema(sdl: str | None = None) -> GraphQLSchema:
    """The sandbox's schema, or one built from ``sdl`` (an altered copy, for contract tests).

    Built once per SDL text; a schema is immutable after resolvers are attached.
    """
    return _build_schema(_default_sdl() if sdl is None else sdl)


@cache
def _default_sdl() -> str:
    return SCHEMA_PATH.read_text(encoding="utf-8")


@cache
def _build_schema(sdl: str) -> GraphQLSchema:
    schema = build_schema(sdl)
    scalar = schema.type_map["DateTime"]
    assert isinstance(scalar, GraphQLScalarType)
    # graphql-core 3.3 reads coerce_output_value; 3.2 only knows serialize
    scalar.serialize = serialize_datetime  # type: ignore[method-assign]
    scalar.coerce_output_value = serialize_datetime
    for type_name, named in schema.type_map.items():
        if type_name.startswith("__") or not isinstance(named, GraphQLObjectType):
            continue
        if type_name in ("Query", "Mutation"):
            continue
        for field_name, field_def in named.fields.items():
            field_def.resolve = _field_resolver(type_name, field_name)
    _attach(schema.query_type, _QUERY_RESOLVERS)
    _attach(schema.mutation_type, _MUTATION_RESOLVERS)
    return schema


def _attach(root: GraphQLObjectType | None, resolvers: dict[str, Resolver]) -> None:
    """Resolve every root field; an altered schema may lack some of the sandbox's fields (their
    resolvers are left out), but a root field with no resolver would answer null, so it fails."""
    assert root is not None
    missing = set(root.fields) - set(resolvers)
    if missing:
        raise RuntimeError(f"no sandbox resolver for {sorted(missing)}")
    for name, field_def in root.fields.items():
        field_def.resolve = resolvers[name]


def _field_resolver(type_name: str, field_name: str) -> Resolver:
    attribute = attribute_name(field_name)
    if type_name == "ItemFleet" and field_name in _POLICY_FIELDS:

        def resolve_policy(source: Fleet, _info: Info, **_args: Any) -> Any:
            return getattr(source.policy, attribute)

        return resolve_policy
    if type_name == "CodeGenerator" and field_name == "codeHistory":

        def resolve_history(source: CodeGenerator, info: Info, **_args: Any) -> Any:
            return info.context.state.history(source)  # a commit delay hides recent events

        return resolve_history

    def resolve(source: Any, _info: Info, **_args: Any) -> Any:
        if type(source) is dict:
            return source.get(field_name)
        return getattr(source, attribute, None)

    return resolve


# -- root resolvers -------------------------------------------------------------------------------


def _context(info: Info) -> RequestContext:
    return info.context


def _paging(args: dict[str, Any]) -> Paging:
    return Paging(
        first=args.get("first"),
        after=args.get("after"),
        last=args.get("last"),
        before=args.get("before"),
    )


def _null_if_unknown(resolver: Resolver) -> Resolver:
    """Answer null for an id that matches nothing: on a non-null root field graphql-core then
    reports ``Cannot return null for non-nullable field ...``, production's "not found" (§8)."""

    @wraps(resolver)
    def resolve(*args: Any, **kwargs: Any) -> Any:
        try:
            return resolver(*args, **kwargs)
        except UnknownIdError:
            return None

    return resolve


def _sign_in_client(_root: None, info: Info, signInCredentialsInput: dict[str, str]) -> Any:
    credentials = signInCredentialsInput
    return _context(info).state.logins.sign_in_client(credentials["email"], credentials["password"])


def _sign_in_user(_root: None, info: Info, signInCredentials: dict[str, str]) -> Any:
    credentials = signInCredentials
    return _context(info).state.logins.sign_in_user(credentials["email"], credentials["password"])


def _generator(code_type: CodeType, input_name: str) -> Resolver:
    @_null_if_unknown
    def resolve(_root: None, info: Info, **args: Any) -> Any:
        ctx = _context(info)
        caller = ctx.caller()
        request = args[input_name]
        code = ctx.state.generate(
            caller.distributor,
            request["itemId"],
            code_type,
            request.get("codeDays", 0),
            request.get("description"),
            actor_name=caller.actor_name,
        )
        ctx.codes_issued += 1
        return {"codeType": code.code_type, "codeHex": code.code_hex, "codeDec": code.code_dec}

    return resolve


@_null_if_unknown
def _increase_free(_root: None, info: Info, itemId: str, freeCodeCount: int) -> Any:
    ctx = _context(info)
    return ctx.state.increase_free_codes(ctx.distributor(), itemId, freeCodeCount).code_generator


@_null_if_unknown
def _increase_reset(_root: None, info: Info, itemId: str, resetCodeCount: int) -> Any:
    ctx = _context(info)
    return ctx.state.increase_reset_codes(ctx.distributor(), itemId, resetCodeCount).code_generator


@_null_if_unknown
def _code_events(_root: None, info: Info, **args: Any) -> Any:
    ctx = _context(info)
    return ctx.state.code_events(
        ctx.distributor(), args["itemId"], args["distributorId"], _paging(args)
    )


def _fleets_for_client(_root: None, info: Info, **args: Any) -> Any:
    ctx = _context(info)
    return ctx.state.fleets_for_client(
        ctx.distributor(), args["clientId"], args.get("search"), _paging(args)
    )


@_null_if_unknown
def _specific_fleet(_root: None, info: Info, id: str) -> Any:
    ctx = _context(info)
    return ctx.state.fleet(ctx.distributor(), id)


@_null_if_unknown
def _items_in_fleet(_root: None, info: Info, **args: Any) -> Any:
    ctx = _context(info)
    request = args["getAllClientItemsInItemFleet"]
    return ctx.state.items_in_fleet(
        ctx.distributor(), request["itemFleetId"], request["clientId"], _paging(args)
    )


def _client_items(_root: None, info: Info, **args: Any) -> Any:
    ctx = _context(info)
    return ctx.state.client_items(
        ctx.distributor(),
        args["clientId"],
        _paging(args),
        descending=args["queryorder"] == "DESC",
        with_account_only=bool(args["assetaccount"]),
        search=args.get("search"),
        oem_item_id=args.get("searchByOemItemId"),
        open_token_only=bool(args.get("isOpenTokenSimulator")),
    )


@_null_if_unknown
def _specific_item(_root: None, info: Info, itemId: str) -> Any:
    ctx = _context(info)
    return ctx.state.item(ctx.distributor(), itemId)


def _accounts_for_client(_root: None, info: Info, **args: Any) -> Any:
    ctx = _context(info)
    return ctx.state.accounts_for_client(
        ctx.distributor(), args["clientId"], args.get("search"), _paging(args)
    )


@_null_if_unknown
def _specific_account(_root: None, info: Info, id: str) -> Any:
    ctx = _context(info)
    return ctx.state.account(ctx.distributor(), id)


_QUERY_RESOLVERS: dict[str, Resolver] = {
    "getAllCodeEventsForSpecificItemByDistributor": _code_events,
    "getItemFleetsForClient": _fleets_for_client,
    "getSpecificItemFleet": _specific_fleet,
    "getAllClientItemsInItemFleet": _items_in_fleet,
    "getAllClientItems": _client_items,
    "getSpecificItem": _specific_item,
    "getAllAssetAccountsForClient": _accounts_for_client,
    "getSpecificAssetAccount": _specific_account,
}

_MUTATION_RESOLVERS: dict[str, Resolver] = {
    "signInClient": _sign_in_client,
    "signInUser": _sign_in_user,
    "generateDaysCode": _generator(CodeType.DAYSCODE, "generateDaysCodeInput"),
    "generateFreeCode": _generator(CodeType.FREECODE, "generateFreeCodeInput"),
    "generateResetCode": _generator(CodeType.RESETCODE, "generateResetCodeInput"),
    "distributorIncreaseFreeCodeCountForItem": _increase_free,
    "distributorIncreaseResetCodeCountForItem": _increase_reset,
}
