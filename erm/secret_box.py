"""The cipher of every stored secret: AES-256-GCM under a list of keys, newest first.

A stored secret is a text envelope ``v1.<key id>.<base64url(nonce | ciphertext | tag)>``:

- the key id is the first 8 hex digits of SHA-256 of the key, so decryption picks the right key
  and rotation can tell which values still use an old one;
- every encryption draws a fresh random 96-bit nonce;
- the associated data ``<context>|<key id>`` binds the value to where it is kept (the vault's
  context is ``erm_distributors|<name>|<column>``): copied anywhere else, it no longer decrypts.

Keys come from ``ERM_BOT_SECRET_KEYS`` (read by the settings, not here), newest first, once when a
process starts: a running process never sees a key change. Re-encrypting what is stored under an
old key is the stores' work (:meth:`erm.vault.TokenVault.rotate`); the box only says which key an
envelope uses.

:meth:`SecretBox.fingerprint` is a keyed hash for values that must be recognisable but not
recoverable (unlock codes in the audit trail).

Nothing here puts a plaintext or a key into a message or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "FINGERPRINT_PREFIX",
    "DecryptionError",
    "SecretBox",
    "SecretKeyError",
    "UnknownKeyError",
    "code_tail",
]

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


class SecretKeyError(ValueError):
    """The configured keys cannot be used (none, malformed, repeated). Never shows a key."""


class DecryptionError(Exception):
    """An envelope cannot be decrypted. Internal: the vault reports it as VaultError."""


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
