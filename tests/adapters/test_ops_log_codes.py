"""No unlock code and no invite code in any log line, at any level, from any library.

Slack and Telegram (webhook) run through the bot's one app at DEBUG: codes are issued on both,
shown again, listed in history, sent through the Web API fallback, and an invite is made on Slack
and redeemed on Telegram with ``/start CODE``. Every code ERM made (digits, keypad form, 3-digit
groups, hex) and the invite code are then looked for in everything written.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack, command_form, encode_form, signed_headers
from fakes.telegram import FakeTelegram, User

from adapters.logs import INVITE_MASK, Redactor, configure_logging, settings_secrets
from adapters.runtime import open_runtime
from adapters.serve import platform_services, platforms
from adapters.settings import Settings
from adapters.telegram.app import SECRET_HEADER
from adapters.web import create_app
from bot.roles import Role
from bot.storage.grants import GrantStore
from erm.models import keypad_format
from erm.sandbox import ACME, seed_state
from erm.sandbox import create_app as create_sandbox
from erm.sandbox.seed import OPEN_ACP1_OEM_ID, OPEN_OPENTOKEN_OEM_ID
from erm.sandbox.server import serve, serve_app
from erm.sandbox.state import SandboxState
from erm.secret_box import SecretBox

AGENT = User(6001, "Amina", "amina_k")
NEWCOMER = User(6002, "Baraka", "baraka_m")
WEBHOOK_SECRET = "tg-webhook-secret-0123456789"
ITEMS = (OPEN_ACP1_OEM_ID, OPEN_OPENTOKEN_OEM_ID)
LIBRARIES = ("telegram", "telegram.ext", "slack_sdk", "slack_bolt", "httpx", "httpcore", "asyncio")


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    levels = {name: logging.getLogger(name).level for name in (*LIBRARIES, "aiosqlite", "alembic")}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def code_forms(sandbox: SandboxState) -> dict[str, str]:
    """Every code ERM made for the test items, in every form a log could carry it."""
    found: dict[str, str] = {}
    for oem in ITEMS:
        for event in sandbox.item_by_oem_id(oem).code_generator.events:
            digits = re.sub(r"\D", "", event.code_dec_string)
            if not digits:
                continue
            keypad = keypad_format(digits)
            found[digits] = digits
            found[keypad] = keypad
            found[keypad.strip("*#")] = keypad.strip("*#")
            found[keypad.strip("*#").replace(" ", "-")] = keypad.strip("*#").replace(" ", "-")
            if event.code_hex_string.strip("-"):
                found[event.code_hex_string] = event.code_hex_string
    return found


async def run_both_platforms(
    tmp_path: Path, *, libraries_at_debug: bool
) -> tuple[str, dict[str, str]]:
    """The scenario; returns everything logged and the values that must not be in it."""
    keys = [SecretBox.generate_key()]
    sandbox = seed_state()
    async with (
        serve(create_sandbox(sandbox)) as erm_url,
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
            telegram_webhook_secret=WEBHOOK_SECRET,
        )
        buffer = io.StringIO()
        configure_logging(
            stream=buffer,
            log_format="json",
            level=logging.DEBUG,
            secrets_=settings_secrets(settings),
        )
        if libraries_at_debug:  # as an operator debugging a platform might turn them up
            for name in LIBRARIES:
                logging.getLogger(name).setLevel(logging.DEBUG)
        telegram.start_private(AGENT)
        telegram.start_private(NEWCOMER)
        async with open_runtime(settings) as runtime:
            await runtime.service.add_distributor(ACME.name, ACME.email, ACME.password)
            grants = GrantStore(runtime.engine)
            await grants.grant("slack", "U1", Role.ADMIN, ACME.name, "tests")
            await grants.grant("telegram", str(AGENT.id), Role.AGENT, ACME.name, "tests")
            dispatcher = runtime.dispatcher()
            services = platform_services(platforms(settings), runtime, dispatcher)
            async with (
                serve_app(create_app(services)) as url,
                httpx.AsyncClient(base_url=url, timeout=10.0) as http,
            ):

                async def on_slack(command: str, text: str) -> None:
                    form = command_form(command, text, response_url=slack.response_url())
                    body = encode_form(form)
                    answer = await http.post(
                        "/slack/events", content=body.encode(), headers=signed_headers(body)
                    )
                    assert answer.status_code == 200, answer.text

                async def on_telegram(user: User, text: str) -> None:
                    before = len(telegram.messages)
                    posted = await http.post(
                        "/telegram/webhook",
                        json=telegram.message_update(user, text),
                        headers={SECRET_HEADER: WEBHOOK_SECRET},
                    )
                    assert posted.status_code == 200
                    await telegram.wait_until(
                        lambda: len(telegram.messages) > before, within=15, what=text
                    )

                # Slack: answers on the response_url (not logged by anyone) ...
                await on_slack("/code", f"days {OPEN_ACP1_OEM_ID} 30")
                await on_slack("/erm", "invite viewer acme")
                await slack.wait_for("response", count=2, within=15)
                # ... and through the Web API (slack_sdk logs its bodies at DEBUG).
                slack.fail("response", status=404, error="expired_url", retry_after=None, times=3)
                await on_slack("/code", f"days {OPEN_OPENTOKEN_OEM_ID} 7")
                await on_slack("/resend", OPEN_ACP1_OEM_ID)
                await on_slack("/history", f"{OPEN_OPENTOKEN_OEM_ID} 5")
                await slack.wait_for("chat.postEphemeral", count=3, within=15)
                invite = next(
                    match.group(1)
                    for call in slack.calls_to("response")
                    if (match := re.search(r"start ([A-Z0-9]{10})", call.dump()))
                )
                # Telegram: codes, history, resend, and the invite redeemed.
                await on_telegram(AGENT, f"/code days {OPEN_OPENTOKEN_OEM_ID} 3 --again")
                await on_telegram(AGENT, f"/code days {OPEN_ACP1_OEM_ID} 2 --again")
                await on_telegram(AGENT, f"/history {OPEN_ACP1_OEM_ID} 5")
                await on_telegram(AGENT, f"/resend {OPEN_OPENTOKEN_OEM_ID}")
                await on_telegram(NEWCOMER, f"/start {invite}")
                await asyncio.sleep(0.3)  # let the last update finish logging
            assert await grants.grants_of("telegram", str(NEWCOMER.id)) == {"acme": Role.VIEWER}

    forbidden = code_forms(sandbox)
    forbidden["invite code"] = invite
    forbidden["invite code, lower case"] = invite.lower()
    return buffer.getvalue(), forbidden


@pytest.mark.usefixtures("restore_logging")
async def test_a_run_at_debug_logs_no_code_and_no_invite(tmp_path: Path) -> None:
    written, forbidden = await run_both_platforms(tmp_path, libraries_at_debug=False)

    assert len(written.splitlines()) > 50, "DEBUG logging captured the run"
    assert '"erm call"' in written
    for name, value in forbidden.items():
        assert value not in written, f"{name} in the log output"


@pytest.mark.usefixtures("restore_logging")
async def test_message_bodies_logged_by_the_chat_libraries_carry_no_code(tmp_path: Path) -> None:
    """Even with python-telegram-bot, slack_sdk and httpx turned up to DEBUG by hand, the code
    redaction keeps every code out: their bodies are written, the codes in them are not."""
    written, forbidden = await run_both_platforms(tmp_path, libraries_at_debug=True)

    assert "Bot API endpoint" in written  # python-telegram-bot logged the bodies it sent
    assert "chat.postEphemeral" in written  # slack_sdk logged the requests it made
    assert INVITE_MASK in written
    for name, value in forbidden.items():
        assert value not in written, f"{name} in the log output"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("sent *024 413 975 593 119 504 641# to the client", "024 413 975 593 119 504"),
        ("'text': '<b>Code</b>\\n<code>*123 456 789#</code>'", "123 456"),
        ('{"text": "```*024 413 975 593 119 504 641#```"}', "024 413 975 593 119 504"),
        ("digits 024413975593119504641.", "024413975593119504"),
        ("grouped 024 413 975 593 119 504 641", "024 413 975 593 119 504"),
        ("dashed 123-456-789", "123-456"),
        ("token 123456789 issued", "123456"),
        ("hex 3FA2B4C5D6E7F801", "3FA2B4C5D6E7F801"),
        ("Calling `sendMessage` with `{'text': '/start K7QX2MBD9R'}`", "K7QX2MBD9R"),
        ("/start@erm_test_bot k7qx2mbd9r", "k7qx2mbd9r"),
        ("Or send the bot: /erm start KQXMBDRABC", "KQXMBDRABC"),
        ("https://t.me/erm_test_bot?start=K7QX2MBD9R", "K7QX2MBD9R"),
        ("Invite code: <b>KQXMBDRABC</b>", "KQXMBDRABC"),
        ("{'text': 'Invite: viewer\\nK7QX2MBD9R'}", "K7QX2MBD9R"),
    ],
)
def test_code_shaped_values_are_redacted(text: str, code: str) -> None:
    redacted = Redactor().redact(text)

    assert code not in redacted, redacted
    assert code[-3:] not in redacted or "<code …" in redacted  # at most the last 3 digits stay


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-01 10:22:33 and 2026-12-01T10:22:33.123456Z",
        "listening on 127.0.0.1:8080, port 5432, 123456 rows in 1200 ms",
        "slack ts 1712345678.123456",
        "item TEST2503000017, ERM id 64ba2e1eaa6c7f107d7a8918, request 9f86d081884c7d65",
        "chat -1001234567890 user telegram:1234567890 and telegram:2345678923",
        "DEPRECATED: STACKTRACE follows",
    ],
)
def test_ordinary_numbers_and_ids_are_left_alone(text: str) -> None:
    assert Redactor().redact(text) == text


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.usefixtures("restore_logging")
def test_the_record_itself_is_rewritten_for_handlers_after_ours() -> None:
    buffer = io.StringIO()
    configure_logging(stream=buffer, log_format="json", level=logging.DEBUG)
    kept = _Keep()
    logging.getLogger().addHandler(kept)

    logging.getLogger("telegram.ext.test").info("sent %s to %s", "*024 413 975 593 119 504 641#", 7)

    assert "413 975" not in buffer.getvalue()
    assert kept.messages == ["sent <code …641> to 7"]
