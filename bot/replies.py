"""The one error policy: what a failure becomes for the user, and for the audit row.

User errors are shown verbatim; ERM errors in plain words (none carries a secret); a database
that is gone says nothing ran or what to check; anything else is logged with its traceback and
shown as a short incident id. The dispatcher and every adapter answer failures through here.
"""

from __future__ import annotations

import logging
import secrets

from sqlalchemy.exc import SQLAlchemyError

from bot.errors import (
    BusyError,
    ErmRefusedError,
    NoAccessError,
    PermissionDeniedError,
    RateLimitedError,
    UserError,
)
from bot.messages import Pressed, Reply, Tone
from bot.refusals import SCHEMA_MISMATCH, explain_refusal
from erm.errors import (
    ErmAuthError,
    ErmError,
    ErmRejectedError,
    ErmSchemaError,
    ErmUnavailableError,
    InvalidInputError,
    UncertainOutcomeError,
    UnknownDistributorError,
    VaultError,
)

# What a store call raises when the database is unreachable: SQLAlchemy's errors, or the driver's
# own socket errors (asyncpg's refused connection comes through unwrapped). Only around calls that
# touch nothing but the database: ERM and chat platforms raise OSErrors too.
STORAGE_ERRORS = (SQLAlchemyError, OSError)
STORAGE_DOWN = (
    "erm-bot cannot reach its database right now, so nothing was done. Try again in a minute."
)
STORAGE_LOST = (
    "erm-bot lost its database while working on this. Try again in a minute; "
    "for a code, check /resend and /history first"
)


def incident(log: logging.Logger, what: str) -> str:
    """Log the exception being handled with its traceback under a new short incident id."""
    incident = secrets.token_hex(3)
    log.exception(what, extra={"incident": incident})  # noqa: LOG004 (called in except blocks)
    return incident


def unexpected(log: logging.Logger, what: str) -> Reply:
    """The reply to a failure nobody planned for: the incident id an admin looks up."""
    return Reply.error(
        f"Something went wrong on our side (incident {incident(log, what)}). "
        "An admin can look it up in the logs."
    )


def failure(log: logging.Logger, exc: Exception) -> tuple[Reply, str]:
    """A command's failure as its reply and the audit outcome."""
    if isinstance(exc, UserError):
        return Reply.error(str(exc), tone=Tone.WARNING), outcome_of(exc)
    if isinstance(exc, ErmError):
        return erm_reply(exc), "erm_error"
    if isinstance(exc, SQLAlchemyError):  # not OSError: a command's own network calls raise those
        number = incident(log, "command failed: database unavailable")
        return Reply.error(f"{STORAGE_LOST} (incident {number})"), "error"
    return unexpected(log, "command failed"), "error"


def pressed_failure(log: logging.Logger, exc: Exception) -> Pressed:
    """A button's failure: a refusal is a notice only the presser sees; ERM's is a reply."""
    if isinstance(exc, UserError):
        return Pressed(notice=str(exc))
    if isinstance(exc, ErmError):
        return Pressed(reply=erm_reply(exc))
    return Pressed(
        notice=f"Something went wrong on our side (incident {incident(log, 'button failed')})."
    )


def outcome_of(exc: UserError) -> str:
    if isinstance(exc, PermissionDeniedError | NoAccessError):
        return "denied"
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if isinstance(exc, BusyError):
        return "busy"
    if isinstance(exc, ErmRefusedError):
        return "refused"
    return "invalid"


def erm_reply(exc: ErmError) -> Reply:
    """ERM failures in plain words; none of these messages carries a secret."""
    message: str
    if isinstance(exc, InvalidInputError | UnknownDistributorError):
        return Reply.error(str(exc), tone=Tone.WARNING)
    if isinstance(exc, ErmRejectedError):
        return Reply.error(str(explain_refusal(exc)), tone=Tone.WARNING)
    if isinstance(exc, UncertainOutcomeError):
        message = (
            "ERM did not confirm the code and its history does not show it yet.\n"
            "Do not try again yet: look at /history for the item in a few minutes to see "
            "whether a code was created."
        )
    elif isinstance(exc, ErmSchemaError):
        message = "\n".join(SCHEMA_MISMATCH)
    elif isinstance(exc, ErmAuthError):
        message = (
            "erm-bot could not sign in to ERM for this distributor.\n"
            "An admin must update its credentials (erm-bot distributor add NAME --replace)."
        )
    elif isinstance(exc, VaultError):
        message = f"Stored credentials cannot be used: {exc}"
    elif isinstance(exc, ErmUnavailableError):
        message = f"ERM is not answering right now: {exc}"
    else:
        message = f"ERM error: {exc}"
    return Reply.error(message)
