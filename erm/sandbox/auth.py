"""Who can sign in to the sandbox, the tokens they get, and who a token names.

Three kinds of login, as in production (erm-api.md §8): a distributor and a servicer acting for one
sign in with ``signInClient``; a distributor's staff sign in with ``signInUser``. Each mutation
refuses the other kind's credentials. Whoever signed in, the token's ``distributorId`` decides whose
data a request may see; the signed-in login only decides the name recorded on issued codes.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from erm.sandbox.config import SandboxConfig
from erm.sandbox.errors import (
    MSG_INVALID_CREDENTIALS,
    MSG_UNAUTHORIZED,
    UNAUTHENTICATED,
    SandboxError,
)
from erm.sandbox.model import Distributor, Servicer, StaffUser
from erm.sandbox.tokens import TokenAuthority, TokenClaims

ROLE_DISTRIBUTOR = "DISTRIBUTOR"
ROLE_SERVICER = "SERVICER"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: whose data it may see, and the name its codes are recorded under."""

    distributor: Distributor
    actor_name: str


class Logins:
    """Every login of one sandbox, and the token authority that signs for them."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        """Read on every sign-in, so a test may change the token lifetime or the clock."""
        self.tokens = TokenAuthority()
        self.distributors: dict[str, Distributor] = {}
        self.servicers: dict[str, Servicer] = {}
        self.staff: dict[str, StaffUser] = {}
        self._clients_by_email: dict[str, Distributor | Servicer] = {}
        self._staff_by_email: dict[str, StaffUser] = {}

    def clear(self) -> None:
        """Forget every login (the signing key stays, so tokens of re-seeded ids keep working)."""
        self.distributors.clear()
        self.servicers.clear()
        self.staff.clear()
        self._clients_by_email.clear()
        self._staff_by_email.clear()

    def add_distributor(self, distributor: Distributor) -> None:
        self.distributors[distributor.id] = distributor
        self._clients_by_email[distributor.email.lower()] = distributor

    def add_servicer(self, servicer: Servicer) -> None:
        self.servicers[servicer.id] = servicer
        self._clients_by_email[servicer.email.lower()] = servicer

    def add_staff(self, user: StaffUser) -> None:
        self.staff[user.id] = user
        self._staff_by_email[user.email.lower()] = user

    # -- sign-in ----------------------------------------------------------------------------------

    def sign_in_client(self, email: str, password: str) -> dict[str, Any]:
        """``signInClient``: a distributor, or a servicer acting for one."""
        account = self._clients_by_email.get(email.strip().lower())
        if account is None or not _same(account.password, password):
            raise SandboxError(MSG_INVALID_CREDENTIALS, UNAUTHENTICATED)
        first_name: str | None = None
        last_name: str | None = None
        if isinstance(account, Servicer):
            role = ROLE_SERVICER
            distributor = account.distributor
            token = self._token(
                distributor, role, servicer_id=account.id, delegator_email=distributor.email
            )
        else:
            role = ROLE_DISTRIBUTOR
            token = self._token(account, role)
            contact = account.org_contact_person.name.split(" ")
            first_name, last_name = contact[0], contact[-1]
        return {
            "_id": account.id,
            "accessToken": token,
            "email": account.email,
            "name": account.display_name,
            "firstName": first_name,
            "lastName": last_name,
            "role": role,
            "roleName": role,
            "profile": None,
            "idString": account.id,
            "type": "ORGANIZATION",
            "deleteStatus": False,
            "createdAt": account.created_at,
            "updatedAt": account.created_at,
        }

    def sign_in_user(self, email: str, password: str) -> dict[str, Any]:
        """``signInUser``: a distributor's staff member."""
        user = self._staff_by_email.get(email.strip().lower())
        if user is None or not _same(user.password, password):
            raise SandboxError(MSG_INVALID_CREDENTIALS, UNAUTHENTICATED)
        return {
            "_id": user.id,
            "accessToken": self._token(user.distributor, ROLE_DISTRIBUTOR, user_id=user.id),
            "refreshToken": secrets.token_urlsafe(32),  # opaque; the sandbox never reads it back
            "email": user.email,
            "name": user.display_name,
            "agentId": None,
            "agentType": None,
            "role": {"_id": user.role_id, "name": ROLE_DISTRIBUTOR},
            "subrole": None,
        }

    def _token(
        self,
        distributor: Distributor,
        role: str,
        *,
        user_id: str | None = None,
        servicer_id: str | None = None,
        delegator_email: str | None = None,
    ) -> str:
        return self.tokens.issue(
            distributor_id=distributor.id,
            role_name=role,
            issued_at=int(self.config.clock()),
            lifetime=self.config.token_ttl_seconds,
            user_id=user_id,
            servicer_id=servicer_id,
            delegator_email=delegator_email,
        )

    # -- tokens -----------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller behind an ``Authorization: Bearer <jwt>`` header, or ``Unauthorized``."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        claims = self.tokens.verify(token) if scheme.lower() == "bearer" and token else None
        if claims is None or self.config.clock() >= claims.expires:
            raise SandboxError(MSG_UNAUTHORIZED, UNAUTHENTICATED)
        caller = self._caller(claims)
        if caller is None:
            raise SandboxError(MSG_UNAUTHORIZED, UNAUTHENTICATED)
        return caller

    def _caller(self, claims: TokenClaims) -> Caller | None:
        """Who the claims name, if they all still exist and belong together."""
        distributor = self.distributors.get(claims.distributor_id)
        if distributor is None:
            return None
        if claims.servicer_id is not None:
            servicer = self.servicers.get(claims.servicer_id)
            if servicer is None or servicer.distributor is not distributor:
                return None
            return Caller(distributor, servicer.display_name)
        if claims.user_id is not None:
            user = self.staff.get(claims.user_id)
            if user is None or user.distributor is not distributor:
                return None
            return Caller(distributor, user.display_name)
        return Caller(distributor, distributor.display_name)


def _same(stored: str, given: str) -> bool:
    """Compare passwords in constant time."""
    return hmac.compare_digest(stored.encode(), given.encode())
