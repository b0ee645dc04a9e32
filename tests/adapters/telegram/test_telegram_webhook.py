"""Webhook mode over real HTTP: the bot's one ASGI app, the secret token, redeliveries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fakes.telegram import FakeTelegram
from telegram_rig import AGENT, AdapterFactory, StackLike

from adapters.platform import Attached
from adapters.settings import Settings
from adapters.telegram.config import TelegramConfig
from adapters.web import create_app
from bot.messages import Reply, Request
from bot.roles import Role
from erm.sandbox.seed import OPEN_OPENTOKEN_OEM_ID
from erm.sandbox.server import serve_app

HOOK = "https://bot.example.org/telegram/webhook"
SECRET = "s3cret-Token_for-tests"
ITEM = OPEN_OPENTOKEN_OEM_ID


@pytest.fixture
async def webhook(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> AsyncIterator[str]:
    """The bot's web app (webhook mode) served on loopback; yields the webhook's local URL."""
    adapter = await make_adapter(
        stack.dispatcher, stack.engine, start=False, webhook_url=HOOK, webhook_secret=SECRET
    )
    async with serve_app(
        create_app([Attached(stack.dispatcher.core, "telegram", adapter)])
    ) as base:
        yield f"{base}/telegram/webhook"


async def _post(url: str, update: object, secret: str | None = SECRET) -> httpx.Response:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    async with httpx.AsyncClient() as client:
        return await client.post(url, json=update, headers=headers)


async def test_start_registers_the_webhook_with_its_secret_and_does_not_poll(
    webhook: str, fake: FakeTelegram
) -> None:
    [call] = fake.calls_to("setWebhook")
    assert call.params["url"] == HOOK
    assert call.params["secret_token"] == SECRET
    assert set(call.params["allowed_updates"]) == {"message", "callback_query"}
    assert fake.calls_to("getUpdates") == []
    assert fake.calls_to("deleteWebhook") == []


async def test_an_update_with_the_secret_is_answered(
    stack: StackLike, webhook: str, fake: FakeTelegram
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    fake.start_private(AGENT)

    response = await _post(webhook, fake.message_update(AGENT, f"/code days {ITEM} 30"))
    [reply] = await fake.wait_for_messages(1)

    assert response.status_code == 200
    assert "<code>" in reply.text


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET[:-1], SECRET + "x", SECRET.upper()])
async def test_a_request_without_the_right_secret_gets_403_and_runs_nothing(
    stack: StackLike,
    webhook: str,
    fake: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
    secret: str | None,
) -> None:
    handled: list[Request] = []

    async def spy(request: Request) -> Reply:
        handled.append(request)
        return Reply(title="ran")

    monkeypatch.setattr(stack.dispatcher, "handle", spy)
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    before = stack.code_events(ITEM)

    response = await _post(webhook, fake.message_update(AGENT, f"/code days {ITEM} 30"), secret)
    # A good request after it shows the bad one was not just slow.
    ok = await _post(webhook, fake.message_update(AGENT, "/whoami"))
    await fake.wait_for_messages(1)

    assert response.status_code == 403
    assert ok.status_code == 200
    assert [r.text for r in handled] == ["/whoami"]
    assert stack.code_events(ITEM) == before


async def test_a_redelivered_webhook_update_runs_once(
    stack: StackLike, webhook: str, fake: FakeTelegram
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    fake.start_private(AGENT)
    before = stack.code_events(ITEM)
    update = fake.message_update(AGENT, f"/code days {ITEM} 30")

    first = await _post(webhook, update)
    second = await _post(webhook, update)  # Telegram retries when an answer was slow or lost
    await _post(webhook, fake.message_update(AGENT, "/whoami"))
    messages = await fake.wait_for_messages(2)

    assert (first.status_code, second.status_code) == (200, 200)
    assert stack.code_events(ITEM) == before + 1
    assert [m.plain.startswith("Who you are") for m in messages] == [False, True]


async def test_a_body_that_is_not_an_update_gets_400(webhook: str) -> None:
    async with httpx.AsyncClient() as client:
        bad_json = await client.post(
            webhook,
            content=b"{not json",
            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
        )
        not_object = await _post(webhook, [1, 2, 3])

    assert bad_json.status_code == 400
    assert not_object.status_code == 400


async def test_buttons_work_through_the_webhook(
    stack: StackLike, webhook: str, fake: FakeTelegram
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    await _post(webhook, fake.message_update(AGENT, "/items SHSA"))
    [page] = await fake.wait_for_messages(1)

    callback = fake.callback_update(AGENT, page, page.button("Next page")["callback_data"])
    response = await _post(webhook, callback)
    await fake.wait_until(lambda: len(fake.answers()) == 1)

    assert response.status_code == 200
    assert page.edits == 1


async def test_polling_mode_refuses_webhook_posts(
    stack: StackLike, fake: FakeTelegram, make_adapter: AdapterFactory
) -> None:
    adapter = await make_adapter(stack.dispatcher, stack.engine, start=False)
    async with serve_app(
        create_app([Attached(stack.dispatcher.core, "telegram", adapter)])
    ) as base:
        response = await _post(f"{base}/telegram/webhook", fake.message_update(AGENT, "/whoami"))

    assert response.status_code == 403


def test_a_webhook_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="TELEGRAM_WEBHOOK_SECRET is required"):
        TelegramConfig(bot_token="1:x", webhook_url=HOOK)
    with pytest.raises(ValueError, match="1-256 characters"):
        TelegramConfig(bot_token="1:x", webhook_url=HOOK, webhook_secret="no spaces allowed")


def test_secrets_stay_out_of_the_config_repr() -> None:
    config = TelegramConfig(bot_token="123:very-secret", webhook_url=HOOK, webhook_secret=SECRET)

    assert "very-secret" not in repr(config)
    assert SECRET not in repr(config)


def test_config_from_settings() -> None:
    settings = Settings(
        _env_file=None,
        telegram_bot_token="9:tok",
        telegram_webhook_url=HOOK,
        telegram_webhook_secret=SECRET,
    )

    config = TelegramConfig.from_settings(settings)

    assert (config.bot_token, config.webhook_url, config.webhook_secret) == ("9:tok", HOOK, SECRET)
    assert config.api_url == "https://api.telegram.org/bot"
    assert not config.polling


def test_config_from_settings_needs_a_token() -> None:
    with pytest.raises(ValueError, match="TELEGRAM_BOT_TOKEN is not set"):
        TelegramConfig.from_settings(Settings(_env_file=None))
