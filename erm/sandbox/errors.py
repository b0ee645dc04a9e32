"""The sandbox's refusals: one exception carrying an Apollo ``extensions.code``, and every text.

ERM's real messages for most refusals are not public (erm-api.md §7.1); the texts below are the
stand-in's choice, kept as module constants so tests and clients can refer to them and a later
finding about the real wording changes one line. graphql-core copies ``SandboxError.extensions``
onto the GraphQL error, so resolvers can simply raise.
"""

from __future__ import annotations

from typing import Any

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
NOT_FOUND = "NOT_FOUND"
BAD_USER_INPUT = "BAD_USER_INPUT"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_REQUEST = "BAD_REQUEST"

MSG_UNAUTHORIZED = "Unauthorized"
MSG_INVALID_CREDENTIALS = "Invalid Credentials"
MSG_FORBIDDEN = "Forbidden resource"
MSG_INVALID_ID = "Invalid id"
MSG_ITEM_NOT_FOUND = "Item not found"
MSG_ITEM_FORBIDDEN = "Item is not assigned to this distributor"
MSG_FLEET_NOT_FOUND = "Item fleet not found"
MSG_FLEET_FORBIDDEN = "Item fleet is not assigned to this distributor"
MSG_ACCOUNT_NOT_FOUND = "Asset account not found"
MSG_ACCOUNT_FORBIDDEN = "Asset account is not assigned to this distributor"
MSG_DAYS_RANGE = "codeDays must be between 1 and 1095"
MSG_FREE_LIMIT = "Free code limit reached for this item"
MSG_RESET_LIMIT = "Reset code limit reached for this item"
MSG_INTERVAL = "Code generation interval not elapsed"
MSG_CREDIT_STACK = "Maximum credit stack days exceeded for this item"
MSG_DAY_LIMIT = "Daily code limit reached for this item"
MSG_TOTAL_LIMIT = "Total code limit reached for this item"
MSG_COUNT_INCREASE = "Count increase must be a positive integer"


class SandboxError(Exception):
    """A refusal the sandbox answers as a GraphQL error with ``extensions.code``."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extensions: dict[str, Any] = {"code": code}
