"""Distributor credentials and ERM access tokens, stored only as AES-256-GCM ciphertext.

A stored secret is a text envelope ``v1.<key id>.<base64url(nonce | ciphertext | tag)>``:

- the key id is the first 8 hex digits of SHA-256 of the key, so decryption picks the right key
  and rotation can tell which values still use an old one;
- every encryption draws a fresh random 96-bit nonce;
- the associated data ``erm_distributors|<name>|<column>|<key id>`` binds the value to its row and
  column: copied into another distributor or column, it no longer decrypts.

Keys come from ``ERM_BOT_SECRET_KEYS`` (read by the settings, not here), newest first, once when a
process starts: a running process never sees a key change. Rotation across a fleet of replicas
(README, "Rotating keys"): 1) put the new key in front of the old one on every replica and restart
them; 2) ``erm-bot keys rotate`` (:meth:`TokenVault.rotate`); 3) drop the old key, restart again.
An access token is only a cache: one that no longer decrypts (a replica still on the old keys
wrote it, or its key was dropped) is treated as absent and the distributor signs in again. A
password that no longer decrypts is an operator error that says which key is missing.

:meth:`SecretBox.fingerprint` is a keyed hash for values that must be recognisable but not
recoverable (unlock codes in the audit trail).

Nothing here puts a password, a token or a key into a message or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import CheckConstraint, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from erm.db import Base, UtcDateTime
from erm.errors import InvalidInputError, UnknownDistributorError, VaultError
from erm.models import SignInMethod

__all__ = [
    "FINGERPRINT_PREFIX",
    "DecryptionError",
    "DistributorCredentials",
    "DistributorInfo",
    "SecretBox",
    "SecretKeyError",
    "StoredToken",
    "TokenVault",
    "UnknownKeyError",
    "code_tail",
]

log = logging.getLogger(__name__)

KEYS_VARIABLE = "ERM_BOT_SECRET_KEYS"
FINGERPRINT_PREFIX = "fp:"

_ENVELOPE_VERSION = "v1"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_ID = re.compile(r"[0-9a-f]{8}")
_FINGERPRINT_INFO = b"erm-bot value fingerprint v1"
_FINGERPRINT_HEX = 16  # 64 bits: recognises a value among billions, reveals nothing without the key
_FINGERPRINT_TAIL = 3
_MIN_TAIL_SOURCE = 6  # a shorter value shows no tail: three characters would be half of it
_FINGERPRINT = re.compile(r"fp:([0-9a-f]{8})\.([0-9a-f]{16})")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_MAX_EMAIL = 254
_MAX_CLIENT_ID = 128
_TABLE = "erm_distributors"


# -- the cipher ---------------------------------------------------------------------------------


class SecretKeyError(ValueError):
    """The configured keys cannot be used (none, malformed, repeated). Never shows a key."""


class DecryptionError(Exception):
    """An envelope cannot be decrypted. Internal: :class:`TokenVault` reports it as VaultError."""


class UnknownKeyError(DecryptionError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"encrypted under key {key_id}, which is not in {KEYS_VARIABLE}")
        self.key_id = key_id


class TamperedError(DecryptionError):
    def __init__(self) -> None:
        super().__init__("the stored value was altered, moved from elsewhere, or the key is wrong")


class MalformedEnvelopeError(DecryptionError):
    def __init__(self) -> None:
        super().__init__("the stored value is not an encrypted value this version can read")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes | None:
    """Strict, canonical, unpadded URL-safe base64; None if ``text`` is not that."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Unused low bits of the last character must be zero, or two texts would mean one value.
    return data if _b64encode(data) == text else None


class SecretBox:
    """AES-256-GCM under a list of keys: encrypts with the first, decrypts with whichever fits."""

    def __init__(self, keys: Sequence[str]) -> None:
        if isinstance(keys, str):
            raise SecretKeyError("give the keys as a list, not as one string")
        if not keys:
            raise SecretKeyError(
                f"no secret key configured: set {KEYS_VARIABLE} to one or more keys"
                " (32 random bytes, URL-safe base64), newest first"
            )
        self._ciphers: dict[str, AESGCM] = {}
        self._fingerprint_keys: dict[str, bytes] = {}
        positions: dict[str, tuple[int, bytes]] = {}
        for position, key in enumerate(keys, start=1):
            raw = _b64decode(key.strip().rstrip("=")) if isinstance(key, str) else None
            if raw is None or len(raw) != _KEY_BYTES:
                raise SecretKeyError(
                    f"key {position} of {len(keys)} in {KEYS_VARIABLE} is not a key:"
                    f" expected {_KEY_BYTES} random bytes in URL-safe base64 (44 characters)"
                )
            key_id = hashlib.sha256(raw).hexdigest()[:8]
            if key_id in positions:
                earlier, earlier_raw = positions[key_id]
                same = earlier_raw == raw
                raise SecretKeyError(
                    f"keys {earlier} and {position} in {KEYS_VARIABLE} "
                    + (f"are the same key (id {key_id})" if same else f"share the id {key_id}")
                    + ("; list each key once" if same else "; generate another new key")
                )
            positions[key_id] = (position, raw)
            self._ciphers[key_id] = AESGCM(raw)
            # A key of its own for fingerprints (HKDF): a hash never uses the encryption key.
            self._fingerprint_keys[key_id] = HKDF(
                algorithm=SHA256(), length=32, salt=None, info=_FINGERPRINT_INFO
            ).derive(raw)
        self._current = next(iter(self._ciphers))

    def __repr__(self) -> str:
        return f"SecretBox(key_ids={list(self._ciphers)!r})"

    @staticmethod
    def generate_key() -> str:
        """A new random key in the form ``ERM_BOT_SECRET_KEYS`` takes."""
        return base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode("ascii")

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the configured keys, newest first."""
        return tuple(self._ciphers)

    @property
    def current_key_id(self) -> str:
        """The id of the key new values are encrypted under."""
        return self._current

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Encrypt under the newest key, bound to ``context`` (which row and column it is for)."""
        try:
            data = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the value to encrypt is not valid Unicode text") from None
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(
            nonce, data, _associated_data(context, self._current)
        )
        return f"{_ENVELOPE_VERSION}.{self._current}.{_b64encode(nonce + sealed)}"

    def decrypt(self, envelope: str, *, context: str) -> str:
        """The plaintext of ``envelope``; raises :class:`DecryptionError` rather than guess."""
        key_id, payload = _parse(envelope)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(key_id)
        nonce, sealed = payload[:_NONCE_BYTES], payload[_NONCE_BYTES:]
        try:
            data = cipher.decrypt(nonce, sealed, _associated_data(context, key_id))
            return data.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise TamperedError() from None

    def knows(self, key_id: str) -> bool:
        """Whether ``key_id`` is one of the configured keys."""
        return key_id in self._ciphers

    def fingerprint(self, value: str) -> str:
        """A keyed hash of ``value`` and its last 3 characters: ``fp:<key id>.<16 hex>·…123``.

        For values that must be recognisable but never usable (an unlock code in the audit
        trail). HMAC-SHA256 under a key derived from the newest key; the key id is kept with it
        because rotation changes the newest key, and a fingerprint is never rewritten (audit rows
        are append-only): :meth:`matches` checks one under whichever configured key made it.
        Spaces, ``*`` and ``#`` are ignored, so a keypad form and its digits give one fingerprint.
        """
        return self._fingerprint(value, self._current)

    def matches(self, value: str, fingerprint: str) -> bool | None:
        """Whether ``fingerprint`` is that of ``value``; None when its key is not configured."""
        found = _FINGERPRINT.match(fingerprint)
        if found is None or found.group(1) not in self._fingerprint_keys:
            return None
        expected = self._fingerprint(value, found.group(1))
        return hmac.compare_digest(expected.encode("utf-8"), fingerprint.encode("utf-8"))

    def _fingerprint(self, value: str, key_id: str) -> str:
        normal = _fingerprint_normal(value)
        mac = hmac.new(self._fingerprint_keys[key_id], normal.encode("utf-8"), hashlib.sha256)
        digest = mac.hexdigest()[:_FINGERPRINT_HEX]
        return f"{FINGERPRINT_PREFIX}{key_id}.{digest}{code_tail(normal)}"

    def key_id(self, envelope: str) -> str:
        """The id of the key ``envelope`` is encrypted under (not checked to be authentic)."""
        return _parse(envelope)[0]

    def is_current(self, envelope: str) -> bool:
        """Whether ``envelope`` is encrypted under the newest key (False if it is unreadable)."""
        try:
            return self.key_id(envelope) == self._current
        except DecryptionError:
            return False


def _fingerprint_normal(value: str) -> str:
    return "".join(ch for ch in value if ch.isalnum()).upper()


def code_tail(value: str) -> str:
    """``·…`` and the last 3 characters of a value (digits of a code), or ``""`` if it is short:
    what may be shown of a code to tell it from another without making it usable."""
    normal = _fingerprint_normal(value)
    if len(normal) < _MIN_TAIL_SOURCE:
        return ""
    return f"·…{normal[-_FINGERPRINT_TAIL:]}"


def _associated_data(context: str, key_id: str) -> bytes:
    return f"{context}|{key_id}".encode()


def _parse(envelope: str) -> tuple[str, bytes]:
    parts = envelope.split(".") if isinstance(envelope, str) else []
    if len(parts) != 3 or parts[0] != _ENVELOPE_VERSION or not _KEY_ID.fullmatch(parts[1]):
        raise MalformedEnvelopeError()
    payload = _b64decode(parts[2])
    if payload is None or len(payload) < _NONCE_BYTES + _TAG_BYTES:
        raise MalformedEnvelopeError()
    return parts[1], payload


# -- values -------------------------------------------------------------------------------------


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


# -- storage ------------------------------------------------------------------------------------


class DistributorRow(Base):
    """A configured distributor; the secrets are envelopes from :class:`SecretBox`."""

    __tablename__ = _TABLE
    __table_args__ = (
        CheckConstraint(
            "token_secret IS NULL OR client_id IS NOT NULL", name="token_has_client_id"
        ),
        CheckConstraint("sign_in IN ('client', 'user')", name="sign_in"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str] = mapped_column(String(_MAX_EMAIL))
    # The ERM id of the distributor (the clientId / distributorId ERM's queries want).
    client_id: Mapped[str | None] = mapped_column(String(_MAX_CLIENT_ID))
    # Which sign-in mutation the credentials take (SignInMethod).
    sign_in: Mapped[str] = mapped_column(
        String(8), default=SignInMethod.CLIENT.value, server_default=SignInMethod.CLIENT.value
    )
    password_secret: Mapped[str] = mapped_column(Text)
    token_secret: Mapped[str | None] = mapped_column(Text)
    token_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


_PASSWORD = ("password_secret", "password")
_TOKEN = ("token_secret", "access token")


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
        name = _valid_name(name)
        email = _valid_email(email)
        if not isinstance(password, str) or not password:
            raise InvalidInputError("the password must not be empty")
        client_id = _valid_client_id(client_id) if client_id is not None else None
        password_secret = self._box.encrypt(password, context=_context(name, _PASSWORD[0]))
        now = datetime.now(UTC)
        try:
            async with self._sessions.begin() as session:
                row = await _row(session, name, lock=True)
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
            row = await _existing_row(session, name)
        try:
            password = self._box.decrypt(
                row.password_secret, context=_context(row.name, _PASSWORD[0])
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
            row = await _existing_row(session, name, lock=True)
            await session.delete(row)

    async def save_token(self, name: str, token: StoredToken) -> None:
        """Keep the access token (encrypted) and the client id learned at sign-in."""
        client_id = _valid_client_id(token.client_id)
        if not token.access_token:
            raise InvalidInputError("the access token must not be empty")
        if token.expires_at is not None and token.expires_at.utcoffset() is None:
            raise ValueError("the token's expires_at must be timezone-aware")
        async with self._sessions.begin() as session:
            row = await _existing_row(session, name, lock=True)
            row.client_id = client_id
            row.token_secret = self._box.encrypt(
                token.access_token, context=_context(row.name, _TOKEN[0])
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
            row = await _existing_row(session, name)
        if row.token_secret is None:
            return None
        if row.client_id is None:  # ruled out by a CHECK constraint; narrows the type
            raise VaultError(f"the stored token of distributor {row.name!r} has no client id")
        try:
            access_token = self._box.decrypt(
                row.token_secret, context=_context(row.name, _TOKEN[0])
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
            row = await _existing_row(session, name, lock=True)
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
            row = await _row(session, name, lock=True)
            if row is None:  # removed since the names were read
                return 0
            password_secret, token_secret = row.password_secret, row.token_secret
            count = 0
            if not self._box.is_current(password_secret):
                password = self._open(row, _PASSWORD, password_secret)
                password_secret = self._box.encrypt(password, context=_context(name, _PASSWORD[0]))
                count += 1
            if token_secret is not None and not self._box.is_current(token_secret):
                try:
                    token = self._box.decrypt(token_secret, context=_context(name, _TOKEN[0]))
                except DecryptionError:
                    # Only a cache (see load_token): dropped, the next use signs in again.
                    row.token_secret = token_secret = None
                    row.token_expires_at = None
                else:
                    token_secret = self._box.encrypt(token, context=_context(name, _TOKEN[0]))
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
                self._open(row, _PASSWORD, row.password_secret)
                if row.token_secret is not None:
                    self._open(row, _TOKEN, row.token_secret)
            except VaultError as error:
                problem = str(error)
            report.append((row.name, problem))
        return report

    def _open(self, row: DistributorRow, column: tuple[str, str], envelope: str) -> str:
        try:
            return self._box.decrypt(envelope, context=_context(row.name, column[0]))
        except DecryptionError as error:
            raise VaultError(
                f"cannot decrypt the {column[1]} of distributor {row.name!r}: {error}"
            ) from None


def _context(name: str, column: str) -> str:
    return f"{_TABLE}|{name}|{column}"


async def _row(session: AsyncSession, name: str, *, lock: bool = False) -> DistributorRow | None:
    statement = select(DistributorRow).where(DistributorRow.name == name)
    if lock:
        statement = statement.with_for_update()  # PostgreSQL; SQLite's BEGIN IMMEDIATE locks
    return await session.scalar(statement)


async def _existing_row(session: AsyncSession, name: str, *, lock: bool = False) -> DistributorRow:
    normalized = name.strip().lower() if isinstance(name, str) else ""
    row = await _row(session, normalized, lock=lock) if _NAME.fullmatch(normalized) else None
    if row is None:
        shown = normalized if len(normalized) <= 40 else normalized[:39] + "…"
        raise UnknownDistributorError(f"no distributor named {shown!r} is configured")
    return row


def _exists(name: str) -> InvalidInputError:
    return InvalidInputError(
        f"distributor {name!r} already exists; replace it to change its credentials"
    )


def _valid_name(name: str) -> str:
    normalized = name.strip().lower() if isinstance(name, str) else ""
    if not _NAME.fullmatch(normalized):
        shown = normalized if len(normalized) <= 40 else normalized[:39] + "…"
        raise InvalidInputError(
            f"{shown!r} cannot be a distributor name: use 1 to 32 characters, a letter first,"
            " then letters, digits, '-' or '_'"
        )
    return normalized


def _valid_email(email: str) -> str:
    email = email.strip() if isinstance(email, str) else ""
    if not email:
        raise InvalidInputError("the email must not be empty")
    if len(email) > _MAX_EMAIL or not _EMAIL.fullmatch(email):
        raise InvalidInputError("the email must look like name@example.org")
    return email


def _valid_client_id(client_id: str) -> str:
    client_id = client_id.strip() if isinstance(client_id, str) else ""
    if not client_id or len(client_id) > _MAX_CLIENT_ID:
        raise InvalidInputError(
            f"the client id must be 1 to {_MAX_CLIENT_ID} characters (the distributor's ERM _id)"
        )
    return client_id
