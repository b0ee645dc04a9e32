"""Crash recovery: code requests whose holder died after the mutation may have been sent.

An open intent (:mod:`bot.intents`) with a free or expired item lock is such a request. Whoever
takes the item's lock next reconciles it against ERM's history before doing anything else: the
next code request for the item (:func:`bot.commands.codes.issue`), or the sweep below, which
runs at start and in every housekeeping round. The outcome is recorded as a live request would
have recorded it (the code in the issued codes, so ``/resend`` shows it; an audit row), and the
requester is told privately. A request run for an approval gets its approval's result recorded
too, before its intent closes: the approval sweep leaves a run whose intent is open to this
recovery, so the requester is told once, here.

A verdict is recorded only once it is final: the code was found, or the whole reconcile window
has passed since the request began. An unreadable history leaves the intent open for a later
round, because "nothing was issued" must never be said while ERM may hold a code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.approvals.cards import ISSUED
from bot.audit import AuditEntry
from bot.code_replies import WHAT, code_command, code_reply, code_title, unsettled
from bot.core import Core
from bot.intents import Intent, IntentState
from bot.messages import Reply, Tone
from bot.storage.code_records import IssuedCodeRecord
from bot.storage.locks import LockBusyError
from erm.errors import ErmError
from erm.models import CodeType, Item
from erm.reconcile import PendingCode, Settlement, Verdict, code_description

log = logging.getLogger(__name__)

LOCK_TTL = 120.0
"""Seconds an item lock lives past its last renewal (renewed every third of it while held)."""

SWEEP_BATCH = 50
"""Open intents looked at per sweep; the rest wait for the next round."""

_REASON = "erm-bot stopped before ERM's answer was handled"


@dataclass(frozen=True, slots=True)
class Recovered:
    """How an orphaned intent ended: ``ok``, ``uncertain``, ``not_issued``, or ``unreadable``
    (left open: the history could not decide yet). ``record`` is the code found, if any."""

    intent: Intent
    outcome: str
    record: IssuedCodeRecord | None = None

    @property
    def final(self) -> bool:
        return self.outcome != "unreadable"


async def recover(
    core: Core, intent: Intent, *, item: Item | None = None, patience: float | None = None
) -> Recovered:
    """Reconcile one orphaned intent; the caller holds its item lock.

    ``patience`` caps how long the history is watched (a person may be waiting); by default it
    is watched until the reconcile window since the request began has passed.
    """
    now = core.clock()
    recorded = await core.codes.issued_for(intent.request_key)
    if recorded is not None:
        # Its holder recorded the code, then died before closing the intent.
        item = item or _item_of(intent, recorded)
        return await _close(core, intent, "ok", recorded, _found_reply(recorded, item, None))
    try:
        item = item or await core.erm.resolve_item(intent.distributor, intent.item_id)
    except ErmError as exc:
        log.info("an orphaned code request waits: %s", type(exc).__name__)
        return Recovered(intent, "unreadable")
    code_type = CodeType(intent.code_type)
    pending = PendingCode(
        intent.distributor,
        item,
        code_type,
        intent.days,
        intent.reference,
        code_description(intent.note, intent.reference),
        intent.started_at.timestamp(),
        _REASON,
    )
    age = (now - intent.started_at).total_seconds()
    remaining = max(0.0, core.erm.config.reconcile_window - age)
    wait = remaining if patience is None else min(remaining, patience)
    settled = await core.erm.settle(pending, patience=wait)
    if settled.code is not None:
        issued = settled.code
        record = IssuedCodeRecord(
            distributor=intent.distributor,
            item_id=item.id,
            item_label=item.label,
            client_name=item.client_name,
            code_type=code_type.value,
            days=intent.days,
            code_dec=issued.code_dec,
            code_hex=issued.code_hex,
            issued_by_platform=intent.requester_platform,
            issued_by_user=intent.requester_user,
            issued_by_name=intent.requester_name
            or f"{intent.requester_platform}:{intent.requester_user}",
            request_key=intent.request_key,
            note=intent.note,
            reconciled=True,
            # When it was asked for: ERM made it then, whenever erm-bot learnt of it.
            issued_at=intent.started_at,
            approval_id=intent.approval_id,
        )
        await core.codes.record_issue(record)  # fails loudly: the intent stays open
        return await _close(core, intent, "ok", record, _found_reply(record, item, settled))
    if settled.verdict is Verdict.UNREADABLE or wait < remaining:
        return Recovered(intent, "unreadable")  # not final yet: a later round decides
    if settled.verdict is Verdict.NONE:
        return await _close(core, intent, "not_issued", None, _none_reply(intent, item))
    return await _close(core, intent, "uncertain", None, unsettled(settled))


async def sweep(core: Core) -> dict[str, int]:
    """Recover every open intent whose holder is gone; how many ended each way.

    An intent whose item lock is held is left alone and counted as ``held``: its request may be
    alive (it renews the lock), or dead with its lock not expired yet, so the caller looks again
    soon. One whose requester's platform this process cannot message is skipped (a process that
    can will).
    """
    counts: dict[str, int] = {}
    for intent in await core.intents.open_intents(limit=SWEEP_BATCH):
        if intent.requester_platform not in core.notifiers:
            continue
        try:
            async with core.codes.item_lock(
                intent.distributor,
                intent.item_id,
                f"recovery:{intent.request_key}",
                ttl=LOCK_TTL,
                wait=0,
            ):
                # Read again under the lock: another process may have recovered it meanwhile.
                still_open = {
                    i.id for i in await core.intents.open_for(intent.distributor, intent.item_id)
                }
                if intent.id not in still_open:
                    continue
                done = await recover(core, intent)
        except LockBusyError:
            # Its holder lives, or died less than LOCK_TTL ago, or another process recovers it.
            counts["held"] = counts.get("held", 0) + 1
            continue
        except Exception:
            log.warning("recovering an orphaned code request failed; will retry", exc_info=True)
            counts["failed"] = counts.get("failed", 0) + 1
            continue
        counts[done.outcome] = counts.get(done.outcome, 0) + 1
    return counts


async def _close(
    core: Core,
    intent: Intent,
    outcome: str,
    record: IssuedCodeRecord | None,
    reply: Reply,
) -> Recovered:
    """Close the intent with ``outcome``, audit it and tell the requester (once)."""
    now = core.clock()
    if intent.approval_id is not None and core.approvals is not None:
        # Before the intent closes: the approval sweep sees the run either still open here (and
        # leaves it) or finished, never in between. A failure leaves the intent open (retried).
        result = ISSUED if record is not None else (reply.title or outcome)[:200]
        await core.approvals.store.record_execution(intent.approval_id, result, now=now)
    if not await core.intents.close(intent, IntentState(outcome), now=now):
        return Recovered(intent, outcome, record)  # someone else closed it, and told them
    detail = f"recovered after a restart: {outcome}"
    try:
        await core.audit.append(
            AuditEntry(
                at=now,
                platform=intent.requester_platform,
                chat_id=intent.chat_id or None,
                user_id=intent.requester_user,
                user_name=intent.requester_name,
                command=intent.command,
                outcome=outcome,
                detail=detail,
                distributor=intent.distributor,
                item_id=intent.item_id,
                erm_code_event=record.code_dec or None if record is not None else None,
                approval_id=intent.approval_id,
                request_key=intent.request_key,
            )
        )
    except Exception:
        log.exception("audit of a recovered code request failed", extra={"item": intent.item_id})
    await tell(core, intent.requester_platform, intent.notify_user, reply)
    return Recovered(intent, outcome, record)


async def tell(core: Core, platform: str, user_id: str, reply: Reply) -> None:
    """Send ``reply`` to a requester's private chat; a failure is logged, never raised."""
    notifier = core.notifiers.get(platform)
    if notifier is None:
        log.warning("no way to tell the requester how a code request settled")
        return
    try:
        await notifier.send_private(user_id, reply)
    except Exception:
        log.exception("could not tell the requester how a code request settled")


def _found_reply(record: IssuedCodeRecord, item: Item, settled: Settlement | None) -> Reply:
    code_type = CodeType(record.code_type)
    notes = [
        f"It {WHAT[code_type]}. Type it on the device keypad.",
        "erm-bot stopped before it could answer you; ERM's history shows this code for your "
        "request. No new code was made.",
    ]
    if settled is not None and settled.verdict is Verdict.LIKELY:
        notes.append(
            "ERM kept no reference: this code, made just after your request, is most likely "
            f"yours; check /history {item.oem_item_id} if in doubt."
        )
    return code_reply(code_title(code_type, record.days, item), record, item, notes=tuple(notes))


def _none_reply(intent: Intent, item: Item) -> Reply:
    command = code_command(CodeType(intent.code_type), item, intent.days)
    return Reply(
        title=f"No code was made for {item.label}.",
        lines=(
            "erm-bot stopped before ERM answered, and ERM's history shows no new code since.",
            f"It is safe to ask again: {command}",
        ),
        tone=Tone.WARNING,
    )


def _item_of(intent: Intent, record: IssuedCodeRecord) -> Item:
    """The item as far as erm-bot knows it (enough to show a recorded code; no ERM call)."""
    return Item(id=intent.item_id, oem_item_id=intent.oem_item_id, client_name=record.client_name)
