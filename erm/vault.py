"""Distributor credentials and ERM access tokens, stored only as AES-256-GCM ciphertext.

Each secret is an envelope from :class:`~erm.secret_box.SecretBox` whose associated data
``erm_distributors|<name>|<column>|<key id>`` binds it to its row and column: copied into another
distributor or column, it no longer decrypts. The table and the rules for its values live in
:mod:`erm.distributors`; this module is what may be done with them, one transaction each.

Rotation across a fleet of replicas (README, "Rotating keys"): 1) put the new key in front of the
old one on every replica and restart them; 2) ``erm-bot keys rotate`` (:meth:`TokenVault.rotate`);
3) drop the old key, restart again. An access token is only a cache: one that no longer decrypts
(a replica still on the old keys wrote it, or its key was dropped) is treated as absent and the
distributor signs in again. A password that no longer decrypts is an operator error that says
which key is missing.

Nothing here puts a password, a token or a key into a message or a ``repr``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from erm.distributors import (
    PASSWORD,
    TOKEN,
    DistributorRow,
    existing_row,
    find_row,
    secret_context,
    valid_client_id,
    valid_email,
    valid_name,
)
from erm.errors import InvalidInputError, VaultError
from erm.models import SignInMethod

# Re-exported (see __all__) for bot/, adapters/ and tests, which import them from here.
from erm.secret_box import (
    FINGERPRINT_PREFIX,
    DecryptionError,
    SecretBox,
    SecretKeyError,
    UnknownKeyError,
    code_tail,
)

__all__ = [
    "FINGERPRINT_PREFIX",
    "DecryptionError",
    "DistributorCredentials",
    "DistributorInfo",
    "DistributorRow",
    "SecretBox",
    "SecretKeyError",
    "StoredToken",
    "TokenVault",
    "code_tail",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributorCredentials:
    """What signing in to ERM as a distributor takes."""

    name: str
    email: str
    client_id: str | None
    password: str = field(repr=False)
    sign_in: SignInMethod = SignInMethod.CLIENT


@dataclass(frozen=True)
class StoredToken:
    """An ERM access token kept between runs, with the ERM id of the distributor it acts for."""

    client_id: str
    access_token: str = field(repr=False)
    expires_at: datetime | None


@dataclass(frozen=True)
class DistributorInfo:
    """What can be shown about a distributor without decrypting anything."""

    name: str
    email: str
    client_id: str | None
    has_token: bool
    token_expires_at: datetime | None
    created_at: datetime
    sign_in: SignInMethod = SignInMethod.CLIENT


class TokenVault:
    """Distributors' credentials and tokens, encrypted at rest; each method is one transaction."""

    def __init__(self, engine: AsyncEngine, box: SecretBox) -> None:
        self._box = box
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def box(self) -> SecretBox:
        """The keys this vault was built with; other stores keep their secrets under them too."""
        return self._box

    async def add_distributor(
        self,
        name: str,
        email: str,
        password: str,
        *,
        client_id: str | None = None,
        sign_in: SignInMethod = SignInMethod.CLIENT,
        replace: bool = False,
    ) -> None:
        """Store a distributor's credentials.

        An existing distributor is refused unless ``replace``; replacing forgets its stored token
        and client id (unless a new one is given), since they belong to the old credentials.
        """
        name = valid_name(name)
        email = valid_email(email)
        if not isinstance(password, str) or not password:
            raise InvalidInputError("the password must not be empty")
        client_id = valid_client_id(client_id) if client_id is not None else None
        password_secret = self._box.encrypt(password, context=secret_context(name, PASSWORD[0]))
        now = datetime.now(UTC)
        try:
            async with self._sessions.begin() as session:
                row = await find_row(session, name, lock=True)
                if row is None:
                    session.add(
                        DistributorRow(
                            name=name,
                            email=email,
                            client_id=client_id,
                            sign_in=SignInMethod(sign_in).value,
                            password_secret=password_secret,
                            token_secret=None,
                            token_expires_at=None,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                elif not replace:
                    raise _exists(name)
                else:
                    row.email = email
                    row.client_id = client_id
                    row.sign_in = SignInMethod(sign_in).value
                    row.password_secret = password_secret
                    row.token_secret = None
                    row.token_expires_at = None
                    row.updated_at = now
        except IntegrityError:  # added by someone else between our read and our insert
            raise _exists(name) from None

    async def credentials(self, name: str) -> DistributorCredentials:
        """The distributor's email and password, decrypted.

        A password that does not decrypt is an operator's problem (a key missing from this
        process's configuration): :class:`VaultError` says which key and what to do.
        """
        async with self._sessions.begin() as session:
            row = await existing_row(session, name)
        try:
            password = self._box.decrypt(
                row.password_secret, context=secret_context(row.name, PASSWORD[0])
            )
        except DecryptionError as error:
            advice = (
                "add that key after the newest one and restart"
                if isinstance(error, UnknownKeyError)
                else "check the keys"
            )
            raise VaultError(
                f"cannot decrypt the password of distributor {row.name!r}: {error}. Fix: {advice},"
                f" or store the password again with"
                f" `erm-bot distributor add {row.name} --email EMAIL --replace`"
            ) from None
        return DistributorCredentials(
            row.name, row.email, row.client_id, password, SignInMethod(row.sign_in)
        )

    async def names(self) -> list[str]:
        """The distributors' names, sorted."""
        async with self._sessions.begin() as session:
            result = await session.scalars(
                select(DistributorRow.name).order_by(DistributorRow.name)
            )
            return list(result)

    async def list_distributors(self) -> list[DistributorInfo]:
        """Every distributor, sorted by name, without decrypting anything."""
        async with self._sessions.begin() as session:
            rows = await session.scalars(select(DistributorRow).order_by(DistributorRow.name))
            return [
                DistributorInfo(
                    name=row.name,
                    email=row.email,
                    client_id=row.client_id,
                    has_token=row.token_secret is not None,
                    token_expires_at=row.token_expires_at,
                    created_at=row.created_at,
                    sign_in=SignInMethod(row.sign_in),
                )
                for row in rows
            ]

    async def remove_distributor(self, name: str) -> None:
        """Forget a distributor, its credentials and its token."""
        async with self._sessions.begin() as session:
            row = await existing_row(session, name, lock=True)
            await session.delete(row)

    async def save_token(self, name: str, token: StoredToken) -> None:
        """Keep the access token (encrypted) and the client id learned at sign-in."""
        client_id = valid_client_id(token.client_id)
        if not token.access_token:
            raise InvalidInputError("the access token must not be empty")
        if token.expires_at is not None and token.expires_at.utcoffset() is None:
            raise ValueError("the token's expires_at must be timezone-aware")
        async with self._sessions.begin() as session:
            row = await existing_row(session, name, lock=True)
            row.client_id = client_id
            row.token_secret = self._box.encrypt(
                token.access_token, context=secret_context(row.name, TOKEN[0])
            )
            row.token_expires_at = token.expires_at
            row.updated_at = datetime.now(UTC)

    async def load_token(self, name: str) -> StoredToken | None:
        """The stored access token, or None if there is none or it does not decrypt.

        The token is only a cache of a sign-in: one encrypted under a key this process does not
        hold (another replica still on the old keys saved it during a rotation, or its key was
        dropped) is a cache miss, and the caller signs in again and saves a fresh one.
        """
        async with self._sessions.begin() as session:
            row = await existing_row(session, name)
        if row.token_secret is None:
            return None
        if row.client_id is None:  # ruled out by a CHECK constraint; narrows the type
            raise VaultError(f"the stored token of distributor {row.name!r} has no client id")
        try:
            access_token = self._box.decrypt(
                row.token_secret, context=secret_context(row.name, TOKEN[0])
            )
        except DecryptionError as error:
            log.warning(
                "stored ERM token of distributor %s does not decrypt (%s); signing in again",
                row.name,
                error,
            )
            return None
        return StoredToken(row.client_id, access_token, row.token_expires_at)

    async def clear_token(self, name: str) -> None:
        """Forget the stored access token (the client id stays)."""
        async with self._sessions.begin() as session:
            row = await existing_row(session, name, lock=True)
            if row.token_secret is not None or row.token_expires_at is not None:
                row.token_secret = None
                row.token_expires_at = None
                row.updated_at = datetime.now(UTC)

    async def rotate(self) -> int:
        """Re-encrypt under the newest key every value still under an older one.

        One transaction per distributor, so an interruption loses nothing and a rerun finishes
        the job. A distributor whose values cannot be decrypted is left exactly as it was; the
        others are still rotated, then :class:`VaultError` names what was left behind.
        Returns how many values were re-encrypted.
        """
        rotated = 0
        failures: list[str] = []
        for name in await self.names():
            try:
                rotated += await self._rotate_one(name)
            except VaultError as error:
                failures.append(str(error))
        if failures:
            raise VaultError(
                f"key rotation re-encrypted {rotated} value(s) but could not finish: "
                + "; ".join(failures)
            )
        return rotated

    async def _rotate_one(self, name: str) -> int:
        async with self._sessions.begin() as session:
            row = await find_row(session, name, lock=True)
            if row is None:  # removed since the names were read
                return 0
            password_secret, token_secret = row.password_secret, row.token_secret
            count = 0
            if not self._box.is_current(password_secret):
                password = self._open(row, PASSWORD, password_secret)
                password_secret = self._box.encrypt(
                    password, context=secret_context(name, PASSWORD[0])
                )
                count += 1
            if token_secret is not None and not self._box.is_current(token_secret):
                try:
                    token = self._box.decrypt(token_secret, context=secret_context(name, TOKEN[0]))
                except DecryptionError:
                    # Only a cache (see load_token): dropped, the next use signs in again.
                    row.token_secret = token_secret = None
                    row.token_expires_at = None
                else:
                    token_secret = self._box.encrypt(token, context=secret_context(name, TOKEN[0]))
                    count += 1
            if count:  # only now that everything decrypted: a failure leaves the row untouched
                row.password_secret, row.token_secret = password_secret, token_secret
            return count

    async def check(self) -> list[tuple[str, str | None]]:
        """Per distributor (sorted by name), None if its secrets decrypt, else what is wrong."""
        async with self._sessions.begin() as session:
            rows = list(await session.scalars(select(DistributorRow).order_by(DistributorRow.name)))
        report: list[tuple[str, str | None]] = []
        for row in rows:
            problem: str | None = None
            try:
                self._open(row, PASSWORD, row.password_secret)
                if row.token_secret is not None:
                    self._open(row, TOKEN, row.token_secret)
            except VaultError as error:
                problem = str(error)
            report.append((row.name, problem))
        return report

    def _open(self, row: DistributorRow, column: tuple[str, str], envelope: str) -> str:
        try:
            return self._box.decrypt(envelope, context=secret_context(row.name, column[0]))
        except DecryptionError as error:
            raise VaultError(
                f"cannot decrypt the {column[1]} of distributor {row.name!r}: {error}"
            ) from None


def _exists(name: str) -> InvalidInputError:
    return InvalidInputError(
        f"distributor {name!r} already exists: to change its credentials, run "
        f"`erm-bot distributor add {name} --email EMAIL --replace`"
    )
