"""Updates of different chats run concurrently; the updates of one chat run in arrival order.

PTB processes one update at a time by default: with a 50 ms ERM call that is about 18 updates/s
for the whole bot. ``concurrent_updates(True)`` runs everything at once, so two messages from one
agent could be answered out of order. :class:`ChatOrderedProcessor` sits in between.

How: the first update of a chat runs at once and, while it runs, later updates of that chat are
queued behind it (their ``process_update`` call returns at once, freeing its slot); the running
one drains its chat's queue in order before it returns. So the ``max_concurrent_updates`` slots
bound the chats being worked on, one chat's backlog cannot take every slot, and there is no
deadlock: a slot is never held by an update waiting for another one.

Arrival order is kept because PTB starts one task per update in queue order and the base class's
semaphore (asyncio's; its waiters are woken first in, first out) admits them in order; each update
is filed under its chat before its first ``await``. ``Application.stop`` waits for the tasks PTB
started, and so for every queued update.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Hashable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 256


def chat_key(update: object) -> Hashable | None:
    """What orders updates: the chat (or the user, for a button on an inline message)."""
    if not isinstance(update, Update):
        return None
    if update.effective_chat is not None:
        return ("chat", update.effective_chat.id)
    if update.effective_user is not None:
        return ("user", update.effective_user.id)
    return None


class ChatOrderedProcessor(BaseUpdateProcessor):
    """Concurrent across chats, in order within one chat; see the module docstring."""

    __slots__ = ("_backlogs", "peak")

    def __init__(self, max_concurrent_updates: int = DEFAULT_CONCURRENCY) -> None:
        super().__init__(max_concurrent_updates)
        self._backlogs: dict[Hashable, deque[Awaitable[Any]]] = {}
        self.peak = 0  # most chats worked on at once, for tests and metrics

    @property
    def busy_chats(self) -> int:
        return len(self._backlogs)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = chat_key(update)
        if key is None:
            await coroutine
            return
        backlog = self._backlogs.get(key)
        if backlog is not None:
            backlog.append(coroutine)  # the update running for this chat runs it next
            return
        backlog = self._backlogs[key] = deque([coroutine])
        self.peak = max(self.peak, len(self._backlogs))
        try:
            while backlog:
                await _run(backlog[0])
                backlog.popleft()
        finally:
            del self._backlogs[key]
            while backlog:  # only when cancelled: close what will never run
                pending = backlog.popleft()
                close = getattr(pending, "close", None)
                if close is not None:
                    close()

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to free: ``Application.stop`` already waited for every update."""


async def _run(coroutine: Awaitable[Any]) -> None:
    # Application.process_update hands handler errors to the error handlers; anything that
    # still escapes must not stop the rest of the chat's queue.
    try:
        await coroutine
    except Exception:
        log.exception("processing a Telegram update failed")
