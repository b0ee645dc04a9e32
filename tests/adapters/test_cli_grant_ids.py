"""``erm-bot users grant`` refuses ids that cannot exist on their platform (issue 14, item 12)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.cli import main


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no developer .env is read
    for name in list(os.environ):
        if name.startswith(("ERM_", "SLACK_", "TELEGRAM_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ERM_BOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    return tmp_path


@pytest.mark.parametrize(
    ("user", "form"),
    [
        ("telegram:abc", "Telegram user ids are positive whole numbers"),
        ("slack:u0123", "Slack user ids are U or W"),
    ],
)
def test_users_grant_refuses_an_impossible_id(
    cli_env: Path, capsys: pytest.CaptureFixture[str], user: str, form: str
) -> None:
    assert main(["users", "grant", user, "agent", "acme"]) == 1
    err = capsys.readouterr().err
    assert f"erm-bot: {user} is not a possible user id: {form}" in err
    assert "Traceback" not in err
    assert main(["users", "list"]) == 0
    assert "no grants yet" in capsys.readouterr().out


def test_users_grant_of_a_possible_id_reaches_the_store(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No distributor is configured here: the store's refusal shows the id check let it through.
    assert main(["users", "grant", "telegram:42", "agent", "acme"]) == 1
    err = capsys.readouterr().err
    assert "no distributor" in err
    assert "possible user id" not in err
