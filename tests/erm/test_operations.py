"""The client's GraphQL documents validate against the reconstructed ERM schema (erm-api.md §6)."""

from __future__ import annotations

import pytest
from graphql import build_schema, parse, validate

from erm import operations as ops
from erm.sandbox.schema import SCHEMA_PATH

SCHEMA = build_schema(SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize("operation", ops.ALL, ids=lambda op: op.name)
def test_document_validates_against_the_erm_schema(operation: ops.Operation) -> None:
    document = parse(operation.document)
    assert validate(SCHEMA, document) == []
    (definition,) = document.definitions
    assert definition.name is not None
    assert definition.name.value == operation.name
    assert (definition.operation.value == "mutation") == operation.mutation  # type: ignore[attr-defined]
