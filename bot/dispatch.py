"""Dispatcher: request key -> parse -> authorize -> limit -> run -> audit -> Reply.

Every request gets a reply and an audit row; a request key seen before returns the stored reply
and runs nothing. Failures are answered by the one error policy of :mod:`bot.replies`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection

from bot import metrics, replies, strangers
from bot.approvals.actions import APPROVAL_ACTIONS
from bot.audit import AuditEntry
from bot.buttons import CORE_ACTIONS, ButtonActions, Press
from bot.core import Context, Core, Finishing, slow_down
from bot.errors import BusyError
from bot.fairness import Turns
from bot.messages import Action, Button, Click, Pressed, Reply, Request, Style, Tone
from bot.missing_items import explain_missing
from bot.parse import Parsed, parse
from bot.permissions import Access
from bot.registry import Command, Kind
from bot.replies import STORAGE_DOWN, STORAGE_ERRORS
from bot.storage.approval_tables import Policy
from bot.storage.grants import KnownUser
from bot.storage.limits import RateDecision
from bot.storage.requests import Claim, ClaimStatus
from erm import db
from erm.errors import ItemNotFoundError

log = logging.getLogger(__name__)


def fingerprint(request: Request) -> str:
    """What makes two deliveries "the same request": the sender and the exact text."""
    raw = f"{request.identity.key}\n{request.text.strip()}".encode()
    return hashlib.sha256(raw).hexdigest()


# Rate-limit decisions (scope, key, limit, window, decision), and the approval policy.
_Counted = tuple[tuple[tuple[str, str, int, int, RateDecision], ...], Policy | None]


@dataclass(frozen=True, slots=True)
class _Start:
    """What the first transaction of a request found (see :meth:`Dispatcher._start`)."""

    claim: Claim
    known: KnownUser | None = None
    access: Access | None = None  # the grants allow the command outright
    counted: _Counted | None = None  # ...and its quotas were counted with them
    stranger: strangers.Stranger | None = None  # a person without any role: counted
    person: str | None = None  # the requester's person (bot.people), read with the grants


BUTTON_TTL = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class Answer:
    """A request's reply, and whether this delivery ran it (see :meth:`Dispatcher.answer`)."""

    reply: Reply
    # False: its request key was claimed before (a redelivery); nothing ran, and ``reply`` is the
    # stored reply or a "still working" notice. Whoever claimed it first sends the real answer.
    first: bool = True


class Dispatcher:
    """Runs requests and button presses.

    :meth:`handle` and :meth:`press` admit ``Limits.concurrency`` requests at a time and queue
    the rest (their acks went out before): one event loop shared by every command of a burst
    gets through fewer of them per second (httpx's connection pool, for one, does work for every
    request waiting in it). One person holds at most ``Limits.per_person`` of those turns; the
    rest of their requests wait behind their own (:class:`bot.fairness.Turns`). What runs inside
    an admitted request (a button's command, an approved request) is not admitted again.

    A request's database work is grouped into few transactions (each costs more than its
    statements): the claim with the user's grants and, when they allow the command outright,
    its rate limits and approval policy; at the end the buttons, the stored reply and the audit
    row. The command's own steps come in between.
    """

    def __init__(self, core: Core) -> None:
        self.core = core
        self._engine = core.requests.engine
        self._turns = Turns(core.limits.concurrency, core.limits.per_person)
        if any(
            store.engine is not self._engine
            for store in (core.grants, core.rate, core.audit, core.buttons)
        ):
            raise ValueError("the dispatcher's stores must share one database engine")
        self.button_actions = ButtonActions(CORE_ACTIONS, APPROVAL_ACTIONS)

    @property
    def commands(self) -> Sequence[Command]:
        return self.core.commands

    async def handle(self, request: Request) -> Reply:
        """Run a request (once per request key) and return its reply; waits for a turn."""
        return (await self.answer(request)).reply

    async def answer(self, request: Request) -> Answer:
        """:meth:`handle`, saying whether this delivery ran the request: a platform that
        redelivers (and answers with messages of its own, not a response) sends a repeat's
        reply once, not again."""
        async with self._turns.turn(request.identity.key):
            return await self._run(request)

    async def run(self, request: Request) -> Reply:
        """:meth:`handle` for work already admitted (a button's command, an approved request,
        the approval sweep): no turn of its own. The :class:`bot.ports.Runner` of the core."""
        return (await self._run(request)).reply

    async def _run(self, request: Request) -> Answer:
        core = self.core
        parsed: Parsed | None = None
        unparsed: Exception | None = None
        try:
            parsed = parse(request.text, core.commands)
        except Exception as exc:  # answered below like any failure, once the key is claimed
            unparsed = exc
        try:
            start = await self._start(request, parsed)
        except STORAGE_ERRORS:
            # Nothing ran and nothing can be recorded: say so plainly (no traceback, no incident).
            log.warning("database unavailable: request not run", exc_info=True)
            return Answer(Reply.error(STORAGE_DOWN))
        if start.claim.status is not ClaimStatus.NEW:
            return Answer(await self._repeat(request, start.claim), first=False)
        person = start.person or request.identity.key
        self._turns.learn(request.identity.key, person)
        ctx: Context | None = None
        stranger = start.stranger
        try:
            if stranger is not None and not stranger.decision.allowed:
                raise strangers.limited(stranger, core.limits.stranger_requests_per_hour)
            if unparsed is not None:
                raise unparsed
            assert parsed is not None
            command = parsed.command
            access, counted = start.access, start.counted
            if access is None:  # not allowed outright: check() decides and says why not
                access = await core.permissions.check(
                    request.identity, command, parsed.distributor, start.known
                )
                allowed = access
                counted = await db.transaction(
                    self._engine, lambda c: self._count_in(c, request, command, allowed, person)
                )
            over_quota, policy = self._judge(command, counted)
            ctx = Context(
                core,
                request,
                command,
                access,
                parsed.flags,
                over_quota,
                policy,
                person=person,
                run=self.run,
            )
            stale = self._stale(request, parsed.command)
            if stale is not None:
                reply, outcome = stale, "stale"
            else:
                reply = await parsed.command.handler(ctx, **parsed.args)
                outcome = ctx.outcome
        except Exception as exc:
            if isinstance(exc, ItemNotFoundError) and ctx is not None and parsed is not None:
                # Where it was looked for, and where it is when another distributor has it.
                exc = await explain_missing(ctx, str(parsed.args.get("item") or ""), exc)
            reply, outcome = replies.failure(log, exc)
        entry = self._audit_entry(request, parsed, ctx, outcome, reply)
        metrics.record_command(entry, parsed.command if parsed else None)
        # A stranger's refusals are sampled, not all audited: the log cannot be trimmed.
        audited = stranger is None or strangers.keep(
            stranger, changed=ctx is not None and ctx.audit_always
        )
        # Whatever the command's outcome: a code it made is recorded here (see codes._deliver).
        finishing = tuple(ctx.finishing) if ctx is not None else ()
        try:
            return Answer(
                await db.transaction(
                    self._engine,
                    lambda c: self._finish_in(c, request, reply, entry, audited, finishing),
                )
            )
        except Exception:
            log.warning("reply and audit row not stored together; trying one by one", exc_info=True)
        for work in finishing:
            shortfall = await work.alone()
            if shortfall is not None:
                reply = replace(reply, notes=(*reply.notes, shortfall.note))
                entry = replace(entry, detail=f"{entry.detail} ({shortfall.detail})")
        return Answer(await self._finish_step_by_step(request, reply, entry, audited))

    async def _start(self, request: Request, parsed: Parsed | None) -> _Start:
        """Claim the request key and, for a new request, read the user's grants with it; when
        they allow the command outright, count its rate limits in the same transaction."""
        core = self.core
        key, print_, identity = request.request_key, fingerprint(request), request.identity
        now = core.clock()

        def work(connection: Connection) -> _Start | None:
            claim = core.requests.claim_in(connection, key, print_, now)
            if claim is None:
                return None
            if claim.status is not ClaimStatus.NEW:
                return _Start(claim)
            # The grants of the requester's person, and who that person is, in one statement.
            found = core.people.known.within(connection, identity)
            known, person = found.user, found.person
            stranger = None
            if (known is None or not known.roles) and not self._bootstrap(identity.key):
                limits = core.limits
                stranger = strangers.count_in(
                    connection,
                    core.rate,
                    identity.key,
                    per_hour=limits.stranger_requests_per_hour,
                    audits_per_hour=limits.stranger_audits_per_hour,
                    now=now,
                )
                if not stranger.decision.allowed:
                    return _Start(claim, known, stranger=stranger, person=person)
            if parsed is None or known is None:
                return _Start(claim, known, stranger=stranger, person=person)
            command = parsed.command
            access = core.permissions.allowed(identity, command, parsed.distributor, known)
            if access is None:
                return _Start(claim, known, stranger=stranger, person=person)
            counted = self._count_in(connection, request, command, access, person, now)
            return _Start(claim, known, access, counted, stranger, person)

        # The key can vanish between the claim's two statements on PostgreSQL (see claim_in).
        for _ in range(3):
            start = await db.transaction(self._engine, work)
            if start is not None:
                return start
        raise RuntimeError("the request key kept disappearing while it was being claimed")

    def _bootstrap(self, key: str) -> bool:
        return key in self.core.permissions.bootstrap_admins

    def _finish_in(
        self,
        connection: Connection,
        request: Request,
        reply: Reply,
        entry: AuditEntry,
        audited: bool = True,
        finishing: Sequence[Finishing] = (),
    ) -> Reply:
        """Store what the command left to finish, the buttons, the reply and the audit row: the
        one transaction after the work."""
        core = self.core
        for work in finishing:
            work.within(connection)
        if reply.buttons:
            ids = core.buttons.save.within(
                connection,
                _button_specs(reply),
                owner=request.identity.key,
                now=entry.at,
                ttl=BUTTON_TTL,
            )
            reply = _with_button_ids(reply, ids)
        core.requests.finish.within(connection, request.request_key, reply.to_dict(), entry.at)
        if audited:
            core.audit.append.within(connection, entry)
        return reply

    async def _finish_step_by_step(
        self, request: Request, reply: Reply, entry: AuditEntry, audited: bool = True
    ) -> Reply:
        """The same as :meth:`_finish_in`, each step on its own, so that one failing step (or a
        database that is gone) costs only that step: the reply must reach the user."""
        core = self.core
        if reply.buttons:
            try:
                ids = await core.buttons.save(
                    _button_specs(reply), owner=request.identity.key, now=entry.at, ttl=BUTTON_TTL
                )
            except STORAGE_ERRORS:
                log.warning("buttons not stored: database unavailable", exc_info=True)
                reply = replace(reply, buttons=())
            else:
                reply = _with_button_ids(reply, ids)
        try:
            await core.requests.finish(request.request_key, reply.to_dict())
        except STORAGE_ERRORS:
            # The work is done (perhaps a code issued): the reply must still reach the user.
            log.warning(
                "request %.60r not marked done: database unavailable",
                request.request_key,
                exc_info=True,
            )
        if audited:
            await self._append_audit(entry)
        return reply

    def _stale(self, request: Request, command: Command) -> Reply | None:
        """A code command the user sent long ago asks to be confirmed instead of running."""
        if command.kind is not Kind.CODE or request.sent_at is None or request.confirmed:
            return None
        age = self.core.clock() - request.sent_at
        if age <= timedelta(minutes=self.core.limits.stale_minutes):
            return None
        minutes = int(age.total_seconds() // 60)
        ago = f"{minutes} minutes" if minutes < 120 else f"{minutes // 60} hours"
        text = request.text.strip()
        return Reply(
            title=f"You sent this {ago} ago. Issue it now?",
            lines=(text,),
            notes=("Nothing has been issued yet.",),
            buttons=(
                Button("Confirm", Action.CONFIRM, text, Style.PRIMARY),
                Button("Cancel", Action.CANCEL, text, Style.DANGER),
            ),
            tone=Tone.WARNING,
        )

    async def press(self, click: Click) -> Pressed:
        """Run a stored button for whoever pressed it; refusals come back as a ``notice``."""
        async with self._turns.turn(click.identity.key):
            return await self._press(click)

    async def _press(self, click: Click) -> Pressed:
        try:
            stored = await self.core.buttons.get(click.button_id, now=self.core.clock())
            if stored is None:
                return Pressed(notice="This button has expired. Run the command again.")
            action = self.button_actions.get(stored.action)
            if action is None:
                return Pressed(notice="This button no longer works. Run the command again.")
            return await action(Press(self.core, click, stored, self.run))
        except Exception as exc:
            return replies.pressed_failure(log, exc)

    async def _repeat(self, request: Request, claim: Claim) -> Reply:
        if claim.status is ClaimStatus.DONE and claim.reply is not None:
            reply = Reply.from_dict(claim.reply)
            outcome = "duplicate"
        elif claim.status is ClaimStatus.RUNNING:
            # Running elsewhere, or its process died mid-way (a code may exist): never run again.
            busy = BusyError(
                "Still working on this request, or it was interrupted. If no answer comes, "
                "check /resend and /history before sending it again."
            )
            reply = Reply.error(str(busy), tone=Tone.INFO)
            outcome = "busy"
        else:
            reply = Reply.error("This request id was already used for another command.")
            outcome = "invalid"
        entry = self._audit_entry(request, None, None, outcome, reply)
        metrics.record_command(entry, None)
        await self._append_audit(entry)
        return reply

    def _count_in(
        self,
        connection: Connection,
        request: Request,
        command: Command,
        access: Access,
        person: str,
        now: datetime | None = None,
    ) -> _Counted:
        """Count the request against its quotas, each in turn up to the first that refuses; for a
        code command, read the distributor's approval policy too. Per-user quotas count the
        person: all of their linked identities together."""
        if request.approval_id is not None:
            return (), None  # a supervisor approved it, quotas included
        limits, rate, approvals = self.core.limits, self.core.rate, self.core.approvals
        now = now or self.core.clock()
        user = person
        checks: list[tuple[str, str, int, int]] = []
        if command.kind is Kind.CODE:
            checks.append(("codes:user", user, limits.codes_per_user_hour, 3600))
            if access.distributor:
                checks.append(
                    ("codes:dist", access.distributor, limits.codes_per_distributor_hour, 3600)
                )
        elif command.kind is Kind.LOOKUP:
            checks.append(("lookups:user", user, limits.lookups_per_user_minute, 60))
        decisions = []
        for scope, key, limit, window in checks:
            decision = rate.hit.within(connection, scope, key, limit, window, now)
            decisions.append((scope, key, limit, window, decision))
            if not decision.allowed:
                break
        if command.kind is not Kind.CODE or approvals is None or access.distributor is None:
            return tuple(decisions), None
        return tuple(decisions), approvals.store.policy.within(connection, access.distributor)

    def _judge(
        self, command: Command, counted: _Counted | None
    ) -> tuple[str | None, Policy | None]:
        """Refuse a request over a quota; a code command goes to approval instead (returns why),
        with the approval policy read with the counts."""
        decisions, policy = counted or ((), None)
        for scope, key, limit, window, decision in decisions:
            if decision.allowed:
                continue
            if command.kind is Kind.CODE and self.core.approvals:
                per = "hour" if window == 3600 else "minute"
                whose = "the requester's" if scope.endswith(":user") else f"{key}'s"
                return f"over {whose} quota of {limit} codes per {per}", policy
            who = "you" if scope.endswith(":user") else f"distributor {key}"
            raise slow_down(who, limit, scope.split(":")[0], window, decision.retry_after)
        return None, policy

    def _audit_entry(
        self,
        request: Request,
        parsed: Parsed | None,
        ctx: Context | None,
        outcome: str,
        reply: Reply,
    ) -> AuditEntry:
        command = parsed.command.name if parsed else request.text.strip().split(" ", 1)[0][:40]
        arguments = _audit_arguments(parsed) if parsed else ""
        detail = (ctx.detail if ctx and ctx.detail else (reply.title or ""))[:300]
        return AuditEntry(
            at=self.core.clock(),
            platform=request.identity.platform,
            chat_id=request.chat_id,
            user_id=request.identity.user_id,
            user_name=request.identity.name,
            command=command,
            arguments=arguments,
            outcome=outcome,
            detail=detail,
            distributor=ctx.access.distributor if ctx else (parsed.distributor if parsed else None),
            item_id=ctx.item_id if ctx else None,
            erm_code_event=ctx.erm_code if ctx else None,
            approval_id=(ctx.approval_id if ctx else None) or request.approval_id,
            request_key=request.request_key,
        )

    async def _append_audit(self, entry: AuditEntry) -> None:
        try:
            await self.core.audit.append(entry)
        except Exception:
            # The reply (perhaps a code already issued) must still reach the user.
            log.exception("audit append failed", extra={"request_key": entry.request_key})


def _button_specs(reply: Reply) -> list[tuple[str, dict[str, object]]]:
    """What each button of the reply does, to be kept server-side (see :class:`ButtonStore`)."""
    # "private": the card itself went to its owner only, so private answers may replace it
    return [(b.action, {"value": b.value, "private": reply.private_only}) for b in reply.buttons]


def _with_button_ids(reply: Reply, ids: Sequence[str]) -> Reply:
    """The reply with its buttons carrying their stored ids instead of what they do."""
    buttons = tuple(
        replace(b, value=i, typed=b.value if b.action is Action.RUN else b.typed)
        for b, i in zip(reply.buttons, ids, strict=True)
    )
    return replace(reply, buttons=buttons)


def _audit_arguments(parsed: Parsed) -> str:
    parts: list[str] = [f"{k}={v}" for k, v in parsed.audited_args.items() if v is not None]
    parts += [f"--{k}" if v is True else f"--{k}={v}" for k, v in parsed.flags.items()]
    return " ".join(parts)[:500]
