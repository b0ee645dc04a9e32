"""The core every command runs in: :class:`Core` (the stores, ERM, the ports), :class:`Context`
(one running command) and :class:`Limits` (abuse limits).

The approval flow is seen through the :class:`Approvals` protocol: :mod:`bot.approvals` depends on
this module, never the other way round.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Connection

from bot.audit import AuditLog
from bot.background import Background
from bot.errors import RateLimitedError, UsageError
from bot.intents import IntentStore
from bot.messages import Reply, Request
from bot.people import PeopleStore
from bot.permissions import Access, Permissions
from bot.ports import Notifier, Runner
from bot.registry import Command
from bot.storage.approval_tables import Policy
from bot.storage.approvals import ApprovalStore
from bot.storage.buttons import ButtonStore
from bot.storage.codes import CodeStore
from bot.storage.grants import GrantStore
from bot.storage.held import HeldStore
from bot.storage.invites import InviteStore
from bot.storage.limits import RateDecision, RateLimiter
from bot.storage.requests import RequestStore
from erm.models import CodeType, Item
from erm.service import ErmService


class Approvals(Protocol):
    """What the core and the code commands ask of the approval flow (:mod:`bot.approvals`)."""

    store: ApprovalStore

    def attach(self, core: Core) -> None:
        """Called by the :class:`Core` holding the flow as it is made (see Core.__post_init__)."""

    async def gate(
        self, ctx: Context, code_type: CodeType, item: Item, days: int | None, note: str | None
    ) -> Reply | None:
        """None: issue the code now. A reply: the request went to approval (or was refused)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Abuse limits; kept in the database so they hold across processes."""

    duplicate_window_minutes: int = 10
    codes_per_user_hour: int = 30
    codes_per_distributor_hour: int = 500
    lookups_per_user_minute: int = 60
    stale_minutes: int = 10  # code commands sent longer ago than this ask for confirmation
    invite_hours: int = 24
    approval_hours: int = 24  # a pending approval request expires after this (reminder at half)
    # Requests and button presses worked on at once; more wait their turn (see Dispatcher).
    concurrency: int = 16
    # ...of them at most this many from one person, so one person's burst cannot take every turn.
    per_person: int = 3
    # People without any role: requests an hour per identity, and audit rows an hour for all of
    # them together (see bot.strangers).
    stranger_requests_per_hour: int = 20
    stranger_audits_per_hour: int = 100
    # /start with an invite code, per identity: guessing codes is slow.
    invite_attempts_per_user_hour: int = 5


@dataclass(slots=True)
class Core:
    """Everything a command may use."""

    erm: ErmService
    grants: GrantStore
    codes: CodeStore
    requests: RequestStore
    rate: RateLimiter
    audit: AuditLog
    permissions: Permissions
    commands: tuple[Command, ...]
    buttons: ButtonStore
    invites: InviteStore
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # platform -> invite link template with "{code}" (a deep link into the app); adapters set it.
    deep_links: dict[str, str] = field(default_factory=dict)
    # Approval requests (None: no approval flow; free and reset codes are then supervisors' only).
    approvals: Approvals | None = None
    # platform -> how to post cards and private messages there; each adapter sets its own at start.
    notifiers: dict[str, Notifier] = field(default_factory=dict)
    # Messages the bot started that a platform refused until the user writes again (None: such
    # a message is not kept; the platform's notifier reports it not sent).
    held: HeldStore | None = None
    # Work that outlives a request (settling a code whose answer was lost).
    background: Background = field(default_factory=Background)
    # Code requests in flight, on the codes' database (see bot.intents).
    intents: IntentStore = field(init=False)

    def __post_init__(self) -> None:
        self.intents = IntentStore(self.codes.engine)
        if self.approvals is not None:
            self.approvals.attach(self)  # whole from here on: no second step anywhere else

    @property
    def people(self) -> PeopleStore:
        """Who is linked to whom (one person, several chat identities: see bot.people)."""
        return self.permissions.people


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Finishing work that could not be done: a line for the reply and words for the audit."""

    note: str
    detail: str


@dataclass(frozen=True, slots=True)
class Finishing:
    """Database work a command leaves for the transaction that stores its reply and audit row
    (one commit for all: a code's record), with what to do when that transaction fails."""

    within: Callable[[Connection], object]
    # Runs on its own instead, before the reply is stored step by step.
    alone: Callable[[], Awaitable[Shortfall | None]]


@dataclass(slots=True)
class Context:
    """One running command: who, for which distributor, with which flags."""

    core: Core
    request: Request
    command: Command
    access: Access
    flags: dict[str, str | bool]
    # Set by the dispatcher: why a code command over a quota goes to approval instead of refused.
    over_quota: str | None = None
    # Set by the dispatcher for code commands: the distributor's approval policy, read with the
    # rate limits (one transaction fewer).
    policy: Policy | None = None
    # Filled in by commands for the audit row.
    item_id: str | None = None
    erm_code: str | None = None
    detail: str = ""
    approval_id: str | None = None
    # How the request ended, when it returned a reply: "pending" when its outcome comes later.
    outcome: str = "ok"
    # Set by commands that changed something (a redeemed invite): audited even for a stranger.
    audit_always: bool = False
    # The key of the requester's person (bot.people): their own key unless linked to others.
    person: str = ""
    # How to run another request as if it had just arrived: the dispatcher (an approval run).
    run: Runner = field(kw_only=True)
    # Work for the dispatcher's last transaction, which runs whatever the command's outcome.
    finishing: list[Finishing] = field(default_factory=list, kw_only=True)

    def __post_init__(self) -> None:
        self.person = self.person or self.request.identity.key

    @property
    def distributor(self) -> str:
        if self.access.distributor is None:
            raise UsageError(f"/{self.command.name} needs a distributor: add --dist NAME.")
        return self.access.distributor

    @property
    def dist_option(self) -> str:
        """`` --dist NAME`` for a command this reply offers (a button, a hint to type), when the
        distributor is not the only one the person has: a default changed with /use before the
        button is pressed must not send the command to another distributor."""
        if "dist" in self.flags or len(self.access.roles) > 1:
            return f" --dist {self.distributor}"
        return ""

    @property
    def erm(self) -> ErmService:
        return self.core.erm

    def now(self) -> datetime:
        return self.core.clock()

    async def charge_lookups(self, calls: int) -> None:
        """Count ``calls`` more ERM calls against the person's lookup quota, all or none: for a
        command that makes several (walking ERM's pages to ``--page N``); the dispatcher counted
        one already. Raises ``RateLimitedError`` when they do not fit."""
        core, key = self.core, self.person
        if calls < 1 or self.request.approval_id is not None:
            return
        limit, now = core.limits.lookups_per_user_minute, core.clock()

        def work(connection: Connection) -> None:
            for _ in range(calls):
                decision = core.rate.hit.within(connection, "lookups:user", key, limit, 60, now)
                if not decision.allowed:
                    raise _OverQuotaError(decision)  # rolls back the hits counted before it

        try:
            await core.rate.transaction(work)
        except _OverQuotaError as over:
            raise slow_down("you", limit, "lookups", 60, over.decision.retry_after) from None


class _OverQuotaError(Exception):
    def __init__(self, decision: RateDecision) -> None:
        super().__init__("over quota")
        self.decision = decision


def slow_down(who: str, limit: int, what: str, window: int, retry_after: float) -> RateLimitedError:
    """The refusal of a request over a quota: who reached what, and when to try again."""
    wait = max(1, round(retry_after))
    when = f"{wait} s" if wait < 120 else f"{round(wait / 60)} min"
    per = "hour" if window == 3600 else "minute"
    return RateLimitedError(
        f"Slow down: {who} reached {limit} {what} per {per}. Try again in {when}.", retry_after
    )
