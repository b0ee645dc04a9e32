"""Sign-in and bearer-token checks of the sandbox: production's token shape (erm-api.md §8)."""

from __future__ import annotations

import jwt
import pytest

from erm.sandbox import ACME, SandboxError, seed_state
from erm.sandbox.config import SandboxConfig
from erm.sandbox.tokens import signing_key

SIGN_IN = """
mutation SignIn($creds: SignInCredentialsInput!) {
  signInClient(signInCredentialsInput: $creds) {
    _id accessToken email name roleName role type deleteStatus createdAt
  }
}"""

ITEM = "query Item($id: ID!) { getSpecificItem(itemId: $id) { _id oemItemID } }"


def _sandbox_token(state, claims, kid=None):
    """A token signed with the sandbox's own key, with claims of the test's choosing."""
    headers = {"kid": kid if kid is not None else state.logins.tokens.key_id}
    return jwt.encode(claims, signing_key(), algorithm="RS256", headers=headers)


async def test_sign_in_returns_the_distributor_and_its_token(anonymous, state):
    data = await anonymous.data(
        SIGN_IN, {"creds": {"email": ACME.email, "password": ACME.password}}
    )

    token = data["signInClient"]
    acme = state.distributor_by_name("acme")
    assert token["_id"] == acme.id
    assert token["roleName"] == "DISTRIBUTOR"
    assert token["email"] == ACME.email
    assert token["name"] == acme.display_name


async def test_token_has_productions_header_and_claims(anonymous, state, clock):
    data = await anonymous.data(
        SIGN_IN, {"creds": {"email": ACME.email, "password": ACME.password}}
    )

    token = data["signInClient"]["accessToken"]
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "RS256"
    assert header["kid"] == state.logins.tokens.key_id
    assert claims == {
        "distributorId": state.distributor_by_name("acme").id,
        "userId": None,
        "roleName": "DISTRIBUTOR",
        "servicerId": None,
        "distributorDelegate": False,
        "delegatorEmail": None,
        "iat": int(clock.now),
        "exp": int(clock.now) + state.config.token_ttl_seconds,
    }


def test_tokens_live_24_hours_by_default():
    assert SandboxConfig().token_ttl_seconds == 86_400


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
        jwt.encode(
            {"distributorId": "x", "iat": 0, "exp": 4_000_000_000}, "k" * 40, algorithm="HS256"
        ),
    ],
    ids=["garbled", "bad-signature-shape", "foreign-key"],
)
async def test_bad_token_is_unauthorized(anonymous, state, token):
    item = state.items_of("acme")[0]

    response = await anonymous.post(ITEM, {"id": item.id}, token=token)

    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_token_naming_an_unknown_distributor_is_unauthorized(anonymous, state, clock):
    now = int(clock.now)
    token = _sandbox_token(state, {"distributorId": "0" * 24, "iat": now, "exp": now + 60})

    response = await anonymous.post(ITEM, {"id": state.items_of("acme")[0].id}, token=token)

    assert response.json()["errors"][0]["message"] == "Unauthorized"


async def test_token_with_another_key_id_is_unauthorized(anonymous, state, clock):
    now = int(clock.now)
    claims = {"distributorId": state.distributor_by_name("acme").id, "iat": now, "exp": now + 60}
    token = _sandbox_token(state, claims, kid="0123456789abcdef")

    response = await anonymous.post(ITEM, {"id": state.items_of("acme")[0].id}, token=token)

    assert response.json()["errors"][0]["message"] == "Unauthorized"


async def test_revoked_tokens_are_refused(acme, state):
    item = state.items_of("acme")[0]
    assert (await acme.data(ITEM, {"id": item.id}))["getSpecificItem"]["_id"] == item.id

    state.revoke_tokens()

    assert (await acme.error(ITEM, {"id": item.id}))["message"] == "Unauthorized"


async def test_a_restarted_sandbox_refuses_the_old_tokens(acme, state, clock):
    restarted = seed_state(0, SandboxConfig(clock=clock))
    assert restarted.distributor_by_name("acme").id == acme.id  # same seed, same ids

    with pytest.raises(SandboxError, match="Unauthorized"):
        restarted.logins.authenticate(f"Bearer {acme.token}")


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
