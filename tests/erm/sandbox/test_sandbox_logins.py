"""Servicers and staff users: logins that act for a distributor (erm-api.md §8)."""

from __future__ import annotations

import jwt

from erm.sandbox import ACME, ACME_SERVICER, ACME_STAFF, FLEET_OPEN
from erm.sandbox.model import CodeSystem

SIGN_IN_CLIENT = """
mutation SignIn($creds: SignInCredentialsInput!) {
  signInClient(signInCredentialsInput: $creds) { _id accessToken roleName email name }
}"""
SIGN_IN_USER = """
mutation SignIn($creds: SignInCredentialsDto!) {
  signInUser(signInCredentials: $creds) {
    _id accessToken refreshToken email name agentId agentType role { _id name } subrole { _id }
  }
}"""
FLEETS = """
query Fleets($client: String!) {
  getItemFleetsForClient(clientId: $client) { pageData { count } }
}"""
DAYS = """
mutation Days($in: GenerateDaysCodeInput!) {
  generateDaysCode(generateDaysCodeInput: $in) { codeDec }
}"""
HISTORY = """
query History($item: ID!, $dist: ID!) {
  getAllCodeEventsForSpecificItemByDistributor(itemId: $item, distributorId: $dist, first: 1) {
    page { edges { node { codeDecString actorName } } }
  }
}"""


def _creds(credentials):
    return {"creds": {"email": credentials.email, "password": credentials.password}}


def _claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def _open_item(state):
    return state.items_of("acme", fleet=FLEET_OPEN, code_system=CodeSystem.ACP1)[0]


# -- servicer -------------------------------------------------------------------------------------


async def test_servicer_signs_in_with_its_own_id(anonymous, state):
    data = await anonymous.data(SIGN_IN_CLIENT, _creds(ACME_SERVICER))

    answer = data["signInClient"]
    servicer = next(iter(state.logins.servicers.values()))
    assert answer["_id"] == servicer.id
    assert answer["_id"] != state.distributor_by_name("acme").id
    assert answer["roleName"] == "SERVICER"
    assert answer["email"] == ACME_SERVICER.email


async def test_servicer_token_names_the_distributor_it_acts_for(anonymous, state):
    data = await anonymous.data(SIGN_IN_CLIENT, _creds(ACME_SERVICER))

    answer = data["signInClient"]
    claims = _claims(answer["accessToken"])
    assert claims["distributorId"] == state.distributor_by_name("acme").id
    assert claims["servicerId"] == answer["_id"]
    assert claims["distributorDelegate"] is True
    assert claims["delegatorEmail"] == ACME.email
    assert claims["roleName"] == "SERVICER"
    assert claims["userId"] is None


async def test_servicer_works_on_the_distributors_data(servicer):
    data = await servicer.data(FLEETS, {"client": servicer.distributor_id})

    assert data["getItemFleetsForClient"]["pageData"]["count"] == 4


async def test_servicer_passing_its_own_id_is_forbidden(servicer):
    error = await servicer.error(FLEETS, {"client": servicer.id})

    assert error["message"] == "Forbidden resource"
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_servicer_codes_are_recorded_under_its_name(servicer, state):
    item = _open_item(state)
    code = (await servicer.data(DAYS, {"in": {"itemId": item.id, "codeDays": 7}}))[
        "generateDaysCode"
    ]

    data = await servicer.data(HISTORY, {"item": item.id, "dist": servicer.distributor_id})

    event = data["getAllCodeEventsForSpecificItemByDistributor"]["page"]["edges"][0]["node"]
    assert event == {
        "codeDecString": code["codeDec"],
        "actorName": next(iter(state.logins.servicers.values())).display_name,
    }


async def test_servicer_is_refused_by_sign_in_user(anonymous):
    error = await anonymous.error(SIGN_IN_USER, _creds(ACME_SERVICER))

    assert error["message"] == "Invalid Credentials"
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


# -- staff ----------------------------------------------------------------------------------------


async def test_staff_user_signs_in_with_sign_in_user(anonymous, state):
    data = await anonymous.data(SIGN_IN_USER, _creds(ACME_STAFF))

    answer = data["signInUser"]
    user = next(iter(state.logins.staff.values()))
    assert answer["_id"] == user.id
    assert answer["email"] == ACME_STAFF.email
    assert answer["name"] == user.display_name
    assert answer["refreshToken"]
    assert answer["role"] == {"_id": user.role_id, "name": "DISTRIBUTOR"}


async def test_staff_token_names_the_user_and_the_distributor(anonymous, state):
    data = await anonymous.data(SIGN_IN_USER, _creds(ACME_STAFF))

    answer = data["signInUser"]
    claims = _claims(answer["accessToken"])
    assert claims["distributorId"] == state.distributor_by_name("acme").id
    assert claims["userId"] == answer["_id"]
    assert claims["roleName"] == "DISTRIBUTOR"
    assert claims["servicerId"] is None
    assert claims["distributorDelegate"] is False


async def test_staff_works_on_the_distributors_data(staff):
    data = await staff.data(FLEETS, {"client": staff.distributor_id})

    assert data["getItemFleetsForClient"]["pageData"]["count"] == 4


async def test_staff_passing_its_own_id_is_forbidden(staff):
    error = await staff.error(FLEETS, {"client": staff.id})

    assert error["message"] == "Forbidden resource"


async def test_staff_is_refused_by_sign_in_client(anonymous):
    error = await anonymous.error(SIGN_IN_CLIENT, _creds(ACME_STAFF))

    assert error["message"] == "Invalid Credentials"
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_distributor_is_refused_by_sign_in_user(anonymous):
    error = await anonymous.error(SIGN_IN_USER, _creds(ACME))

    assert error["message"] == "Invalid Credentials"


async def test_a_removed_servicer_loses_its_token(servicer, state):
    state.logins.servicers.clear()

    error = await servicer.error(FLEETS, {"client": servicer.distributor_id})

    assert error["message"] == "Unauthorized"


async def test_a_removed_staff_user_loses_its_token(staff, state):
    state.logins.staff.clear()

    error = await staff.error(FLEETS, {"client": staff.distributor_id})

    assert error["message"] == "Unauthorized"
