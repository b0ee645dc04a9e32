"""Code generation: stand-in ACP1 codes and real OpenPAYGO tokens.

ACP-1 is unpublished, so ACP1 items get the deliberately fake recipe of erm-api.md §5: an HMAC over
the item, its code counter, the code type and the days. The result has the real shape (21 decimal
digits, 16 hex digits), is deterministic for a given server secret and differs on every call.
OPENTOKEN items get genuine OpenPAYGO Token codes from the ``openpaygo`` package, so a test (or a
real OpenPAYGO device simulator) can decode them with the item's batch key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import openpaygo
from openpaygo import TokenType

from erm.sandbox.model import CodeSystem, CodeType, Item

OPENPAYGO_STANDARD_MAX_DAYS = 995
"""Above this an OpenPAYGO token must use the 12-digit extended format."""
FREE_CODE_JUMP = 1096
"""How far a free code moves the hash chain; migrated free events also carry it as codeDays."""
RESET_CODE_JUMP = 2192
"""How far a reset code moves the hash chain; migrated reset events also carry it as codeDays."""


@dataclass(frozen=True, slots=True)
class GeneratedCode:
    """What a code mutation answers, plus the generator state to store if it is accepted."""

    code_type: CodeType
    code_hex: str
    code_dec: str
    token_count: int
    """The item's OpenPAYGO counter after this token (unchanged for ACP1)."""


def generate_code(
    item: Item, code_type: CodeType, days: int, server_secret: bytes
) -> GeneratedCode:
    """Compute the next code for ``item`` without changing it (the caller commits on success)."""
    if item.code_system is CodeSystem.OPENTOKEN:
        return _openpaygo_code(item, code_type, days)
    return _acp1_code(item, code_type, days, server_secret)


def _acp1_code(item: Item, code_type: CodeType, days: int, server_secret: bytes) -> GeneratedCode:
    count = item.code_generator.code_count
    message = f"{item.id}|{count}|{code_type.value}|{days}".encode()
    digest = hmac.new(server_secret, message, hashlib.sha256).digest()
    code_hex = digest[:8].hex().upper()
    code_dec = f"{int.from_bytes(digest[:9], 'big') % 10**21:021d}"
    return GeneratedCode(code_type, code_hex, code_dec, item.code_generator.token_count)


def _openpaygo_code(item: Item, code_type: CodeType, days: int) -> GeneratedCode:
    batch = item.item_batch
    if batch.secret_key is None or batch.starting_code is None:
        raise ValueError(f"OPENTOKEN item {item.id} has no OpenPAYGO key")
    count = item.code_generator.token_count
    common = {
        "secret_key": batch.secret_key,
        "count": count,
        "starting_code": int(batch.starting_code),
    }
    if code_type is CodeType.DAYSCODE:
        new_count, token = openpaygo.generate_token(
            **common,
            value=days,
            token_type=TokenType.ADD_TIME,
            extended_token=days > OPENPAYGO_STANDARD_MAX_DAYS,
        )
    elif code_type is CodeType.FREECODE:
        new_count, token = openpaygo.generate_token(**common, token_type=TokenType.DISABLE_PAYG)
    elif code_type is CodeType.RESETCODE:
        new_count, token = openpaygo.generate_token(
            **common, value=0, token_type=TokenType.SET_TIME
        )
    else:
        raise ValueError(f"the sandbox does not issue {code_type.value} codes")
    return GeneratedCode(code_type, f"{int(token):X}", str(token), int(new_count))


def hash_jump(code_type: CodeType, days: int) -> int:
    """How far a code moves ``hashIndex`` (erm-api.md §8: by the days, or the ACP jumps)."""
    if code_type is CodeType.FREECODE:
        return FREE_CODE_JUMP
    if code_type is CodeType.RESETCODE:
        return RESET_CODE_JUMP
    return days


def decorate(code_dec: str) -> str:
    """``042799...`` as the keypad form ``*042 799 ... 763#`` that migrated history stores."""
    groups = [code_dec[i : i + 3] for i in range(0, len(code_dec), 3)]
    return f"*{' '.join(groups)}#"


def next_hash_top(hash_top: str, code_hex: str) -> str:
    """Advance the stand-in hash chain; only its shape matters (erm-api.md §5)."""
    return hashlib.sha256(f"{hash_top}|{code_hex}".encode()).hexdigest()
