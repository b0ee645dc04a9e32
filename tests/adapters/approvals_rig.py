"""Approvals end to end: the Slack and the Telegram adapter on one stack, each on its fake.

``open_team`` starts both adapters on a dispatcher (the stack's, or another process's), grants
the people below their roles, and makes Slack channel ``C9`` and Telegram group ``TEAM`` the
approval chats of acme by typing ``/approvals here`` in each, as a supervisor would.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fakes.slack import (
    SIGNING_SECRET,
    Call,
    FakeSlack,
    block_actions_payload,
    command_form,
    encode_form,
    encode_payload,
    signed_headers,
)
from fakes.telegram import FakeTelegram, Group, SentMessage, User
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.platform import Attached
from adapters.slack.app import SlackAdapter
from adapters.slack.config import SlackConfig
from adapters.telegram.app import TelegramAdapter
from adapters.telegram.config import TelegramConfig
from adapters.web import create_app
from bot.approvals.service import ApprovalService
from bot.dispatch import Dispatcher
from bot.roles import Role
from bot.storage.approval_tables import Approval
from bot.storage.code_records import IssuedCodeRecord
from erm.models import keypad_format
from erm.sandbox import OPEN_ACP1_OEM_ID
from erm.sandbox.server import serve_app

ITEM = OPEN_ACP1_OEM_ID

SLACK_AGENT = "U1"
SLACK_VIEWER = "U2"
SLACK_SUPERVISOR = "U5"
SLACK_ADMIN = "U7"
SLACK_CHANNEL = "C9"

TG_AGENT = User(2001, "Amina", "amina_k", "Kamau")
TG_VIEWER = User(2002, "Brian", "brian_o")
TG_SUPERVISOR = User(2003, "Chloe", "chloe_n")
TG_ADMIN = User(2004, "Dawit", "dawit_admin")
TEAM = Group(-100777000, "Acme approvers")

PEOPLE = (
    (f"slack:{SLACK_AGENT}", Role.AGENT),
    (f"slack:{SLACK_VIEWER}", Role.VIEWER),
    (f"slack:{SLACK_SUPERVISOR}", Role.SUPERVISOR),
    (f"slack:{SLACK_ADMIN}", Role.ADMIN),
    (f"telegram:{TG_AGENT.id}", Role.AGENT),
    (f"telegram:{TG_VIEWER.id}", Role.VIEWER),
    (f"telegram:{TG_SUPERVISOR.id}", Role.SUPERVISOR),
    (f"telegram:{TG_ADMIN.id}", Role.ADMIN),
)


@dataclass
class SlackSide:
    """Slack as users see it: ``http`` reaches the bot's ``/slack/events`` (in process or not)."""

    fake: FakeSlack
    adapter: SlackAdapter | None
    http: httpx.AsyncClient

    async def command(
        self, user: str, command: str, text: str, *, channel: str = SLACK_CHANNEL
    ) -> str:
        """Send a signed slash command; returns its response_url's path (to find the answer)."""
        url = self.fake.response_url()
        form = command_form(
            command,
            text,
            user_id=user,
            user_name=f"name-{user}",
            channel_id=channel,
            channel_name="directmessage" if channel.startswith("D") else "approvals",
            response_url=url,
        )
        body = encode_form(form)
        response = await self.http.post(
            "/slack/events", content=body.encode(), headers=signed_headers(body)
        )
        assert response.status_code == 200, response.text
        return url.removeprefix(self.fake.url)

    async def answer(self, path: str, within: float = 15.0) -> Call:
        [call] = await self.fake.wait_calls(
            lambda c: c.method == "response" and c.path == path, within=within
        )
        return call

    async def ask(
        self, user: str, command: str, text: str, *, channel: str = SLACK_CHANNEL
    ) -> Call:
        return await self.answer(await self.command(user, command, text, channel=channel))

    async def click(self, user: str, card: Call, label: str) -> str:
        """Press a button of a posted card; returns the click's response_url path."""
        element = button(card, label)
        url = self.fake.response_url()
        payload = block_actions_payload(
            element["action_id"],
            element["value"],
            user_id=user,
            user_name=f"name-{user}",
            channel_id=str(card.channel),
            message_ts=str(card_ts(card)),
            response_url=url,
        )
        body = encode_payload(payload)
        response = await self.http.post(
            "/slack/events", content=body.encode(), headers=signed_headers(body)
        )
        assert response.status_code == 200, response.text
        return url.removeprefix(self.fake.url)

    def cards(self, channel: str = SLACK_CHANNEL) -> list[Call]:
        """Messages posted (chat.postMessage) into ``channel``."""
        return [
            c
            for c in self.fake.calls_to("chat.postMessage")
            if c.channel == channel and c.status == 200
        ]

    async def wait_cards(self, count: int = 1, channel: str = SLACK_CHANNEL) -> list[Call]:
        await self.fake.wait_calls(
            lambda c: c.method == "chat.postMessage" and c.channel == channel, count=count
        )
        return self.cards(channel)

    def current(self, card: Call) -> dict[str, Any]:
        """The card as it shows now (after chat.update)."""
        return self.fake.messages[(str(card.channel), card_ts(card))]

    def dms(self, user: str) -> list[Call]:
        """Messages the bot sent privately to ``user`` (chat.postMessage to the user id)."""
        return [c for c in self.fake.calls_to("chat.postMessage") if c.channel == user]

    async def wait_dms(self, user: str, count: int = 1) -> list[Call]:
        await self.fake.wait_calls(
            lambda c: c.method == "chat.postMessage" and c.channel == user, count=count
        )
        return self.dms(user)


@dataclass
class TelegramSide:
    fake: FakeTelegram
    adapter: TelegramAdapter | None  # None: this process does not serve Telegram

    def cards(self) -> list[SentMessage]:
        """Messages with buttons the bot sent to the approval group."""
        return [m for m in self.fake.sent(TEAM.id) if m.buttons or "Request:" in m.plain]

    async def wait_cards(self, count: int = 1) -> list[SentMessage]:
        await self.fake.wait_until(lambda: len(self.cards()) >= count, what=f"{count} cards")
        return self.cards()

    async def press(self, user: User, message: SentMessage, label: str) -> None:
        """Press a button and wait until the press is answered."""
        answered = len(self.fake.answers())
        self.fake.press(user, message, label)
        await self.fake.wait_until(
            lambda: len(self.fake.answers()) > answered, within=15, what="the press answered"
        )

    def last_notice(self) -> str:
        return str(self.fake.answers()[-1].params.get("text") or "")


@dataclass
class Team:
    stack: Any
    dispatcher: Dispatcher
    slack: SlackSide
    telegram: TelegramSide

    @property
    def approvals(self) -> ApprovalService:
        service = self.dispatcher.core.approvals
        assert service is not None
        return service

    async def only(self) -> Approval:
        """The one approval request of the test."""
        [approval] = await self.approvals.store.pending(["acme"], now=_now(self))
        return approval

    async def issued(self, approval_id: str) -> IssuedCodeRecord:
        approval = await self.approvals.load(approval_id)
        record = await self.dispatcher.core.codes.last_issue("acme", approval.item_id)
        assert record is not None
        assert record.approval_id == approval_id
        return record


def _now(team: Team) -> Any:
    return team.dispatcher.core.clock()


def button(card: Call, label: str) -> dict[str, Any]:
    for block in card.blocks:
        if block["type"] == "actions":
            for element in block["elements"]:
                if element["text"]["text"] == label:
                    return dict(element)
    raise LookupError(f"no button {label!r}")


def card_ts(card: Call) -> str:
    answer = card.answer
    assert isinstance(answer, dict)
    return str(answer["ts"])


def has_buttons(message: dict[str, Any]) -> bool:
    blocks = message.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return any(block.get("type") == "actions" for block in blocks)


def code_forms(record: IssuedCodeRecord) -> list[str]:
    """Ways a code can appear in a message: digits, keypad form, keypad digits run together."""
    keypad = keypad_format(record.code_dec)
    return [record.code_dec, keypad, keypad.replace(" ", "")]


def assert_code_only_in_private(team: Team, record: IssuedCodeRecord, requester: str) -> None:
    """The code is in the requester's private chat and in no other message on either platform.

    ``requester`` is ``slack:U..`` or ``telegram:<id>``.
    """
    forms = code_forms(record)
    platform, _, user_id = requester.partition(":")
    slack_with_code = [c for c in team.slack.fake.calls if any(f in c.dump() for f in forms)]
    telegram_with_code = [
        m for m in team.telegram.fake.messages if any(f in m.text or f in m.plain for f in forms)
    ]
    for call in slack_with_code:
        assert platform == "slack", call.method
        assert (call.method, call.channel) == ("chat.postMessage", user_id)
    for message in telegram_with_code:
        assert platform == "telegram", message.chat_id
        assert message.chat_id == int(user_id)
    assert len(slack_with_code) + len(telegram_with_code) == 1


@contextlib.asynccontextmanager
async def open_team(
    stack: Any,
    fake_slack: FakeSlack,
    fake_telegram: FakeTelegram,
    *,
    dispatcher: Dispatcher | None = None,
    engine: AsyncEngine | None = None,
    setup: bool = True,
    telegram: bool = True,
) -> AsyncIterator[Team]:
    """Both adapters on ``dispatcher`` (default: the stack's; ``engine`` is its database),
    serving until the block ends."""
    dispatcher = dispatcher or stack.dispatcher
    if setup:
        for key, role in PEOPLE:
            await stack.grant(key, role)
        fake_telegram.start_private(TG_AGENT)
        fake_telegram.start_private(TG_SUPERVISOR)
    slack_adapter = SlackAdapter(
        dispatcher,
        SlackConfig(
            bot_token=fake_slack.bot_token,
            signing_secret=SIGNING_SECRET,
            api_url=fake_slack.api_url,
        ),
        channel_interval=0.0,
    )
    telegram_adapter = (
        None
        if not telegram
        else TelegramAdapter(
            dispatcher,
            TelegramConfig(
                bot_token=fake_telegram.token,
                api_url=fake_telegram.api_url,
                poll_timeout=1.0,
                lock_interval=0.5,
            ),
            engine or stack.engine,
        )
    )
    telegram_attached = (
        None
        if telegram_adapter is None
        else Attached(dispatcher.core, "telegram", telegram_adapter)
    )
    async with (
        serve_app(create_app([Attached(dispatcher.core, "slack", slack_adapter)])) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=15.0) as http,
    ):
        if telegram_attached is not None:
            await telegram_attached.start()
        try:
            team = Team(
                stack,
                dispatcher,
                SlackSide(fake_slack, slack_adapter, http),
                TelegramSide(fake_telegram, telegram_adapter),
            )
            if setup:
                here = await team.slack.ask(SLACK_SUPERVISOR, "/erm", "approvals here")
                assert "come to this chat" in here.text, here.text
                [answer] = await fake_telegram.send(TG_SUPERVISOR, "/approvals here", group=TEAM)
                assert "come to this chat" in answer.plain, answer.plain
            yield team
        finally:
            if telegram_attached is not None:
                await telegram_attached.stop()
            await slack_adapter.drain(15.0)
