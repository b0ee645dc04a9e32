"""The bot core with its approval flow, and a notifier that records what it would post."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace

from bot_harness import Bot

from bot.approvals.service import ApprovalService
from bot.dispatch import Dispatcher
from bot.messages import Reply
from bot.ports import NotifyError, Sent
from bot.storage.approvals import ApprovalStore

CHANNEL = "C-approvals"
"""The approval channel the tests set (on platform ``team``'s recording notifier)."""


@dataclass
class RecordingNotifier:
    """A ``Notifier`` that keeps every card (as last edited) and every private message."""

    cards: dict[str, tuple[str, Reply]] = field(default_factory=dict)  # ref -> (chat, reply)
    posts: list[tuple[str, Reply]] = field(default_factory=list)
    edits: list[tuple[str, str, Reply]] = field(default_factory=list)
    private: list[tuple[str, Reply]] = field(default_factory=list)
    down: bool = False  # the platform refuses everything
    _refs: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def post_card(self, chat_id: str, reply: Reply) -> str:
        if self.down:
            raise NotifyError("recording notifier is down")
        ref = f"m{next(self._refs)}"
        self.cards[ref] = (chat_id, reply)
        self.posts.append((chat_id, reply))
        return ref

    async def update_card(self, chat_id: str, message_ref: str, reply: Reply) -> None:
        if self.down:
            raise NotifyError("recording notifier is down")
        if message_ref not in self.cards:
            raise NotifyError("message_not_found")
        self.cards[message_ref] = (chat_id, reply)
        self.edits.append((chat_id, message_ref, reply))

    async def send_private(self, user_id: str, reply: Reply) -> Sent:
        if self.down:
            raise NotifyError("recording notifier is down")
        self.private.append((user_id, reply))
        return Sent.NOW

    def private_to(self, user_id: str) -> list[Reply]:
        return [reply for user, reply in self.private if user == user_id]


def with_approvals(bot: Bot) -> Bot:
    """``bot`` with an approval service (and a fresh dispatcher bound to it)."""
    bot.core = replace(bot.core, approvals=ApprovalService(ApprovalStore(bot.engine)))
    bot.dispatcher = Dispatcher(bot.core)
    return bot


def service(bot: Bot) -> ApprovalService:
    assert bot.core.approvals is not None
    return bot.core.approvals


async def with_channel(bot: Bot) -> tuple[RecordingNotifier, RecordingNotifier]:
    """Cards go to ``CHANNEL`` on platform "slack"; console users get private messages.

    Returns (the channel's notifier, the console users' notifier).
    """
    team, console = RecordingNotifier(), RecordingNotifier()
    bot.core.notifiers["slack"] = team
    bot.core.notifiers["console"] = console
    await service(bot).store.set_channel("acme", "slack", CHANNEL, by="tests", now=bot.core.clock())
    return team, console


def pending_id(reply: Reply) -> str:
    """The approval id of a "Waiting for a supervisor's approval" reply (in its cancel line)."""
    [approval_id] = re.findall(r"/approvals cancel (\S+)", reply.text())
    return approval_id


WAITING = "Waiting for a supervisor's approval"
WAITING_AGAIN = "Already waiting for a supervisor's approval"
MAX_PENDING_BYTES = 200


def check_waiting(reply: Reply, *, again: bool = False) -> str:
    """Check a requester's pending reply (short, the request id once); returns the id."""
    text = reply.text()
    assert reply.title == (WAITING_AGAIN if again else WAITING), text
    assert len(text.encode()) <= MAX_PENDING_BYTES, f"{len(text.encode())} bytes:\n{text}"
    approval_id = pending_id(reply)
    assert text.count(approval_id) == 1, text
    return approval_id
