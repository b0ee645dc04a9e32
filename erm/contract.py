"""The contract check: do erm-bot's GraphQL documents fit the schema of the ERM it talks to?

ERM publishes no schema, and the evidence about it conflicts (erm-api.md §8: history's
``distributorId``, which host is production). So the check asks the ERM at hand: it reads the schema
by introspection and validates every document of :mod:`erm.operations` against it, naming each
mismatch by operation, field or argument, and ERM's type against the document's.

Production may switch introspection off (Apollo's ``introspection: false``). The check then probes
instead: it runs each read-only operation once, on the distributor's first fleet, item and asset
account, and reports what ERM answered. Code mutations are never sent, since each would issue a code
and count against the item's limits; sign-ins are checked by signing in. Without introspection both
are reported as not checked.
"""

from __future__ import annotations

import enum
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import httpx
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionNode,
    ValueNode,
    VariableNode,
    build_client_schema,
    get_introspection_query,
    parse,
    validate,
)

from erm import operations as ops
from erm.client import ErmClient
from erm.errors import ErmAuthError, ErmError, ErmSchemaError, ErmUnavailableError

T = TypeVar("T")

INTROSPECTION = ops.Operation(
    "IntrospectionQuery", "__schema", get_introspection_query(descriptions=False)
)

# graphql-core's validation messages (3.3 wording, and 3.2's where it differs), turned into the
# place of the mismatch and what differs there.
_WRONG_TYPE = re.compile(
    r"^Variable '\$(?P<var>\w+)' of type '(?P<found>[^']+)' used in position "
    r"expecting type '(?P<expected>[^']+)'"
)
_UNKNOWN_ARGUMENT = re.compile(
    r"^Unknown argument '(?P<arg>\w+)' on field '(?P<type>\w+)\.(?P<field>\w+)'\.(?P<hint>.*)"
)
_MISSING_ARGUMENT = re.compile(
    r"^(?:Argument '(?P<type>\w+)\.(?P<field>\w+)\((?P<arg>\w+):\)'"
    r"|Field '(?P<field2>\w+)' argument '(?P<arg2>\w+)')"
    r" of type '(?P<expected>[^']+)' is required, but it was not provided"
)
_UNKNOWN_FIELD = re.compile(
    r"^Cannot query field '(?P<field>\w+)' on type '(?P<type>\w+)'\.(?P<hint>.*)"
)
_UNKNOWN_TYPE = re.compile(r"^Unknown type '(?P<name>\w+)'\.(?P<hint>.*)")
_SCHEMA_CODE = "GRAPHQL_VALIDATION_FAILED"


class Outcome(enum.StrEnum):
    OK = "ok"
    MISMATCH = "mismatch"
    """The document does not fit ERM's schema."""
    FAILED = "failed"
    """A probe ERM answered with an error, or not at all."""
    NOT_CHECKED = "not checked"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One place where a document and ERM's schema disagree."""

    operation: str
    where: str
    """The field or argument, e.g. ``Query.getSpecificItem(itemId)``, ``CodeEvent.codeDays``."""
    message: str
    """What differs, e.g. ``ERM expects ID!, the document declares $distributorId: ID``."""

    def __str__(self) -> str:
        return f"{self.operation}: {self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Result:
    """What the check found about one operation."""

    operation: str
    outcome: Outcome
    detail: str = ""
    mismatches: tuple[Mismatch, ...] = ()


@dataclass(frozen=True, slots=True)
class ContractReport:
    host: str
    """The configured ERM URL's host (and port), e.g. ``federated-graphql-api.omnivoltaic.com``."""
    introspection: bool
    """Whether the schema was read by introspection (else the read-only operations were probed)."""
    results: tuple[Result, ...] = ()
    refusal: str | None = None
    """Why introspection was not used: ERM's answer to it."""
    unreachable: str | None = None
    """Set when ERM answered neither introspection nor a probe: nothing was checked."""

    @property
    def ok(self) -> bool:
        return self.unreachable is None and not self.failures

    @property
    def failures(self) -> tuple[Result, ...]:
        return tuple(r for r in self.results if r.outcome in (Outcome.MISMATCH, Outcome.FAILED))

    @property
    def mismatches(self) -> tuple[Mismatch, ...]:
        return tuple(m for r in self.results for m in r.mismatches)

    def count(self, outcome: Outcome) -> int:
        return sum(r.outcome is outcome for r in self.results)


async def check_contract(client: ErmClient, token: str, distributor_id: str) -> ContractReport:
    """Check every document against the ERM ``client`` is configured for, as ``distributor_id``.

    Nothing is changed in ERM. An ``ErmAuthError`` (the token was refused) is raised, so that
    ``ErmService.run_as`` signs in again and retries; every other ERM error becomes a result.
    """
    host = host_of(client.config.url)
    try:
        schema = await read_schema(client, token)
    except ErmAuthError:
        raise
    except ErmError as exc:
        refused = not isinstance(exc, ErmUnavailableError)
        refusal = _erm_message(exc)
    else:
        return ContractReport(host, True, tuple(validate_operations(schema)))
    prober = _Prober(client, token, distributor_id, answered=refused)
    await prober.run()
    if not prober.answered:
        return ContractReport(host, False, refusal=refusal, unreachable=prober.silence or refusal)
    return ContractReport(host, False, tuple(prober.results()), refusal=refusal)


async def read_schema(client: ErmClient, token: str) -> GraphQLSchema:
    """ERM's schema by introspection; an answer that is not a schema counts as a refusal."""
    data = await client.execute(INTROSPECTION, {}, token=token)
    try:
        return build_client_schema({"__schema": data})  # type: ignore[typeddict-item]
    except (GraphQLError, TypeError, KeyError, ValueError) as exc:
        raise ErmSchemaError(INTROSPECTION.name, f"not a schema ({exc})") from exc


def validate_operations(
    schema: GraphQLSchema, operations: Iterable[ops.Operation] = ops.ALL
) -> list[Result]:
    """Validate each document against ``schema``: one result per operation."""
    results = []
    for op in operations:
        try:
            document = parse(op.document)
        except GraphQLError as exc:
            mismatch = Mismatch(op.name, "document", f"does not parse: {exc.message}")
            results.append(Result(op.name, Outcome.MISMATCH, mismatch.message, (mismatch,)))
            continue
        found = tuple(
            _mismatch(op, document, error.message, schema) for error in validate(schema, document)
        )
        if found:
            results.append(Result(op.name, Outcome.MISMATCH, found[0].message, found))
        else:
            results.append(Result(op.name, Outcome.OK, "fits ERM's schema"))
    return results


def host_of(url: str) -> str:
    """The host of an ERM URL, with its port when one is given: never a user, password or path."""
    try:
        parts = httpx.URL(url)
    except Exception:
        return "an unreadable URL"
    return f"{parts.host}:{parts.port}" if parts.port else parts.host


# -- probing, when introspection is refused ------------------------------------------------------


# The probes that read one thing another probe lists first.
_NEEDS = {
    ops.FLEET.name: (ops.ITEM_FLEETS, "fleet"),
    ops.ITEM.name: (ops.CLIENT_ITEMS, "item"),
    ops.CODE_HISTORY.name: (ops.CLIENT_ITEMS, "item"),
    ops.ASSET_ACCOUNT.name: (ops.ASSET_ACCOUNTS, "asset account"),
}


class _Prober:
    """Runs each read-only operation once, on the first fleet, item and account ERM lists."""

    def __init__(
        self, client: ErmClient, token: str, distributor_id: str, *, answered: bool
    ) -> None:
        self.client = client
        self.token = token
        self.distributor_id = distributor_id
        self.answered = answered
        """Whether ERM has answered anything in this check (data, or an error of its own)."""
        self.silence: str | None = None
        """Why the probing stopped: ERM had answered nothing, and the first probe neither."""
        self._results: dict[str, Result] = {}

    async def run(self) -> None:
        client, token, who = self.client, self.token, self.distributor_id
        fleets = await self._probe(
            ops.ITEM_FLEETS,
            lambda: client.item_fleets(token, who, first=1),
            lambda page: f"{len(page.nodes)} fleet(s) on a first page of 1",
        )
        if fleets is not None and fleets.nodes:
            fleet_id = fleets.nodes[0].id
            await self._probe(
                ops.FLEET, lambda: client.fleet(token, fleet_id), lambda f: f"fleet {f.name}"
            )
        items = await self._probe(
            ops.CLIENT_ITEMS,
            lambda: client.client_items(token, who, first=1),
            lambda page: f"{len(page.nodes)} item(s) on a first page of 1",
        )
        if items is not None and items.nodes:
            item_id = items.nodes[0].id
            item = await self._probe(
                ops.ITEM, lambda: client.item(token, item_id), lambda i: f"item {i.label}"
            )
            await self._probe(
                ops.CODE_HISTORY,
                lambda: client.code_history(token, item_id, who, first=1),
                lambda page: (
                    f"{len(page.nodes)} code event(s) of {item.label if item else item_id}"
                ),
            )
        accounts = await self._probe(
            ops.ASSET_ACCOUNTS,
            lambda: client.asset_accounts(token, who, first=1),
            lambda page: f"{len(page.nodes)} account(s) on a first page of 1",
        )
        if accounts is not None and accounts.nodes:
            account_id = accounts.nodes[0].id
            await self._probe(
                ops.ASSET_ACCOUNT,
                lambda: client.asset_account(token, account_id),
                lambda a: f"account {a.id}",
            )

    async def _probe(
        self, op: ops.Operation, call: Callable[[], Awaitable[T]], describe: Callable[[T], str]
    ) -> T | None:
        if self.silence is not None:
            self._record(op, Outcome.NOT_CHECKED, "ERM did not answer")
            return None
        try:
            value = await call()
        except ErmAuthError:
            raise
        except ErmUnavailableError as exc:
            if not self.answered:
                self.silence = str(exc)
            self._record(op, Outcome.FAILED, str(exc))
            return None
        except ErmError as exc:
            self.answered = True
            message = _erm_message(exc)
            if _is_schema_error(exc):
                mismatch = _mismatch(op, parse(op.document), message)
                self._results[op.name] = Result(
                    op.name, Outcome.MISMATCH, mismatch.message, (mismatch,)
                )
            else:
                self._record(op, Outcome.FAILED, message)
            return None
        self.answered = True
        self._record(op, Outcome.OK, describe(value))
        return value

    def _record(self, op: ops.Operation, outcome: Outcome, detail: str) -> None:
        self._results[op.name] = Result(op.name, outcome, detail)

    def results(self) -> list[Result]:
        """One result per operation of :data:`erm.operations.ALL`, in its order."""
        return [self._results.get(op.name) or _unprobed(op, self._results) for op in ops.ALL]


def _unprobed(op: ops.Operation, probed: Mapping[str, Result]) -> Result:
    needs = _NEEDS.get(op.name)
    if op.root_field.startswith("signIn"):
        why = "a sign-in: checked by signing in"
    elif op.mutation:
        why = "not sent: it would change ERM (a code mutation issues a code)"
    elif needs is None:
        why = "no probe for it"
    elif (before := probed.get(needs[0].name)) is not None and before.outcome is Outcome.OK:
        why = f"no {needs[1]} to read"
    else:
        why = f"needs {needs[0].name} to work first"
    return Result(op.name, Outcome.NOT_CHECKED, why)


def _is_schema_error(exc: ErmError) -> bool:
    return isinstance(exc, ErmSchemaError) or getattr(exc, "erm_code", None) == _SCHEMA_CODE


def _erm_message(exc: ErmError) -> str:
    """ERM's own words where the error kept them."""
    message = getattr(exc, "erm_message", None)
    return message if isinstance(message, str) and message else str(exc)


# -- naming a mismatch ---------------------------------------------------------------------------


def _mismatch(
    op: ops.Operation, document: DocumentNode, message: str, schema: GraphQLSchema | None = None
) -> Mismatch:
    """A validation message as the place it is about and what differs there."""
    root = f"{'Mutation' if op.mutation else 'Query'}.{op.root_field}"
    if match := _WRONG_TYPE.match(message):
        var = match["var"]
        where = " and ".join(_variable_usages(document).get(var, [f"${var}"]))
        found = f"the document declares ${var}: {match['found']}"
        return Mismatch(op.name, where, f"ERM expects {match['expected']}, {found}")
    if match := _UNKNOWN_ARGUMENT.match(message):
        arg, owner = match["arg"], f"{match['type']}.{match['field']}"
        known = _arguments(schema, match["type"], match["field"])
        told = f" (its arguments: {known})" if known is not None else _hint(match["hint"])
        return Mismatch(op.name, f"{owner}({arg})", f"ERM has no argument {arg}{told}")
    if match := _MISSING_ARGUMENT.match(message):
        field_name, arg = match["field"] or match["field2"], match["arg"] or match["arg2"]
        if match["type"]:
            owner = f"{match['type']}.{field_name}"
        else:  # graphql-core 3.2 does not name the type
            owner = root if field_name == op.root_field else field_name
        return Mismatch(
            op.name,
            f"{owner}({arg})",
            f"ERM requires {arg}: {match['expected']}, which the document does not send",
        )
    if match := _UNKNOWN_FIELD.match(message):
        where = f"{match['type']}.{match['field']}"
        if where == root:
            return Mismatch(
                op.name, where, f"ERM has no {op.root_field}: the whole operation is missing"
            )
        return Mismatch(op.name, where, f"ERM has no such field{_hint(match['hint'])}")
    if match := _UNKNOWN_TYPE.match(message):
        return Mismatch(
            op.name, f"type {match['name']}", f"ERM has no such type{_hint(match['hint'])}"
        )
    return Mismatch(op.name, "document", message)


def _hint(text: str) -> str:
    """graphql-core's "Did you mean ...?", if it gave one."""
    return f" ({text.strip()})" if text.strip() else ""


def _arguments(schema: GraphQLSchema | None, type_name: str, field_name: str) -> str | None:
    """A field's arguments in ERM's schema, as ``id: ID!, first: Int``."""
    owner = schema.get_type(type_name) if schema is not None else None
    if not isinstance(owner, GraphQLObjectType) or field_name not in owner.fields:
        return None
    args = owner.fields[field_name].args
    return ", ".join(f"{name}: {arg.type}" for name, arg in args.items()) or "none"


def _variable_usages(document: DocumentNode) -> dict[str, list[str]]:
    """Where each variable is passed: ``{"itemId": ["Query.getSpecificItem(itemId)"]}``."""
    usages: dict[str, list[str]] = defaultdict(list)

    def walk(selections: Iterable[SelectionNode], parent: str) -> None:
        for node in selections:
            if isinstance(node, InlineFragmentNode):
                walk(node.selection_set.selections, parent)
            if not isinstance(node, FieldNode):
                continue
            name = f"{parent}.{node.name.value}" if parent else node.name.value
            for argument in node.arguments or ():
                for var in _variables_in(argument.value):
                    usages[var].append(f"{name}({argument.name.value})")
            if node.selection_set is not None:
                walk(node.selection_set.selections, "")

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            root = definition.operation.value.capitalize()
            walk(definition.selection_set.selections, root)
    return usages


def _variables_in(value: ValueNode) -> list[str]:
    if isinstance(value, VariableNode):
        return [value.name.value]
    if isinstance(value, ListValueNode):
        return [var for item in value.values for var in _variables_in(item)]
    if isinstance(value, ObjectValueNode):
        return [var for item in value.fields for var in _variables_in(item.value)]
    return []
