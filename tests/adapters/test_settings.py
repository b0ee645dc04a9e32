"""Settings: every one documented in .env.example, secrets hidden, bad values refused clearly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_every_setting_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^([A-Z_]+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    assert {name.upper() for name in Settings.model_fields} == documented


def test_secret_keys_are_hidden_from_repr() -> None:
    settings = Settings(_env_file=None, erm_bot_secret_keys="k-one,k-two")  # type: ignore[call-arg]
    assert settings.secret_keys == ["k-one", "k-two"]
    assert "k-one" not in repr(settings)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("erm_api_url", "ftp://erm"),
        ("erm_bot_admins", "slack-U123"),
        ("erm_bot_codes_per_user_hour", 0),
    ],
)
def test_bad_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **{field: value})  # type: ignore[arg-type]


def test_bootstrap_admins_are_parsed() -> None:
    settings = Settings(_env_file=None, erm_bot_admins=" slack:U1 , Telegram:42 ")  # type: ignore[call-arg]
    assert settings.admins == frozenset({"slack:U1", "telegram:42"})
