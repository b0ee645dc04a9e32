"""Requests of strangers (people without any role): rate-limited, and sampled into the audit log.

Anyone who can message the bot is a stranger until granted a role, and the audit log cannot be
trimmed (its rows are chained). So a stranger's requests are kept like this:

- each identity may send ``per_hour`` requests an hour (``Limits.stranger_requests_per_hour``);
  beyond that it is told when to come back and nothing else is done (not audited);
- of those let in, only the first of the hour is audited, and only while the hour's audit budget
  for all strangers (``Limits.stranger_audits_per_hour``) lasts; every other one is counted in
  the identity's hourly rate-limit row (a counter updated in place) and in the
  ``erm_bot_stranger_requests`` metric, not in the audit log;
- a request that changed something (a redeemed invite) is always audited
  (``Context.audit_always``).

So per hour the audit log gains at most ``stranger_audits_per_hour`` rows from strangers' refusals,
however many strangers write and however often.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from bot import metrics
from bot.errors import RateLimitedError
from bot.storage.limits import RateDecision, RateLimiter

SCOPE = "strangers:user"
AUDIT_SCOPE = "strangers:audit"
AUDIT_KEY = "all"
HOUR = 3600


@dataclass(frozen=True, slots=True)
class Stranger:
    """What the first transaction counted for one request of a stranger."""

    decision: RateDecision  # the identity's requests this hour
    audited: bool  # first of the identity this hour, within the hourly audit budget


def count_in(
    connection: Connection,
    rate: RateLimiter,
    identity: str,
    *,
    per_hour: int,
    audits_per_hour: int,
    now: datetime,
) -> Stranger:
    """Count a stranger's request (and, for its first this hour, the audit budget)."""
    decision = rate.hit.within(connection, SCOPE, identity, per_hour, HOUR, now)
    audited = False
    if decision.allowed and decision.count == 1:
        budget = rate.hit.within(connection, AUDIT_SCOPE, AUDIT_KEY, audits_per_hour, HOUR, now)
        audited = budget.allowed
    return Stranger(decision, audited)


def limited(stranger: Stranger, limit: int) -> RateLimitedError:
    """The refusal of a stranger over the hourly limit, saying when and what to do next."""
    wait = max(1, round(stranger.decision.retry_after / 60))
    return RateLimitedError(
        f"Slow down: erm-bot answers people without access {limit} times an hour.\n"
        f"Try again in {wait} min with the invite from your distributor's erm-bot admin: "
        "/start CODE",
        stranger.decision.retry_after,
    )


def keep(stranger: Stranger, *, changed: bool) -> bool:
    """Whether this stranger's request gets an audit row; counts it either way."""
    if not stranger.decision.allowed:
        metrics.count_stranger("limited")
        return False
    if stranger.audited or changed:
        metrics.count_stranger("audited")
        return True
    metrics.count_stranger("counted")
    return False
