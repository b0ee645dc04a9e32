"""Delivery of approval requests: cards in approval chats, private messages and audit rows.

:class:`Delivery` is the part of the approval flow that talks to platforms through the
:class:`bot.ports.Notifier` each adapter registers. A card counts as shown only once its message
exists (:mod:`bot.storage.approval_cards`); a failed post waits longer each time and is audited once
per request and chat, with a metric and a warning for operators, and supervisors see the
unreachable chat in ``/approvals``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from bot import metrics
from bot.approvals.cards import deny_prompt, final_card, pending_card, unreachable_notice
from bot.audit import AuditEntry
from bot.core import Core
from bot.messages import Identity, Reply
from bot.ports import NotifyError, Sent
from bot.storage.approval_cards import CardStore, Unreachable, backoff
from bot.storage.approval_tables import CARD, REMINDER, Approval, Card, Channel, Status
from bot.storage.approvals import ApprovalStore

log = logging.getLogger("bot.approvals")  # one logger name for the whole approval flow

SYSTEM = Identity("system", "erm-bot", "erm-bot")  # the actor of audit rows the sweep writes


class Delivery:
    """What the approval flow says and shows outside replies: cards in approval chats (posted
    once, retried with backoff, edited once decided), private messages, audit rows."""

    def __init__(self, store: ApprovalStore) -> None:
        self.store = store
        self.cards = CardStore(store.engine)
        self._core: Core | None = None

    def attach(self, core: Core) -> None:
        """Called by the :class:`Core` that holds this service, as it is made: the stores, clock,
        limits and notifiers the flow uses. Approved requests run through the runner each call
        that runs one is given (the dispatcher)."""
        self._core = core

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("the approval service is used before a Core holds it")
        return self._core

    def _now(self) -> datetime:
        return self.core.clock()

    @property
    def _ttl(self) -> timedelta:
        return timedelta(hours=self.core.limits.approval_hours)

    # -- cards ----------------------------------------------------------------------------------

    async def _post_cards(self, approval: Approval, kind: str, *, tell: bool = True) -> int:
        """Post the request to every approval channel of its distributor; how many got it.

        ``tell``: whether the requester hears privately that no chat could be reached (not for a
        new request: its pending reply tells them to tell a supervisor).
        """
        posted = 0
        for channel in await self.store.channels(approval.distributor):
            if await self._post(approval, channel, kind, tell=tell):
                posted += 1
        return posted

    async def _post(
        self,
        approval: Approval,
        channel: Channel,
        kind: str,
        *,
        tell: bool = True,
        now: datetime | None = None,
    ) -> bool:
        """Post one card; False when it is not (yet) in the chat.

        The claim expires by itself if this process dies before the message exists; a failed
        post is counted, waits (1 min, 2, 4 … 1 h) and is audited only the first time in a chat,
        so a dead chat costs a few API calls an hour and one audit row per request.
        """
        notifier = self.core.notifiers.get(channel.platform)
        if notifier is None:
            return False  # not served by this process: the sweep of one that serves it posts it
        now = now or self._now()
        card_id = await self.cards.claim(
            approval.id, channel.platform, channel.chat_id, kind, now=now
        )
        if card_id is None:
            return False  # posted already, being posted, or waiting before the next attempt
        try:
            card = await self._stored_buttons(self.card(approval, reminder=kind == REMINDER))
            ref = await notifier.post_card(channel.chat_id, card)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, NotifyError) else type(exc).__name__
            await self._post_failed(approval, channel, card_id, reason, tell=tell, now=now)
            return False
        await self.cards.posted(card_id, ref, now=now)
        outcome = "posted" if kind == CARD else "reminded"
        await self._audit(
            approval, outcome, f"{channel.platform} {channel.chat_id}", chat_id=channel.chat_id
        )
        return True

    async def _post_failed(
        self,
        approval: Approval,
        channel: Channel,
        card_id: int,
        reason: str,
        *,
        tell: bool,
        now: datetime,
    ) -> None:
        failure = await self.cards.failed(card_id, reason, now=now)
        metrics.count_approval_post_failure(channel.platform)
        log.warning(
            "approval %s: card not posted to %s %s (attempt %d, next in %s): %s",
            approval.id,
            channel.platform,
            channel.chat_id,
            failure.attempts,
            backoff(failure.attempts),
            reason[:64],
        )
        if failure.first_in_chat:
            await self._audit(
                approval, "post_failed", f"{channel.platform} {channel.chat_id}: {reason[:64]}"
            )
        if failure.first_of_request and tell:
            await self._send_private(approval, unreachable_notice(approval))

    async def unreachable(self, distributors: list[str]) -> list[Unreachable]:
        """Approval chats of these distributors the bot could not post to lately."""
        return await self.cards.unreachable(distributors)

    async def _stored_buttons(self, reply: Reply) -> Reply:
        """Keep each button's action server-side, like the dispatcher does for replies."""
        if not reply.buttons:
            return reply
        ids = await self.core.buttons.save(
            [(b.action, {"value": b.value}) for b in reply.buttons],
            owner=None,
            now=self._now(),
            ttl=self._ttl + timedelta(days=1),
        )
        return replace(
            reply,
            buttons=tuple(replace(b, value=i) for b, i in zip(reply.buttons, ids, strict=True)),
        )

    def card(self, approval: Approval, *, reminder: bool = False) -> Reply:
        """The card approvers see while the request is pending (buttons not yet stored)."""
        return pending_card(approval, reminder=reminder)

    def final_card(self, approval: Approval) -> Reply:
        """The card once decided: who decided what, when; no buttons, never a code."""
        return final_card(approval)

    async def deny_prompt(self, approval: Approval) -> Reply:
        """The card after Deny: deny without a reason, or go back; a reason is typed."""
        return await self._stored_buttons(deny_prompt(approval))

    async def pending_card(self, approval: Approval) -> Reply:
        """The pending card with fresh buttons (for "Back"), or the final card when decided."""
        if approval.status is not Status.PENDING:
            return final_card(approval)
        return await self._stored_buttons(pending_card(approval))

    async def _update_cards(self, approval: Approval) -> None:
        for card in await self.cards.of(approval.id):
            if card.message_ref is not None and card.settled_at is None:
                await self._settle(approval, card)

    async def _settle(self, approval: Approval, card: Card) -> bool:
        notifier = self.core.notifiers.get(card.platform)
        if notifier is None or card.message_ref is None:
            return False
        try:
            await notifier.update_card(card.chat_id, card.message_ref, final_card(approval))
        except Exception as exc:
            log.warning(
                "approval %s: card in %s %s not updated: %s",
                approval.id,
                card.platform,
                card.chat_id,
                exc if isinstance(exc, NotifyError) else type(exc).__name__,
            )
            return False
        await self.cards.settle(card.id, now=self._now())
        return True

    async def _send_private(self, approval: Approval, reply: Reply) -> Sent | None:
        """How the requester's platform took ``reply``; None when it did not."""
        notifier = self.core.notifiers.get(approval.requester.platform)
        if notifier is None:
            return None
        try:
            return await notifier.send_private(approval.requester.user_id, reply)
        except Exception as exc:
            log.warning(
                "approval %s: requester not reached privately: %s",
                approval.id,
                exc if isinstance(exc, NotifyError) else type(exc).__name__,
            )
            return None

    async def _audit(
        self,
        approval: Approval,
        outcome: str,
        detail: str,
        *,
        actor: Identity | None = None,
        chat_id: str = "",
    ) -> None:
        who = actor or SYSTEM
        entry = AuditEntry(
            at=self._now(),
            platform=who.platform,
            chat_id=chat_id or None,
            user_id=who.user_id,
            user_name=who.name,
            command="approval",
            arguments=f"{approval.what} {approval.item_label}",
            outcome=outcome,
            detail=detail,
            distributor=approval.distributor,
            item_id=approval.item_id,
            approval_id=approval.id,
            request_key=approval.request_key,
        )
        try:
            await self.core.audit.append(entry)
        except Exception:
            log.exception("audit append failed", extra={"approval_id": approval.id})
