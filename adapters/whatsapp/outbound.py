"""Messages to WhatsApp through the Cloud API (pywa's ``GraphAPIAsync``): replies, and the core's
:class:`~bot.ports.Notifier` for messages the bot starts.

Every send goes through :meth:`Outbound.post`: on the Graph API's throughput (130429) and pair
rate (131056) errors it waits the advised delay (``Retry-After``, else a short default) and tries
once more; a send that still fails is counted in ``erm_bot_send_failures`` and raised.

The 24-hour window: a free-form message to someone who has not written in 24 hours is refused
(131047). :meth:`Outbound.send_private` then sends the configured template for that kind of
message, one body variable holding the message on one line. Without a template the message is
kept in the database (:mod:`bot.storage.held`: sealed, bound to the user, for 7 days) and
:meth:`Outbound.hand_over` sends it right after the reply to the user's next message, under
:data:`AWAY`, oldest first, once across replicas. The core is told it is held
(``Sent.HELD``): stored where a restart or another replica finds it, not lost and not yet read.
Without a store (``Core.held`` None) the core is told it was not sent (``NotifyError``); an
approved code then stays in the item's history, where ``resend ITEM`` finds it.

Held messages come after the reply, not before: the user asked something and its answer comes
first, next to the question; what waited follows under its own heading.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pywa_async.api import GraphAPIAsync
from pywa_async.errors import WhatsAppError

from adapters.whatsapp.config import NAME, Templates
from adapters.whatsapp.render import Outgoing, messages
from bot import metrics
from bot.messages import Reply
from bot.ports import NotifyError, Sent
from bot.storage.held import HeldStore

log = logging.getLogger(__name__)

OUTSIDE_WINDOW = 131047
THROUGHPUT = 130429
PAIR_RATE = 131056
RATE_LIMITED = frozenset({THROUGHPUT, PAIR_RATE})
DEFAULT_RETRY_WAIT = 2.0  # seconds, when the error carries no advice
MAX_RETRY_WAIT = 30.0  # longer waits are not waited out inside one person's queue
MAX_TEMPLATE_TEXT = 1000  # a template variable (no newlines, tabs or runs of spaces allowed)
# Error codes worth their own metric label; the rest are "graph_error" (bounded label values).
REASONS = {
    OUTSIDE_WINDOW: "outside_window",
    THROUGHPUT: "throughput",
    PAIR_RATE: "pair_rate",
    131026: "undeliverable",
    131000: "graph_internal",
    190: "token",
    132001: "template_missing",
}
AWAY = "While you were away:"
_WA_ID = re.compile(r"[1-9][0-9]{5,14}")  # E.164: at most 15 digits

Sleep = Callable[[float], Awaitable[None]]


def reason(exc: Exception) -> str:
    if isinstance(exc, WhatsAppError):
        return REASONS.get(exc.code, "graph_error")
    return type(exc).__name__


def describe(exc: Exception) -> str:
    """A failure in a few words, never a secret (Graph messages do not quote the token)."""
    if isinstance(exc, WhatsAppError):
        return f"WhatsApp error {exc.code}: {exc.message[:200]}"
    return f"WhatsApp unreachable ({type(exc).__name__})"


def retry_wait(exc: WhatsAppError) -> float:
    """The delay the error advises (``Retry-After`` seconds), else :data:`DEFAULT_RETRY_WAIT`."""
    response = exc.raw_response
    advised = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(advised)) if advised is not None else DEFAULT_RETRY_WAIT
    except ValueError:
        return DEFAULT_RETRY_WAIT


def one_line(reply: Reply) -> str:
    """The reply as a template variable: one line, no tabs or runs of spaces, cut to fit."""
    text = " · ".join(" ".join(line.split()) for line in reply.text().splitlines() if line.strip())
    return text if len(text) <= MAX_TEMPLATE_TEXT else text[: MAX_TEMPLATE_TEXT - 1] + "…"


class Outbound:
    """Sends as the business phone number through the running client's Graph API."""

    def __init__(
        self,
        api: Callable[[], GraphAPIAsync],
        phone_number_id: str,
        templates: Templates,
        *,
        sleep: Sleep = asyncio.sleep,
        held: HeldStore | None = None,
    ) -> None:
        self._api = api
        self._held = held
        self._phone_number_id = phone_number_id
        self._templates = templates
        self._sleep = sleep

    async def send(self, wa_id: str, reply: Reply) -> list[str]:
        """The reply, in as many messages as it takes, buttons on the last; their ids."""
        return [await self.post(wa_id, message) for message in messages(reply)]

    async def text(self, wa_id: str, body: str) -> None:
        """A short text of ours (already WhatsApp markup)."""
        await self.post(wa_id, Outgoing("text", {"body": body, "preview_url": False}))

    async def post(self, wa_id: str, message: Outgoing) -> str:
        """One Cloud API message; its ``wamid``. Rate limits are waited out once."""
        try:
            try:
                return await self._send(wa_id, message)
            except WhatsAppError as exc:
                if exc.code not in RATE_LIMITED:
                    raise
                wait = retry_wait(exc)
                if wait > MAX_RETRY_WAIT:
                    raise
                log.warning("WhatsApp rate limit (%s): waiting %.1f s, then again", exc.code, wait)
                await self._sleep(wait)
                return await self._send(wa_id, message)
        except (WhatsAppError, httpx.HTTPError) as exc:
            metrics.count_send_failure(NAME, message.type, reason(exc))
            raise

    async def _send(self, wa_id: str, message: Outgoing) -> str:
        answer: dict[str, Any] = await self._api().send_message(
            sender=self._phone_number_id,
            to=wa_id,
            recipient=None,
            recipient_type="individual",
            typ=message.type,
            msg=message.content,
        )
        sent = answer.get("messages")
        first = sent[0] if isinstance(sent, list) and sent else None
        return str(first.get("id", "")) if isinstance(first, dict) else ""

    async def template(self, wa_id: str, name: str, reply: Reply) -> None:
        """The approved template ``name``, its one body variable holding ``reply`` on a line."""
        await self.post(
            wa_id,
            Outgoing(
                "template",
                {
                    "name": name,
                    "language": {"code": self._templates.language},
                    "components": [
                        {"type": "body", "parameters": [{"type": "text", "text": one_line(reply)}]}
                    ],
                },
            ),
        )

    # -- Notifier ------------------------------------------------------------------------------

    async def post_card(self, chat_id: str, reply: Reply) -> str:
        """WhatsApp is one-to-one: approval chats are Slack channels or Telegram groups."""
        raise NotifyError("WhatsApp has no group chats: approval chats are on Slack or Telegram")

    async def update_card(self, chat_id: str, message_ref: str, reply: Reply) -> None:
        raise NotifyError("WhatsApp has no group chats: approval chats are on Slack or Telegram")

    async def send_private(self, user_id: str, reply: Reply) -> Sent:
        """To the user's chat with the business number; a template outside the 24 h window."""
        if not _WA_ID.fullmatch(user_id):
            raise NotifyError("not a WhatsApp id (digits of a phone number in international form)")
        try:
            sent = await self.send(user_id, reply)
        except WhatsAppError as exc:
            if exc.code != OUTSIDE_WINDOW:
                raise NotifyError(describe(exc)) from None
        except httpx.HTTPError as exc:
            raise NotifyError(describe(exc)) from None
        else:
            await self._watch(user_id, reply, sent)
            return Sent.NOW
        return await self.fallback(user_id, reply)

    async def _watch(self, user_id: str, reply: Reply, sent: list[str]) -> None:
        """The real Cloud API may take a message and report it undelivered later (a ``failed``
        status with 131047): a sealed copy waits in the database for that report, by the id of
        its first message (:meth:`undelivered`)."""
        if self._held is None or not sent or not sent[0]:
            return
        try:
            await self._held.watch(NAME, user_id, reply, sent[0])
        except Exception as exc:  # it went: only a later "window closed" report would be missed
            log.warning("a message the bot started is not watched: %s", type(exc).__name__)

    async def undelivered(self, message_id: str) -> None:
        """WhatsApp reported ``message_id`` undelivered for the window: when the bot started it,
        it goes again as its template, or is held for the user's next message."""
        if self._held is None:
            return
        watched = await self._held.returned(NAME, message_id)
        if watched is None:
            return  # a reply (the user had just written), or handled already
        name = self._templates.for_codes(bool(watched.reply.codes))
        if name is not None:
            try:
                await self.template(watched.user_id, name, watched.reply)
            except (WhatsAppError, httpx.HTTPError) as exc:
                log.warning("template refused (%s): kept for the next message", describe(exc))
            else:
                await self._held.done(watched.taken)
                return
        await self._held.release(watched.taken)
        log.info("outside WhatsApp's 24-hour window: kept for the next message")

    async def fallback(self, user_id: str, reply: Reply) -> Sent:
        """``reply`` as its template, for someone outside the 24-hour window; without a template
        it is kept for their next message (NotifyError with no store to keep it, or when the
        template is refused)."""
        name = self._templates.for_codes(bool(reply.codes))
        if name is None and self._held is not None:
            await self._held.keep(NAME, user_id, reply)
            log.info("outside WhatsApp's 24-hour window, no template: kept for the next message")
            return Sent.HELD
        if name is None:
            raise NotifyError(
                "outside WhatsApp's 24-hour window and no template configured "
                "(WHATSAPP_TEMPLATE_CODE_READY / WHATSAPP_TEMPLATE_DECISION)"
            )
        try:
            await self.template(user_id, name, reply)
        except (WhatsAppError, httpx.HTTPError) as exc:
            raise NotifyError(describe(exc)) from None
        return Sent.NOW

    async def hand_over(self, wa_id: str) -> int:
        """The messages kept for ``wa_id`` (who just wrote), under :data:`AWAY`; how many.

        Claimed first, so two replicas never both send one; deleted once sent. A send that fails
        gives the rest back for the next message (the window may have closed again).
        """
        if self._held is None:
            return 0
        taken = await self._held.take(NAME, wa_id)
        if not taken.messages:
            return 0
        sent: list[int] = []
        try:
            await self.text(wa_id, f"*{AWAY}*")
            for held in taken.messages:
                await self.send(wa_id, held.reply)
                sent.append(held.id)
        except (WhatsAppError, httpx.HTTPError) as exc:
            log.warning("kept WhatsApp messages not handed over yet: %s", describe(exc))
        finally:
            if sent:
                await self._held.done(taken, sent)
            if len(sent) < len(taken.messages):
                await self._held.release(taken)
        return len(sent)
