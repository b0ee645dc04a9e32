"""Failures of the bot core, sorted by who can fix them.

::

    BotError                     root of the bot's own errors
    └── UserError                the text is safe to show to the chat user as is
        ├── UsageError           wrong arguments: carries the usage line and an example
        ├── UnknownCommandError  no such command: carries a did-you-mean suggestion
        ├── NoAccessError        the user has no grant at all: says how to ask for access
        ├── PermissionDeniedError  names the missing role and who can grant it
        ├── RateLimitedError     says when the user can try again
        ├── BusyError            the same request is still being worked on
        └── ErmRefusedError      ERM refused: why in plain words and what to do next
                                 (built by ``bot.refusals``)

ERM failures keep their own tree (``erm.errors``); the dispatcher turns them into plain words.
Anything else is unexpected: logged with a traceback and shown only as a short incident id.
"""

from __future__ import annotations


class BotError(Exception):
    """Root of the bot core's errors."""


class UserError(BotError):
    """A failure the user can fix or must know about; ``str(error)`` is shown verbatim."""


class UsageError(UserError):
    def __init__(self, problem: str, usage: str | None = None, example: str | None = None) -> None:
        parts = [problem]
        if usage:
            parts.append(f"Usage: {usage}")
        if example:
            parts.append(f"Example: {example}")
        super().__init__("\n".join(parts))
        self.problem = problem
        self.usage = usage
        self.example = example


class UnknownCommandError(UserError):
    pass


class NoAccessError(UserError):
    pass


class PermissionDeniedError(UserError):
    def __init__(self, message: str, *, missing_role: str, distributor: str | None) -> None:
        super().__init__(message)
        self.missing_role = missing_role
        self.distributor = distributor


class RateLimitedError(UserError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BusyError(UserError):
    pass


class ErmRefusedError(UserError):
    """ERM refused the request; the text says why in plain words and what to do next.

    ``kind`` names the rule (see ``bot.refusals.RefusalKind``); ``erm_message`` and ``erm_code``
    keep what ERM said, for the audit trail.
    """

    def __init__(self, message: str, *, kind: str, erm_message: str, erm_code: str | None) -> None:
        super().__init__(message)
        self.kind = kind
        self.erm_message = erm_message
        self.erm_code = erm_code
