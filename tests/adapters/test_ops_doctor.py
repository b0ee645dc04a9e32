"""``erm-bot doctor``: one line per check, what to fix when one fails, exit 1 on any failure.

Against the sandbox ERM, the fake Slack and the fake Telegram, all on 127.0.0.1, and the stack's
SQLite database (acme added, its credentials encrypted with the stack's key).
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes.slack import SIGNING_SECRET, FakeSlack
from fakes.telegram import FakeTelegram

from adapters.doctor import run_doctor
from adapters.settings import Settings
from erm import operations as ops
from erm.db import create_engine
from erm.sandbox import ACME, create_app
from erm.sandbox.schema import SCHEMA_PATH
from erm.sandbox.server import serve
from erm.secret_box import SecretBox
from erm.vault import TokenVault

ERM_BOT = Path(sys.executable).parent / "erm-bot"


@pytest.fixture(autouse=True)
def _ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


class WebhookTrouble(FakeTelegram):
    """Telegram reporting that it could not deliver to the configured webhook."""

    async def _api_getWebhookInfo(self, params: dict[str, Any], via: str) -> Any:
        info = await super()._api_getWebhookInfo(params, via)
        info.update(last_error_date=1_760_000_000, last_error_message="Connection refused")
        return info


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


def deployment(stack: Any, slack: FakeSlack, telegram: FakeTelegram, **changes: Any) -> Settings:
    """The stack's settings with both platforms configured, plus ``changes``."""
    values: dict[str, Any] = {
        "erm_api_url": stack.settings.erm_api_url,
        "erm_bot_database_url": stack.settings.erm_bot_database_url,
        "erm_bot_secret_keys": stack.settings.erm_bot_secret_keys,
        "slack_bot_token": slack.bot_token,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": slack.api_url,
        "telegram_bot_token": telegram.token,
        "telegram_api_url": telegram.api_url,
    }
    values.update(changes)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def erm_only(stack: Any, **changes: Any) -> Settings:
    """The stack's settings with no chat platform: enough for ``doctor --erm``."""
    values: dict[str, Any] = {
        "erm_api_url": stack.settings.erm_api_url,
        "erm_bot_database_url": stack.settings.erm_bot_database_url,
        "erm_bot_secret_keys": stack.settings.erm_bot_secret_keys,
    }
    values.update(changes)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def doctor(settings: Settings, *, erm: bool = False) -> tuple[int, list[str]]:
    out = io.StringIO()
    status = await run_doctor(settings, out=out, erm_only=erm)
    return status, out.getvalue().splitlines()


def checks(lines: list[str]) -> list[str]:
    return [text[6:].split(":", 1)[0] for text in lines[:-1]]


async def erm_bot(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    """Run the ``erm-bot`` command; its exit status and everything it printed."""
    process = await asyncio.create_subprocess_exec(
        str(ERM_BOT),
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


def histories(stack: Any) -> dict[str, int]:
    return {i.id: len(i.code_generator.events) for i in stack.sandbox.items.values()}


def line(lines: list[str], check: str) -> str:
    found = [text for text in lines if text[6:].startswith(f"{check}:")]
    assert len(found) == 1, (check, lines)
    return found[0]


async def test_a_healthy_deployment_passes_with_one_line_per_check(
    stack: Any, slack: FakeSlack, telegram: FakeTelegram
) -> None:
    status, lines = await doctor(deployment(stack, slack, telegram))

    assert status == 0, lines
    assert checks(lines) == [
        "configuration",
        "encryption keys",
        "erm url",
        "database",
        "migrations",
        "stored credentials",
        "erm",
        "erm sign-in of acme",
        "erm contract of acme",
        "slack auth.test",
        "telegram getMe",
        "telegram webhook",
        "whatsapp",
    ]
    assert all(text.startswith("ok ") for text in lines[:-2]), lines
    assert line(lines, "whatsapp").startswith("skip "), lines  # not configured here
    assert line(lines, "configuration").endswith("Slack over HTTP, Telegram by long polling")
    assert line(lines, "telegram getMe").endswith("bot @erm_test_bot")
    assert lines[-1] == "doctor: every check passed"


async def test_a_refused_slack_token_is_named_with_the_fix(
    stack: Any, slack: FakeSlack, telegram: FakeTelegram
) -> None:
    wrong = "xoxb-not-the-real-token-0000"
    status, lines = await doctor(deployment(stack, slack, telegram, slack_bot_token=wrong))

    assert status == 1
    failed = line(lines, "slack auth.test")
    assert failed.startswith("FAIL ")
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in failed
    assert "OAuth & Permissions" in failed
    assert wrong not in "\n".join(lines)


async def test_a_refused_telegram_token_is_named_with_the_fix(
    stack: Any, slack: FakeSlack, telegram: FakeTelegram
) -> None:
    wrong = "999999:AAH-not-the-real-telegram-token-0000"
    status, lines = await doctor(deployment(stack, slack, telegram, telegram_bot_token=wrong))

    assert status == 1
    failed = line(lines, "telegram getMe")
    assert failed.startswith("FAIL ")
    assert "@BotFather" in failed
    assert "AAH-not-the-real" not in "\n".join(lines)


async def test_credentials_the_keys_cannot_decrypt_are_named_and_not_signed_in(
    stack: Any, slack: FakeSlack, telegram: FakeTelegram
) -> None:
    other_key = SecretBox.generate_key()
    settings = deployment(stack, slack, telegram, erm_bot_secret_keys=other_key)

    status, lines = await doctor(settings)

    assert status == 1
    failed = line(lines, "stored credentials of acme")
    assert failed.startswith("FAIL ")
    assert "not in ERM_BOT_SECRET_KEYS" in failed
    assert "--replace" in failed
    assert not [text for text in lines if "sign-in of acme" in text]
    assert other_key not in "\n".join(lines)


async def test_a_distributor_whose_erm_password_changed_fails_its_sign_in(
    stack: Any, slack: FakeSlack, telegram: FakeTelegram
) -> None:
    vault = TokenVault(stack.engine, SecretBox(stack.settings.secret_keys))
    await vault.add_distributor(ACME.name, ACME.email, "an-outdated-password", replace=True)

    status, lines = await doctor(deployment(stack, slack, telegram))

    assert status == 1
    failed = line(lines, "erm sign-in of acme")
    assert failed.startswith("FAIL ")
    assert "ERM refused the sign-in" in failed
    assert "erm-bot distributor add acme --email EMAIL --replace" in failed
    assert "an-outdated-password" not in "\n".join(lines)


async def test_an_unmigrated_database_says_to_run_db_upgrade(
    stack: Any, slack: FakeSlack, telegram: FakeTelegram, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    engine = create_engine(url)
    async with engine.connect():
        pass  # the file exists, with no table in it
    await engine.dispose()

    status, lines = await doctor(deployment(stack, slack, telegram, erm_bot_database_url=url))

    assert status == 1
    assert line(lines, "database").startswith("ok ")
    failed = line(lines, "migrations")
    assert failed.startswith("FAIL ")
    assert "erm-bot db upgrade" in failed


async def test_a_missing_sqlite_file_is_not_created(
    stack: Any, slack: FakeSlack, telegram: FakeTelegram, tmp_path: Path
) -> None:
    path = tmp_path / "nowhere.db"
    settings = deployment(
        stack, slack, telegram, erm_bot_database_url=f"sqlite+aiosqlite:///{path}"
    )

    status, lines = await doctor(settings)

    assert status == 1
    assert "no SQLite file" in line(lines, "database")
    assert not path.exists()


async def test_an_unreachable_erm_fails_and_skips_the_sign_ins(
    stack: Any, slack: FakeSlack, telegram: FakeTelegram
) -> None:
    settings = deployment(stack, slack, telegram, erm_api_url="http://127.0.0.1:9/graphql")

    status, lines = await doctor(settings)

    assert status == 1
    failed = line(lines, "erm")
    assert failed.startswith("FAIL ")
    assert "ERM_API_URL" in failed
    assert line(lines, "erm sign-in of acme").startswith("skip ")
    assert line(lines, "erm contract of acme").startswith("skip ")


async def test_doctor_erm_checks_only_erm_and_names_the_host(stack: Any) -> None:
    status, lines = await doctor(erm_only(stack), erm=True)

    assert status == 0, lines
    assert checks(lines) == [
        "encryption keys",
        "erm url",
        "database",
        "migrations",
        "stored credentials",
        "erm",
        "erm sign-in of acme",
        "erm contract of acme",
    ]
    host = stack.sandbox_url.split("//", 1)[1].split("/", 1)[0]
    assert line(lines, "erm contract of acme") == (
        f"ok    erm contract of acme: ERM at {host} fits all {len(ops.ALL)} of erm-bot's "
        "documents (its schema read by introspection)"
    )
    assert lines[-1] == "doctor: every check passed"


async def test_doctor_erm_probes_without_a_code_when_introspection_is_off(stack: Any) -> None:
    stack.sandbox.faults.introspection = False
    before = histories(stack)

    status, lines = await doctor(erm_only(stack), erm=True)

    assert status == 0, lines
    contract = line(lines, "erm contract of acme")
    assert contract.startswith("ok    erm contract of acme: ERM at 127.0.0.1:")
    assert "refuses introspection: 7 read-only operation(s) answered" in contract
    assert histories(stack) == before


async def test_doctor_erm_names_each_mismatch_of_an_altered_schema(stack: Any) -> None:
    sdl = SCHEMA_PATH.read_text(encoding="utf-8")
    for old, new in (
        ("getSpecificItem(itemId: ID!)", "getSpecificItem(id: ID!)"),
        ("clientId: String!, first: Int", "clientId: ID!, first: Int"),
    ):
        assert old in sdl
        sdl = sdl.replace(old, new)

    async with serve(create_app(stack.sandbox, schema_sdl=sdl)) as url:
        status, lines = await doctor(erm_only(stack, erm_api_url=url), erm=True)

    assert status == 1
    summary = line(lines, "erm contract of acme")
    assert summary.startswith("FAIL  erm contract of acme: ERM at 127.0.0.1:")
    assert "2 of erm-bot's 12 operations do not fit" in summary
    assert "-> check that ERM_API_URL names the ERM erm-bot is meant for" in summary
    assert [text for text in lines if text.startswith("FAIL  erm contract of acme, ")] == [
        "FAIL  erm contract of acme, GetItemFleetsForClient: "
        "Query.getItemFleetsForClient(clientId): ERM expects ID!, the document declares "
        "$clientId: String!",
        "FAIL  erm contract of acme, GetSpecificItem: Query.getSpecificItem(itemId): "
        "ERM has no argument itemId (its arguments: id: ID!)",
        "FAIL  erm contract of acme, GetSpecificItem: Query.getSpecificItem(id): "
        "ERM requires id: ID!, which the document does not send",
    ]


async def test_a_webhook_left_set_while_polling_is_a_warning_only(
    stack: Any, slack: FakeSlack, telegram: FakeTelegram
) -> None:
    telegram.webhook_url = "https://old.example.test/telegram/webhook"

    status, lines = await doctor(deployment(stack, slack, telegram))

    assert status == 0
    warned = line(lines, "telegram webhook")
    assert warned.startswith("warn ")
    assert "removes it when polling starts" in warned
    assert lines[-1] == "doctor: every check passed, 1 warning(s)"


async def test_failed_webhook_deliveries_are_reported(stack: Any, slack: FakeSlack) -> None:
    url = "https://bot.example.test/telegram/webhook"
    async with WebhookTrouble() as telegram:
        telegram.webhook_url = url
        settings = deployment(
            stack,
            slack,
            telegram,
            telegram_webhook_url=url,
            telegram_webhook_secret="tg-webhook-secret-42",
        )
        status, lines = await doctor(settings)

    assert status == 1
    failed = line(lines, "telegram webhook")
    assert failed.startswith("FAIL ")
    assert "Connection refused" in failed
    assert "/telegram/webhook" in failed


async def test_no_chat_platform_is_a_warning_naming_what_to_set(stack: Any) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        erm_api_url=stack.settings.erm_api_url,
        erm_bot_database_url=stack.settings.erm_bot_database_url,
        erm_bot_secret_keys=stack.settings.erm_bot_secret_keys,
    )

    status, lines = await doctor(settings)

    assert status == 0  # a console-only setup works: only `erm-bot run` needs a platform
    warned = line(lines, "configuration")
    assert warned.startswith("warn ")
    assert "set SLACK_BOT_TOKEN and/or TELEGRAM_BOT_TOKEN" in warned
    assert "erm-bot console" in warned


async def test_erm_bot_doctor_runs_as_a_command_and_prints_no_secret(
    stack: Any, slack: FakeSlack, telegram: FakeTelegram, tmp_path: Path
) -> None:
    settings = deployment(stack, slack, telegram, slack_bot_token="xoxb-wrong-token-1234")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERM_", "SLACK_", "TELEGRAM_"))}
    env.update(
        {
            "ERM_API_URL": settings.erm_api_url,
            "ERM_BOT_DATABASE_URL": settings.database_url,
            "ERM_BOT_SECRET_KEYS": ",".join(settings.secret_keys),
            "SLACK_BOT_TOKEN": "xoxb-wrong-token-1234",
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "TELEGRAM_BOT_TOKEN": telegram.token,
            "TELEGRAM_API_URL": telegram.api_url,
        }
    )
    returncode, output = await erm_bot(env, tmp_path, "doctor")

    assert returncode == 1, output
    assert "FAIL  slack auth.test" in output
    assert "ok    telegram getMe" in output
    for secret in ("xoxb-wrong-token-1234", SIGNING_SECRET, telegram.token, ACME.password):
        assert secret not in output
    for key in settings.secret_keys:
        assert key not in output


async def test_erm_bot_doctor_erm_runs_as_a_command_without_chat_platforms(
    stack: Any, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERM_", "SLACK_", "TELEGRAM_"))}
    env.update(
        {
            "ERM_API_URL": stack.settings.erm_api_url,
            "ERM_BOT_DATABASE_URL": stack.settings.database_url,
            "ERM_BOT_SECRET_KEYS": ",".join(stack.settings.secret_keys),
        }
    )
    returncode, output = await erm_bot(env, tmp_path, "doctor", "--erm")

    assert returncode == 0, output
    assert "ok    erm contract of acme: ERM at 127.0.0.1:" in output
    assert "slack" not in output
    assert "telegram" not in output
    assert ACME.password not in output
