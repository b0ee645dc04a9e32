"""Structured logs: JSON or console lines, a request id from the platform to ERM, no secret ever.

Each test configures logging as ``erm-bot run`` does (``adapters.logs.configure_logging``) into a
string buffer, and puts the process's logging back as it was afterwards.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack, command_form, encode_form, signed_headers
from fakes.telegram import FakeTelegram, User

from adapters.logs import MASK, Redactor, configure_logging, settings_secrets, want_json
from adapters.platform import Attached, Enabled
from adapters.runtime import open_runtime
from adapters.serve import platform_services, platforms
from adapters.settings import Settings
from adapters.slack import PLATFORM as SLACK
from adapters.slack.app import SlackAdapter
from adapters.slack.config import SlackConfig
from adapters.telegram.app import SECRET_HEADER, TelegramAdapter
from adapters.telegram.config import TelegramConfig
from adapters.web import Readiness, create_app
from bot.roles import Role
from bot.storage.grants import GrantStore
from erm.sandbox import ACME, seed_state
from erm.sandbox import create_app as create_sandbox
from erm.sandbox.seed import OPEN_ACP1_OEM_ID
from erm.sandbox.server import serve, serve_app
from erm.secret_box import SecretBox

AGENT = User(6001, "Amina", "amina_k")
_LIBRARIES = ("httpx", "httpcore", "aiosqlite", "asyncio", "telegram.ext", "slack_bolt", "alembic")

Configure = Callable[..., io.StringIO]


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
def configure() -> Iterator[Configure]:
    """Configure logging into a buffer; restore the root logger and library levels afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    levels = {name: logging.getLogger(name).level for name in _LIBRARIES}

    def apply(**options: Any) -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(stream=buffer, **options)
        return buffer

    yield apply
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


# -- formats ------------------------------------------------------------------------------------


def test_json_lines_carry_time_level_logger_and_extra_fields(configure: Configure) -> None:
    buffer = configure(log_format="json")

    logging.getLogger("erm_bot.test").info("issued %s", "a code", extra={"item": "TEST1"})

    [line] = lines(buffer)
    assert line["event"] == "issued a code"
    assert line["level"] == "info"
    assert line["logger"] == "erm_bot.test"
    assert line["item"] == "TEST1"
    assert line["timestamp"].endswith("Z")


def test_console_lines_are_for_people(configure: Configure) -> None:
    buffer = configure(log_format="console")

    logging.getLogger("erm_bot.test").warning("ERM is slow", extra={"ms": 1200})

    text = buffer.getvalue()
    assert "ERM is slow" in text
    assert "warning" in text
    assert "ms=1200" in text
    assert not text.lstrip().startswith("{")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_console_on_a_terminal_and_json_elsewhere() -> None:
    assert want_json("auto", _Terminal()) is False
    assert want_json("auto", io.StringIO()) is True
    assert want_json("json", _Terminal()) is True
    assert want_json("console", io.StringIO()) is False


def test_the_level_setting_hides_debug_lines(configure: Configure) -> None:
    buffer = configure(log_format="json", level=logging.INFO)

    logging.getLogger("erm_bot.test").debug("noise")
    logging.getLogger("httpx").info("HTTP Request: GET http://example.test")

    assert lines(buffer) == []


# -- redaction ----------------------------------------------------------------------------------


def test_configured_secrets_are_redacted_in_messages_fields_and_tracebacks(
    configure: Configure,
) -> None:
    buffer = configure(log_format="json", secrets_=["pa55-word-of-acme", "k3y-one"])
    log = logging.getLogger("erm_bot.test")

    log.warning("signing in with %s", "pa55-word-of-acme", extra={"key": "k3y-one"})
    try:
        raise ValueError("bad key k3y-one")
    except ValueError:
        log.exception("failed")

    text = buffer.getvalue()
    assert "pa55-word-of-acme" not in text
    assert "k3y-one" not in text
    first, second = lines(buffer)
    assert first["event"] == f"signing in with {MASK}"
    assert first["key"] == MASK
    assert f"ValueError: bad key {MASK}" in second["exception"]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("token xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"),
        ("app xapp-1-A0FAKE-0123456789", "xapp-1-A0FAKE-0123456789"),
        ("url /bot424242:AAH-fake-telegram-token-for-tests_0123/getMe", "AAH-fake-telegram"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJl", "eyJzdWIiOiJhY21lIn0"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("postgresql+asyncpg://bot:hunter2-pw@db:5432/erm", "hunter2-pw"),
    ],
)
def test_token_shaped_strings_are_redacted_without_being_configured(text: str, secret: str) -> None:
    redacted = Redactor().redact(text)

    assert secret not in redacted
    assert MASK in redacted


def test_settings_name_every_secret_they_hold() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        erm_bot_secret_keys="key-one-aaaa, key-two-bbbb",
        erm_bot_database_url="postgresql+asyncpg://bot:db-pass-1234@db/erm",
        slack_bot_token="xoxb-slack-1234",
        slack_signing_secret="signing-1234",
        telegram_bot_token="1:telegram-token",
        telegram_webhook_secret="webhook-secret-1",
    )

    found = set(settings_secrets(settings))

    assert {
        "key-one-aaaa",
        "key-two-bbbb",
        "db-pass-1234",
        "xoxb-slack-1234",
        "signing-1234",
        "1:telegram-token",
        "webhook-secret-1",
    } <= found


# -- request ids --------------------------------------------------------------------------------


@pytest.fixture
async def slack_app(stack: Any) -> AsyncIterator[tuple[FakeSlack, httpx.AsyncClient]]:
    await stack.grant("slack:U1", Role.AGENT)
    async with FakeSlack() as fake:
        config = SlackConfig(
            bot_token=fake.bot_token, signing_secret=SIGNING_SECRET, api_url=fake.api_url
        )
        adapter = SlackAdapter(stack.dispatcher, config)
        async with (
            serve_app(create_app([Attached(stack.dispatcher.core, "slack", adapter)])) as url,
            httpx.AsyncClient(base_url=url, timeout=10.0) as http,
        ):
            yield fake, http


async def slack_command(http: httpx.AsyncClient, fake: FakeSlack, command: str, text: str) -> str:
    form = command_form(command, text, response_url=fake.response_url())
    body = encode_form(form)
    response = await http.post("/slack/events", content=body.encode(), headers=signed_headers(body))
    assert response.status_code == 200, response.text
    return form["response_url"]


def erm_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in lines(buffer) if line["logger"] == "erm.client"]


async def test_a_slack_command_logs_one_request_id_down_to_each_erm_call(
    configure: Configure, stack: Any, slack_app: tuple[FakeSlack, httpx.AsyncClient]
) -> None:
    fake, http = slack_app
    buffer = configure(log_format="json", level=logging.DEBUG)

    await slack_command(http, fake, "/history", f"{OPEN_ACP1_OEM_ID} 2")
    await fake.wait_for("response", count=1)
    first = erm_lines(buffer)
    await slack_command(http, fake, "/history", f"{OPEN_ACP1_OEM_ID} 3")
    await fake.wait_for("response", count=2)
    second = erm_lines(buffer)[len(first) :]

    assert first, "the command called ERM"
    assert second, "the command called ERM"
    first_ids = {line.get("request_id") for line in first}
    second_ids = {line.get("request_id") for line in second}
    assert len(first_ids) == 1
    assert len(second_ids) == 1
    assert None not in first_ids | second_ids
    assert first_ids != second_ids  # each request its own id, nothing left over from the last
    assert {line["platform"] for line in first + second} == {"slack"}


async def test_a_telegram_update_logs_its_request_id_and_update_id_down_to_the_erm_call(
    configure: Configure, stack: Any
) -> None:
    await stack.grant(f"telegram:{AGENT.id}", Role.AGENT)
    buffer = configure(log_format="json", level=logging.DEBUG)
    async with FakeTelegram() as fake:
        config = TelegramConfig(
            bot_token=fake.token, api_url=fake.api_url, poll_timeout=1.0, lock_interval=0.2
        )
        adapter = Attached(
            stack.dispatcher.core,
            "telegram",
            TelegramAdapter(stack.dispatcher, config, stack.engine),
        )
        await adapter.start()
        try:
            before = len(fake.messages)
            update = fake.message(AGENT, f"/history {OPEN_ACP1_OEM_ID} 2")
            await fake.wait_until(lambda: len(fake.messages) > before, what="the answer")
        finally:
            await adapter.stop()

    calls = erm_lines(buffer)
    assert calls
    assert {line["telegram_update"] for line in calls} == {update["update_id"]}
    assert {line["platform"] for line in calls} == {"telegram"}
    assert len({line["request_id"] for line in calls}) == 1


# -- no secret, whatever happens --------------------------------------------------------------


async def test_a_full_run_at_debug_logs_no_secret(
    configure: Configure, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack and Telegram (webhook) through the bot's one app, ERM sign-in, codes, refusals and
    a failing send, all logged at DEBUG; then every secret used is looked for in the output."""
    caplog.set_level(logging.DEBUG)
    keys = [SecretBox.generate_key(), SecretBox.generate_key()]
    webhook_secret = "tg-webhook-secret-0123456789"
    async with (
        serve(create_sandbox(seed_state())) as erm_url,
        FakeSlack() as slack,
        FakeTelegram() as telegram,
    ):
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            erm_api_url=erm_url,
            erm_bot_database_url=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
            erm_bot_secret_keys=",".join(keys),
            slack_bot_token=slack.bot_token,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack.api_url,
            telegram_bot_token=telegram.token,
            telegram_api_url=telegram.api_url,
            telegram_webhook_url="https://bot.example.test/telegram/webhook",
            telegram_webhook_secret=webhook_secret,
        )
        buffer = configure(
            log_format="json", level=logging.DEBUG, secrets_=settings_secrets(settings)
        )
        response_urls: list[str] = []
        async with open_runtime(settings) as runtime:
            await runtime.service.add_distributor(ACME.name, ACME.email, ACME.password)
            grants = GrantStore(runtime.engine)
            await grants.grant("slack", "U1", Role.SUPERVISOR, ACME.name, "tests")
            await grants.grant("telegram", str(AGENT.id), Role.AGENT, ACME.name, "tests")
            dispatcher = runtime.dispatcher()
            services = platform_services(platforms(settings), runtime, dispatcher)
            app = create_app(services, readiness=Readiness(runtime.engine, erm_url))
            async with (
                serve_app(app) as url,
                httpx.AsyncClient(base_url=url, timeout=10.0) as http,
            ):
                for text in ("TEST2503000003 30", "TEST2503000003 30 --again"):
                    response_urls.append(await slack_command(http, slack, "/code", f"days {text}"))
                response_urls.append(
                    await slack_command(http, slack, "/history", "TEST2503000003 2")
                )
                await slack.wait_for("response", count=3, within=15)
                bad = encode_form(command_form("/whoami", ""))
                refused = await http.post(
                    "/slack/events", content=bad.encode(), headers=signed_headers(bad, secret="x")
                )
                assert refused.status_code == 401

                telegram.fail("sendMessage", status=500, description="Internal Server Error")
                for text in ("/whoami", "/code days TEST2503000004 10", "/history TEST2503000004"):
                    update = telegram.message_update(AGENT, text)
                    posted = await http.post(
                        "/telegram/webhook", json=update, headers={SECRET_HEADER: webhook_secret}
                    )
                    assert posted.status_code == 200
                wrong = await http.post(
                    "/telegram/webhook",
                    json=telegram.message_update(AGENT, "/whoami"),
                    headers={SECRET_HEADER: "wrong"},
                )
                assert wrong.status_code == 403
                await telegram.wait_until(lambda: len(telegram.messages) >= 2, within=15)
                await asyncio.sleep(0.3)  # let the last update finish logging
                assert (await http.get("/readyz")).status_code == 200
                assert (await http.get("/metrics")).status_code == 200
            stored = await runtime.vault.load_token(ACME.name)
            assert stored is not None
            access_token = stored.access_token

    secrets = {
        "Slack bot token": slack.bot_token,
        "Slack signing secret": SIGNING_SECRET,
        "Telegram bot token": telegram.token,
        "Telegram webhook secret": webhook_secret,
        "ERM password": ACME.password,
        "ERM access token": access_token,
        "secret key 1": keys[0],
        "secret key 2": keys[1],
    }
    secrets.update({f"Slack response_url {i}": u for i, u in enumerate(response_urls)})
    written = buffer.getvalue()
    assert len(written.splitlines()) > 100, "DEBUG logging captured the run"
    assert '"erm call"' in written
    for name, secret in secrets.items():
        assert secret not in written, f"{name} in the log output"
    # Nothing of ours even produces a record with a secret; PTB logs setWebhook's parameters
    # (the webhook secret) at DEBUG, which only the redactor keeps out of the output above.
    for name, secret in secrets.items():
        if name != "Telegram webhook secret":
            assert secret not in caplog.text, f"{name} in a log record"


async def test_slack_socket_mode_commands_get_a_request_id_each(
    configure: Configure, stack: Any
) -> None:
    await stack.grant("slack:U1", Role.AGENT)
    buffer = configure(log_format="json", level=logging.DEBUG)
    async with FakeSlack() as fake:
        config = SlackConfig(
            bot_token=fake.bot_token, app_token=fake.app_token, api_url=fake.api_url
        )
        enabled = [Enabled(SLACK, config)]
        [adapter] = platform_services(enabled, stack.runtime, stack.dispatcher)
        async with serve_app(create_app([adapter])):  # the lifespan connects Socket Mode
            seen: list[set[str]] = []
            for count in (1, 2):
                before = len(erm_lines(buffer))
                form = command_form("/history", f"{OPEN_ACP1_OEM_ID} {count}")
                form["response_url"] = fake.response_url()
                await fake.push("slash_commands", form)
                await fake.wait_for("response", count=count)
                seen.append({line["request_id"] for line in erm_lines(buffer)[before:]})

    assert [len(ids) for ids in seen] == [1, 1]
    assert seen[0] != seen[1]
