"""WhatsApp's own metric: the delivery statuses Meta reports for the messages the bot sent.

Send failures at the time of sending go to the shared ``erm_bot_send_failures``; this counts what
Meta says afterwards (``sent``, ``delivered``, ``read``, ``failed`` with its error code), so a
dashboard sees messages that were accepted but never arrived. Label values come from fixed sets.
"""

from __future__ import annotations

from prometheus_client import Counter

from adapters.whatsapp.outbound import REASONS
from bot.metrics import REGISTRY

STATUSES = frozenset({"sent", "delivered", "read", "failed", "deleted"})

DELIVERY_STATUSES = Counter(
    "erm_bot_whatsapp_statuses",
    "Delivery statuses WhatsApp reported for messages the bot sent, by status and, for failed "
    "ones, reason (outside_window, pair_rate, undeliverable, ..., graph_error).",
    ["status", "reason"],
    registry=REGISTRY,
)


def count_status(status: str, error_codes: tuple[int, ...]) -> None:
    shown = status if status in STATUSES else "other"
    reason = ""
    if shown == "failed":
        reason = REASONS.get(error_codes[0], "graph_error") if error_codes else "unknown"
    DELIVERY_STATUSES.labels(status=shown, reason=reason).inc()
