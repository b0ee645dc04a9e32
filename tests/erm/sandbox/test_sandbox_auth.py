"""Sign-in and bearer-token checks of the sandbox."""

from __future__ import annotations

import jwt
import pytest

from erm.sandbox import ACME

SIGN_IN = """
mutation SignIn($creds: SignInCredentialsInput!) {
  signInClient(signInCredentialsInput: $creds) {
    _id accessToken email name roleName role type deleteStatus createdAt
  }
}"""

ITEM = "query Item($id: ID!) { getSpecificItem(itemId: $id) { _id oemItemID } }"


async def test_sign_in_returns_a_jwt_for_the_distributor(anonymous, state, clock):
    data = await anonymous.data(
        SIGN_IN, {"creds": {"email": ACME.email, "password": ACME.password}}
    )

    token = data["signInClient"]
    acme = state.distributor_by_name("acme")
    assert token["_id"] == acme.id
    assert token["roleName"] == "DISTRIBUTOR"
    assert token["email"] == ACME.email
    assert token["name"] == acme.display_name
    claims = jwt.decode(token["accessToken"], options={"verify_signature": False})
    assert claims["sub"] == acme.id
    assert claims["_id"] == acme.id
    assert claims["email"] == ACME.email
    assert claims["iat"] == int(clock.now)
    assert claims["exp"] - claims["iat"] == state.config.token_ttl_seconds


@pytest.mark.parametrize(
    ("email", "password"),
    [(ACME.email, "wrong-password"), ("nobody@sandbox.erm", ACME.password)],
)
async def test_sign_in_with_bad_credentials_is_refused(anonymous, email, password):
    error = await anonymous.error(SIGN_IN, {"creds": {"email": email, "password": password}})

    assert error["message"] == "Invalid Credentials"
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["path"] == ["signInClient"]


async def test_sign_in_email_is_case_insensitive(anonymous):
    data = await anonymous.data(
        SIGN_IN, {"creds": {"email": ACME.email.upper(), "password": ACME.password}}
    )

    assert data["signInClient"]["email"] == ACME.email


async def test_missing_token_is_unauthorized(anonymous, state):
    item = state.items_of("acme")[0]

    response = await anonymous.post(ITEM, {"id": item.id})

    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["message"] == "Unauthorized"
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        jwt.encode({"sub": "x", "exp": 4_000_000_000}, "k" * 40, algorithm="HS256"),
    ],
    ids=["garbled", "bad-signature-shape", "foreign-key"],
)
async def test_bad_token_is_unauthorized(anonymous, state, token):
    item = state.items_of("acme")[0]

    response = await anonymous.post(ITEM, {"id": item.id}, token=token)

    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_token_signed_by_the_sandbox_key_but_unknown_subject_is_unauthorized(
    anonymous, state, clock
):
    token = jwt.encode(
        {"sub": "0" * 24, "exp": int(clock.now) + 60}, state.config.jwt_secret, algorithm="HS256"
    )

    response = await anonymous.post(ITEM, {"id": state.items_of("acme")[0].id}, token=token)

    assert response.json()["errors"][0]["message"] == "Unauthorized"


async def test_non_bearer_scheme_is_unauthorized(acme, state):
    item = state.items_of("acme")[0]

    response = await acme.http.post(
        "/graphql",
        json={"query": ITEM, "variables": {"id": item.id}},
        headers={"Authorization": f"Token {acme.token}"},
    )

    assert response.json()["errors"][0]["message"] == "Unauthorized"


async def test_token_expires_on_the_injected_clock(acme, state, clock):
    item = state.items_of("acme")[0]
    state.config.token_ttl_seconds = 5
    await acme.sign_in(ACME)
    clock.advance(4)
    assert (await acme.data(ITEM, {"id": item.id}))["getSpecificItem"]["_id"] == item.id

    clock.advance(1)
    error = await acme.error(ITEM, {"id": item.id})

    assert error["message"] == "Unauthorized"
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_signing_in_again_after_expiry_gives_a_working_token(acme, state, clock):
    item = state.items_of("acme")[0]
    state.config.token_ttl_seconds = 5
    await acme.sign_in(ACME)
    clock.advance(10)
    assert (await acme.error(ITEM, {"id": item.id}))["message"] == "Unauthorized"

    await acme.sign_in(ACME)

    assert (await acme.data(ITEM, {"id": item.id}))["getSpecificItem"]["_id"] == item.id
