"""The approval sweep as `erm-bot run` runs it: a task started and stopped with the app."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from adapters.approvals import ApprovalSweeper
from adapters.web import create_app
from bot.messages import Identity, Reply, Request
from bot.ports import NotifyError, Sent
from bot.roles import Role
from erm.sandbox import OPEN_ACP1_OEM_ID
from erm.sandbox.server import serve_app


class Channel:
    """A notifier that is down until told otherwise, then records the cards it is given."""

    def __init__(self) -> None:
        self.up = False
        self.cards: list[Reply] = []

    async def post_card(self, chat_id: str, reply: Reply) -> str:
        if not self.up:
            raise NotifyError("down")
        self.cards.append(reply)
        return str(len(self.cards))

    async def update_card(self, chat_id: str, message_ref: str, reply: Reply) -> None:
        self.cards[int(message_ref) - 1] = reply

    async def send_private(self, user_id: str, reply: Reply) -> Sent:
        return Sent.NOW


async def pending_request(stack: Any) -> Channel:
    """A free code asked for while the approval channel could not be reached."""
    core = stack.dispatcher.core
    channel = Channel()
    core.notifiers["slack"] = channel
    await core.approvals.store.set_channel("acme", "slack", "C9", by="tests", now=core.clock())
    await stack.grant("slack:U1", Role.AGENT)
    reply = await stack.dispatcher.handle(
        Request(Identity("slack", "U1"), f"/code free {OPEN_ACP1_OEM_ID}", request_key="k1")
    )
    assert "Waiting for a supervisor" in reply.text()
    assert "channel" not in reply.text().lower()  # the agent is not told: nothing to do there
    return channel


async def test_the_sweeper_posts_a_card_the_channel_missed_once_it_is_back(stack: Any) -> None:
    channel = await pending_request(stack)
    core = stack.dispatcher.core
    clock = core.clock
    core.clock = lambda: clock() + timedelta(minutes=1)  # a failed post waits a minute
    sweeper = ApprovalSweeper(core, stack.dispatcher.run, interval=0.05)

    channel.up = True  # before the first round: a round that fails would wait two minutes more
    async with serve_app(create_app([sweeper])):
        async with asyncio.timeout(10):
            while not channel.cards:  # noqa: ASYNC110 - the sweeper's task posts it
                await asyncio.sleep(0.05)

    assert sweeper._task is None  # stopped with the app
    assert [b.label for b in channel.cards[0].buttons] == ["Approve", "Deny"]


async def test_the_sweeper_survives_a_failing_round(stack: Any) -> None:
    core = stack.dispatcher.core
    calls: list[object] = []

    async def broken(now: object, run: object) -> None:
        calls.append(now)
        raise OSError("database unreachable")

    core.approvals.sweep = broken
    sweeper = ApprovalSweeper(core, stack.dispatcher.run, interval=0.01)

    async with serve_app(create_app([sweeper])):
        async with asyncio.timeout(10):
            while len(calls) < 3:  # noqa: ASYNC110 - the sweeper's task calls it
                await asyncio.sleep(0.01)
