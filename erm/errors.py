"""Every failure the ERM layer reports, sorted by who can do something about it.

::

    ErmError                      root: catch this to handle anything from erm/
    ├── ErmUnavailableError       network error, timeout before sending, HTTP 5xx: try again later
    ├── ErmAuthError              UNAUTHENTICATED / HTTP 401 / bad distributor credentials
    ├── ErmRejectedError          ERM refused the request (FORBIDDEN, BAD_USER_INPUT, quota, ...);
    │                             ``erm_message`` and ``erm_code`` keep what ERM said
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
