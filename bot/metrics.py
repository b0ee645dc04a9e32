"""Prometheus metrics of the bot, on one registry that ``GET /metrics`` serves.

Every process keeps its own counts (Prometheus scrapes each replica and sums). Label values come
from small fixed sets (command names, outcomes, code types, configured distributors, ERM operation
names, platform API methods), never from what a user typed, so the number of series stays bounded.

Who records what:

- the dispatcher, where it writes the audit row: :func:`record_command` (commands by name and
  outcome, and codes issued by type and distributor);
- approvals, when a request is decided: ``APPROVAL_LATENCY.labels(decision=...).observe(seconds)``
  (or :func:`observe_approval`), and when a card cannot be posted to its approval chat:
  :func:`count_approval_post_failure`;
- the ERM client, through its observer hook wired in ``adapters.runtime``: :func:`observe_erm_call`;
- the chat adapters when a message cannot be sent: :func:`count_send_failure`,
  and when an inbound body is refused: :func:`count_body_refused`; an adapter when a
  request comes from a workspace it does not serve: :func:`count_foreign_request`;
- the dispatcher, for requests of people without a role (:func:`count_stranger`) and requests
  that wait for their person's turn (``PERSON_WAITS``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from bot.registry import Kind

if TYPE_CHECKING:
    from bot.audit import AuditEntry
    from bot.registry import Command

REGISTRY = CollectorRegistry()
"""The registry ``/metrics`` serves: the metrics below plus process, platform and GC data."""

ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

UNKNOWN_COMMAND = "unknown"
"""The ``command`` label of requests that did not parse to a command (typos, other bots)."""

COMMANDS = Counter(
    "erm_bot_commands",
    "Commands handled, by command name and outcome (ok, denied, invalid, erm_error, error, ...).",
    ["command", "outcome"],
    registry=REGISTRY,
)
CODES_ISSUED = Counter(
    "erm_bot_codes_issued",
    "Codes newly generated in ERM, by code type (days, free, reset) and distributor.",
    ["type", "distributor"],
    registry=REGISTRY,
)
APPROVAL_LATENCY = Histogram(
    "erm_bot_approval_latency_seconds",
    "Time from an approval request to its decision, by decision (approved, denied, expired).",
    ["decision"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400),
    registry=REGISTRY,
)
ERM_CALL_SECONDS = Histogram(
    "erm_bot_erm_call_seconds",
    "Duration of one HTTP call to ERM (each attempt), by GraphQL operation.",
    ["operation"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30),
    registry=REGISTRY,
)
ERM_CALL_ERRORS = Counter(
    "erm_bot_erm_call_errors",
    "ERM calls that failed, by GraphQL operation and error kind (the erm.errors class).",
    ["operation", "error"],
    registry=REGISTRY,
)
SEND_FAILURES = Counter(
    "erm_bot_send_failures",
    "Messages the bot could not send, by platform, API method and reason.",
    ["platform", "method", "reason"],
    registry=REGISTRY,
)
BODIES_REFUSED = Counter(
    "erm_bot_bodies_refused",
    "Inbound HTTP requests refused for their body, by platform and reason (too_large, "
    "bad_length), before the body was read whole.",
    ["platform", "reason"],
    registry=REGISTRY,
)
STRANGER_REQUESTS = Counter(
    "erm_bot_stranger_requests",
    "Requests of people without any role, by how they were kept: audited (the first of the "
    "identity this hour within the hourly audit budget, or one that changed something), "
    "counted (here and in the identity's hourly rate-limit row, no audit row), limited (over "
    "the identity's hourly limit: refused, no audit row).",
    ["kept"],
    registry=REGISTRY,
)
PERSON_WAITS = Counter(
    "erm_bot_person_waits",
    "Requests that waited because the same person already had the most requests running at "
    "once (Limits.per_person).",
    registry=REGISTRY,
)
APPROVAL_POST_FAILURES = Counter(
    "erm_bot_approval_post_failures",
    "Approval cards that could not be posted to their approval chat (each attempt; attempts "
    "back off to one an hour), by platform: above zero, an approval chat is unreachable.",
    ["platform"],
    registry=REGISTRY,
)

FOREIGN_REQUESTS = Counter(
    "erm_bot_foreign_requests",
    "Signed requests refused before any work because they came from a workspace (or org) the "
    "bot does not serve, by platform: above zero, the app is installed somewhere it should not be.",
    ["platform"],
    registry=REGISTRY,
)

_CODE_TYPES = frozenset({"days", "free", "reset"})


def record_command(entry: AuditEntry, command: Command | None) -> None:
    """Count one handled request as its audit row describes it.

    ``command`` is the parsed command (None when the text did not parse, or for a repeated
    delivery answered from storage). A code counts as issued when a code command ended ``ok`` with
    an ERM code and did not merely show a code issued moments before.
    """
    name = command.name if command is not None else UNKNOWN_COMMAND
    COMMANDS.labels(command=name, outcome=entry.outcome).inc()
    if (
        command is not None
        and command.kind is Kind.CODE
        and entry.outcome == "ok"
        and entry.erm_code_event
        and "not generated again" not in entry.detail
    ):
        code_type = command.path[-1]
        if code_type in _CODE_TYPES:
            count_code_issued(code_type, entry.distributor or "")


def count_code_issued(code_type: str, distributor: str) -> None:
    CODES_ISSUED.labels(type=code_type, distributor=distributor).inc()


def observe_approval(seconds: float, decision: str) -> None:
    """An approval request decided ``seconds`` after it was made."""
    APPROVAL_LATENCY.labels(decision=decision).observe(max(0.0, seconds))


def observe_erm_call(operation: str, seconds: float, error: BaseException | None) -> None:
    """The ERM client's observer: one HTTP call to ERM, and how it failed (None: it did not)."""
    ERM_CALL_SECONDS.labels(operation=operation).observe(max(0.0, seconds))
    if error is not None:
        ERM_CALL_ERRORS.labels(operation=operation, error=type(error).__name__).inc()


def count_send_failure(platform: str, method: str, reason: str) -> None:
    """A message to ``platform`` that could not be sent (``reason``: the API's error code)."""
    SEND_FAILURES.labels(platform=platform, method=method, reason=reason[:64]).inc()


def count_body_refused(platform: str, reason: str) -> None:
    """An inbound request refused for its body (too large, or a bad ``Content-Length``)."""
    BODIES_REFUSED.labels(platform=platform, reason=reason).inc()


def count_stranger(kept: str) -> None:
    """A request of someone without any role: ``audited``, ``counted`` or ``limited``."""
    STRANGER_REQUESTS.labels(kept=kept).inc()


def count_approval_post_failure(platform: str) -> None:
    """An approval card not posted to its chat on ``platform`` (the bot was removed, ...)."""
    APPROVAL_POST_FAILURES.labels(platform=platform).inc()


def count_foreign_request(platform: str) -> None:
    """A request from a workspace the bot does not serve, refused before any work."""
    FOREIGN_REQUESTS.labels(platform=platform).inc()


def value(name: str, **labels: str) -> float:
    """The current value of one sample (0 when absent): for tests and the doctor."""
    found = REGISTRY.get_sample_value(name, labels)
    return found if found is not None else 0.0
