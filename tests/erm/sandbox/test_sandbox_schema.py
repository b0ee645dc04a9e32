"""The schema file and the model stay in step."""

from __future__ import annotations

import dataclasses

import pytest
from graphql import GraphQLNonNull

from erm.sandbox import model
from erm.sandbox.schema import attribute_name, load_schema, serialize_datetime

MODEL_OF_TYPE = {
    "Item": model.Item,
    "ItemFleet": model.Fleet,
    "ItemBatch": model.Batch,
    "ItemFirmware": model.Firmware,
    "CodeGenerator": model.CodeGenerator,
    "CodeEvent": model.CodeEvent,
    "AssetAccount": model.AssetAccount,
    "CreditAccount": model.CreditAccount,
    "Activity": model.Activity,
    "Payment": model.Payment,
    "PayPlanBaseEntity": model.PayPlan,
    "PlanDetail": model.PlanDetail,
    "AssetAccountMeta": model.AccountMeta,
    "Person": model.Person,
    "Contact": model.Contact,
    "Address": model.Address,
    "AddressLocation": model.AddressLocation,
    "Distributor": model.Distributor,
}


def _attributes(cls) -> set[str]:
    fields = {f.name for f in dataclasses.fields(cls)}
    properties = {name for name in dir(cls) if isinstance(getattr(cls, name, None), property)}
    if cls is model.Fleet:
        fields |= {f.name for f in dataclasses.fields(model.CodePolicy)}
    return fields | properties


@pytest.mark.parametrize(("type_name", "cls"), MODEL_OF_TYPE.items())
def test_every_non_null_field_has_a_model_attribute(type_name, cls):
    graphql_type = load_schema().type_map[type_name]

    missing = [
        name
        for name, field in graphql_type.fields.items()
        if isinstance(field.type, GraphQLNonNull) and attribute_name(name) not in _attributes(cls)
    ]

    assert missing == []


def test_attribute_names_follow_the_field_names():
    assert [attribute_name(n) for n in ("_id", "oemItemID", "c2uRatio", "starting_code")] == [
        "id",
        "oem_item_id",
        "c2u_ratio",
        "starting_code",
    ]


def test_datetimes_render_in_erm_format():
    assert serialize_datetime(1_740_816_930.1234) == "2025-03-01T08:15:30.123Z"


def test_history_needs_a_distributor_id():
    query = load_schema().query_type
    assert query is not None

    distributor_id = query.fields["getAllCodeEventsForSpecificItemByDistributor"].args[
        "distributorId"
    ]

    assert str(distributor_id.type) == "ID!"


def test_pagination_argument_is_productions_enum():
    query = load_schema().query_type
    assert query is not None

    pagination = query.fields["getAllClientItems"].args["pagination"]

    assert str(pagination.type) == "PaginationEnum"
    assert list(pagination.type.values) == ["CURSOR", "OFFSET"]


def test_sign_in_user_takes_credentials_and_answers_an_auth_token():
    mutation = load_schema().mutation_type
    assert mutation is not None

    sign_in_user = mutation.fields["signInUser"]

    assert str(sign_in_user.args["signInCredentials"].type) == "SignInCredentialsDto!"
    assert str(sign_in_user.type) == "AuthToken"
    assert {"_id", "accessToken", "refreshToken", "email", "name", "role", "subrole"} <= set(
        sign_in_user.type.fields
    )
