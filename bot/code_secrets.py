"""Issued codes at rest: sealed under the vault's keys, opened for ``/resend``, rotated with them.

A code not yet typed into its device unlocks it, so a dump or a backup of the database must not
hold it: ``bot_issued_codes.code_secret`` is an :class:`erm.vault.SecretBox` envelope of the
code's decimal and hex forms, under the same keys as ERM tokens (``ERM_BOT_SECRET_KEYS``), bound
to its distributor and item (copied into another row it does not decrypt). ``code_last3`` keeps
the last 3 digits in clear, enough to tell codes apart. Migration ``bot0005`` sealed the codes
older releases stored in plain text, with the same context.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, Table, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from erm import db
from erm.errors import VaultError
from erm.secret_box import DecryptionError, SecretBox

__all__ = [
    "code_context",
    "last3",
    "open_reply",
    "reply_context",
    "rotate_codes",
    "seal",
    "seal_reply",
    "unseal",
]

_TAIL = 3
_BATCH = 500


def code_context(distributor: str, item_id: str) -> str:
    """Associated data of a code's envelope (also used by migration bot0005: keep it stable)."""
    return f"bot_issued_codes|{distributor}|{item_id}|code_secret"


def last3(code_dec: str) -> str:
    """The last 3 digits of a code: what may be shown of it."""
    return "".join(ch for ch in code_dec if ch.isdigit())[-_TAIL:]


def seal(box: SecretBox, distributor: str, item_id: str, code_dec: str, code_hex: str) -> str:
    plaintext = json.dumps({"dec": code_dec, "hex": code_hex})
    return box.encrypt(plaintext, context=code_context(distributor, item_id))


def reply_context(request_key: str) -> str:
    """Associated data of a stored reply's codes (also used by migration bot0005)."""
    return f"bot_requests|{request_key}|reply"


# Said in place of the codes of a stored reply that no configured key opens any more.
SEALED_GONE = "The code is not shown again here: ask /resend with the item id to see it."


def seal_reply(box: SecretBox, request_key: str, reply: dict[str, Any]) -> dict[str, Any]:
    """A reply as it is stored for a repeat of its request: any codes sealed, not in clear.

    The stored reply is what a redelivery is shown for a day; a dump of the table must not show
    a code, so the codes travel as one envelope bound to the request key.
    """
    codes = reply.get("codes")
    if not codes:
        return reply
    sealed = box.encrypt(json.dumps(codes), context=reply_context(request_key))
    return {**reply, "codes": [], "sealed_codes": sealed}


def open_reply(box: SecretBox, request_key: str, stored: dict[str, Any]) -> dict[str, Any]:
    """The reply :func:`seal_reply` stored, codes restored (or, with no key for them, a note)."""
    sealed = stored.pop("sealed_codes", None)
    if sealed is None:
        return stored
    try:
        stored["codes"] = json.loads(box.decrypt(sealed, context=reply_context(request_key)))
    except DecryptionError:
        stored["notes"] = [*stored.get("notes", ()), SEALED_GONE]
    return stored


def unseal(box: SecretBox, row: RowMapping) -> tuple[str, str]:
    """(code_dec, code_hex) of a stored row; :class:`VaultError` naming the row, never the code."""
    try:
        plaintext = box.decrypt(
            row["code_secret"], context=code_context(row["distributor"], row["item_id"])
        )
    except DecryptionError as error:
        raise VaultError(
            f"cannot decrypt issued code {row['id']} (ending {row['code_last3']}): {error}."
            " Add the missing key after the newest one and restart"
        ) from None
    code = json.loads(plaintext)
    return str(code["dec"]), str(code["hex"])


async def rotate_codes(engine: AsyncEngine, table: Table, box: SecretBox) -> int:
    """Re-encrypt under the newest key every issued code still under an older one.

    Batches of short transactions, so an interruption loses nothing and a rerun finishes the
    job; a row changed meanwhile is left for the rerun. A code that cannot be decrypted is left
    as it was, the others are still rotated, then :class:`VaultError` says how many were left
    behind. Returns how many were re-encrypted.
    """
    current = f"v1.{box.current_key_id}.%"
    rotated = failed = after = 0
    while True:
        batch = (
            select(table.c.id, table.c.distributor, table.c.item_id, table.c.code_secret)
            .where(table.c.id > after, table.c.code_secret.not_like(current))
            .order_by(table.c.id)
            .limit(_BATCH)
        )

        def work(connection: Connection, batch: Select[Any] = batch) -> tuple[int, int, int]:
            done = skipped = last = 0
            for row in connection.execute(batch).mappings().all():
                last = row["id"]
                context = code_context(row["distributor"], row["item_id"])
                try:
                    plaintext = box.decrypt(row["code_secret"], context=context)
                except DecryptionError:
                    skipped += 1
                    continue
                connection.execute(
                    update(table)
                    .where(table.c.id == row["id"], table.c.code_secret == row["code_secret"])
                    .values(code_secret=box.encrypt(plaintext, context=context))
                )
                done += 1
            return done, skipped, last

        done, skipped, last = await db.transaction(engine, work)
        rotated, failed = rotated + done, failed + skipped
        if done + skipped < _BATCH:
            break
        after = last
    if failed:
        raise VaultError(
            f"key rotation re-encrypted {rotated} issued code(s) but could not decrypt"
            f" {failed} (encrypted under a key that is not configured, or altered)"
        )
    return rotated
