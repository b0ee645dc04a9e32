"""The sandbox's refusals, shaped the way production ERM answers them (erm-api.md §8).

Production is NestJS behind ``@nestjs/apollo``, whose exception mapping decides the shapes:

=====================================  ===================================================
refusal                                what the client sees
=====================================  ===================================================
business rule (code limits)            ``Bad Request Exception``, code ``BAD_REQUEST``,
                                       ``originalError.message`` = one reason string
validation (class-validator style:     ``Bad Request Exception``, code ``BAD_REQUEST``,
codeDays range, count increase,        ``originalError.message`` = a list of strings
page size, cursor)
another distributor's data             ``Forbidden resource``, code ``FORBIDDEN``
bad credentials / bad token            ``Invalid Credentials`` / ``Unauthorized``,
                                       code ``UNAUTHENTICATED``
an id that matches nothing (or is      no exception: the resolver answers null and
not 24 hex digits)                     graphql-core reports the non-null field (see
                                       :class:`UnknownIdError`)
=====================================  ===================================================

The reason texts are the sandbox's wording (production's are not public), kept as module constants
so tests and clients can refer to them. graphql-core copies ``SandboxError.extensions`` onto the
GraphQL error, so resolvers can simply raise.
"""

from __future__ import annotations

from typing import Any

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
BAD_REQUEST = "BAD_REQUEST"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"
"""Apollo Server's own code for variables that cannot be coerced (HTTP 400, before execution);
no resolver of the sandbox sends it."""

MSG_UNAUTHORIZED = "Unauthorized"
MSG_INVALID_CREDENTIALS = "Invalid Credentials"
MSG_FORBIDDEN = "Forbidden resource"
MSG_BAD_REQUEST = "Bad Request Exception"

MSG_INTERVAL = "Code generation interval not elapsed"
MSG_CREDIT_STACK = "Maximum credit stack days exceeded for this item"
MSG_DAY_LIMIT = "Day code count limit reached for this item"
MSG_TOTAL_LIMIT = "Total code count limit reached for this item"
MSG_FREE_LIMIT = "Free code limit reached for this item"
MSG_RESET_LIMIT = "Reset code limit reached for this item"


def too_small(name: str, minimum: int) -> str:
    """class-validator's ``@Min`` message."""
    return f"{name} must not be less than {minimum}"


def too_large(name: str, maximum: int) -> str:
    """class-validator's ``@Max`` message."""
    return f"{name} must not be greater than {maximum}"


def not_a_cursor(name: str) -> str:
    return f"{name} must be a valid cursor"


class SandboxError(Exception):
    """A refusal the sandbox answers as a GraphQL error with ``extensions``."""

    def __init__(self, message: str, code: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extensions: dict[str, Any] = {"code": code, **details}


class BadRequestError(SandboxError):
    """NestJS's ``BadRequestException``: the reason travels in ``originalError.message``.

    A business refusal gives one string; a validation refusal a list of strings, as
    class-validator's pipe does.
    """

    def __init__(self, reason: str | list[str]) -> None:
        super().__init__(
            MSG_BAD_REQUEST,
            BAD_REQUEST,
            originalError={"message": reason, "error": "Bad Request", "statusCode": 400},
        )
        self.reason = reason


class UnknownIdError(LookupError):
    """An id that matches nothing. Resolvers turn it into null, so the client gets graphql-core's
    ``Cannot return null for non-nullable field ...``, as production answers (§8)."""
