"""Access tokens shaped like production's (erm-api.md §8): RS256 JWTs with a ``kid`` header.

Production's claims are ``distributorId``, ``userId`` (null for a distributor), ``roleName``,
``servicerId``, ``distributorDelegate``, ``delegatorEmail``, ``iat`` and ``exp``; there is no
``sub``. The RSA key is made once per process (key generation is slow and tests build many
sandboxes); what makes tokens instance-bound is the random ``kid``: a token whose ``kid`` is not the
instance's current one is refused, so a restarted sandbox (or :meth:`TokenAuthority.rotate`)
rejects every older token, as ERM does after a key change.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

_ALGORITHM = "RS256"
_CACHE_SIZE = 4096
_DECODE_OPTIONS: Any = {
    "verify_exp": False,  # checked against the sandbox's injectable clock instead
    "verify_iat": False,
    "verify_nbf": False,
    "require": ["iat", "exp", "distributorId"],
}


@cache
def signing_key() -> rsa.RSAPrivateKey:
    """The process-wide RSA key (tests may sign tokens of their own with it)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def _verifying_key() -> rsa.RSAPublicKey:
    return signing_key().public_key()


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says about its bearer."""

    distributor_id: str
    user_id: str | None
    servicer_id: str | None
    expires: float


class TokenAuthority:
    """Issues and verifies one sandbox instance's tokens.

    Verified tokens are cached (the benchmark sends the same token thousands of times, and an RSA
    verification costs far more than the rest of a small query); expiry is left to the caller,
    which checks it against its clock on every request.
    """

    def __init__(self) -> None:
        self.key_id = secrets.token_hex(8)
        self._verified: dict[str, TokenClaims] = {}

    def rotate(self) -> None:
        """Refuse every token issued so far."""
        self.key_id = secrets.token_hex(8)
        self._verified.clear()

    def issue(
        self,
        *,
        distributor_id: str,
        role_name: str,
        issued_at: int,
        lifetime: int,
        user_id: str | None = None,
        servicer_id: str | None = None,
        delegator_email: str | None = None,
    ) -> str:
        claims = {
            "distributorId": distributor_id,
            "userId": user_id,
            "roleName": role_name,
            "servicerId": servicer_id,
            "distributorDelegate": servicer_id is not None,
            "delegatorEmail": delegator_email,
            "iat": issued_at,
            "exp": issued_at + lifetime,
        }
        return jwt.encode(claims, signing_key(), algorithm=_ALGORITHM, headers={"kid": self.key_id})

    def verify(self, token: str) -> TokenClaims | None:
        """The claims of a token this instance signed, or ``None`` for anything else."""
        known = self._verified.get(token)
        if known is not None:
            return known
        try:
            if jwt.get_unverified_header(token).get("kid") != self.key_id:
                return None
            claims = jwt.decode(
                token, _verifying_key(), algorithms=[_ALGORITHM], options=_DECODE_OPTIONS
            )
        except jwt.InvalidTokenError:
            return None
        distributor_id, expires = claims["distributorId"], claims["exp"]
        user_id, servicer_id = claims.get("userId"), claims.get("servicerId")
        if (
            not isinstance(distributor_id, str)
            or isinstance(expires, bool)
            or not isinstance(expires, int | float)
            or not isinstance(user_id, str | None)
            or not isinstance(servicer_id, str | None)
        ):
            return None
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        known = TokenClaims(distributor_id, user_id, servicer_id, float(expires))
        self._verified[token] = known
        return known
