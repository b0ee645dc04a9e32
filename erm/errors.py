"""Every failure the ERM layer reports, sorted by who can do something about it.

::

    ErmError                      root: catch this to handle anything from erm/
    ├── ErmUnavailableError       network error, timeout before sending, HTTP 5xx: try again later
    ├── ErmAuthError              UNAUTHENTICATED / HTTP 401 / bad distributor credentials
    ├── ErmRejectedError          ERM refused the request (BAD_REQUEST with its reason, FORBIDDEN,
    │   │                         ...); ``erm_message`` keeps the reason, ``erm_code`` the code
    │   └── ErmNotFoundError      an id matched nothing: ERM's non-nullable root field came back
    │                             null ("Cannot return null for non-nullable field ...")
    ├── ErmSchemaError            ERM could not validate the client's document: the client and this
    │                             ERM disagree about the schema (``erm-bot doctor --erm`` names how)
    ├── UncertainOutcomeError     a code mutation was sent and no answer came back: ERM may or may
    │                             not have created the code, so it must be reconciled, never retried
    ├── InvalidInputError         the caller's input is wrong before anything is sent (days out of
    │   │                         range, an item id that cannot be one); nothing was changed
    │   └── ItemNotFoundError     no item of the distributor matches what was typed
    ├── UnknownDistributorError   no distributor of that name is configured
    └── VaultError                a stored secret cannot be decrypted (missing key, wrong key,
                                  tampered ciphertext); names the distributor, never the secret

Messages are written to be safe to show: they never contain a password, a token or a key.
"""

from __future__ import annotations


class ErmError(Exception):
    """Root of the ERM layer's errors."""


class ErmUnavailableError(ErmError):
    """ERM could not be reached or answered with a server error; nothing is known to be changed."""


class ErmAuthError(ErmError):
    """ERM did not accept the distributor's credentials or access token."""

    def __init__(self, message: str, erm_message: str | None = None) -> None:
        super().__init__(message)
        self.erm_message = erm_message or message


class ErmRejectedError(ErmError):
    """ERM understood the request and refused it; its own message is kept."""

    def __init__(self, erm_message: str, erm_code: str | None = None) -> None:
        super().__init__(erm_message)
        self.erm_message = erm_message
        self.erm_code = erm_code


class ErmNotFoundError(ErmRejectedError):
    """What was asked for does not exist for this caller (ERM answers a null root field)."""


class ErmSchemaError(ErmError):
    """ERM refused the document itself (GraphQL validation): nothing ran, nothing changed."""

    def __init__(self, operation: str, erm_message: str) -> None:
        super().__init__(f"ERM cannot run {operation} as erm-bot wrote it: {erm_message}")
        self.operation = operation
        self.erm_message = erm_message


class UncertainOutcomeError(ErmError):
    """A code mutation may or may not have been applied by ERM."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"no answer from ERM to {operation} ({reason}); the code may exist")
        self.operation = operation
        self.reason = reason


class InvalidInputError(ErmError):
    """The request was refused before reaching ERM because an argument is invalid."""


class ItemNotFoundError(InvalidInputError):
    """What was typed matches none of the distributor's items."""


class UnknownDistributorError(ErmError):
    """No distributor is configured under the given name."""


class VaultError(ErmError):
    """A stored credential or token could not be decrypted or is missing."""
