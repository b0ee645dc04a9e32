"""WhatsApp's settings: all four or none, secrets hidden, the platform's id rule."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.platform import ConfigurationError
from adapters.platforms import PLATFORMS
from adapters.settings import Settings
from adapters.whatsapp import PLATFORM
from adapters.whatsapp.config import WhatsAppConfig

FULL = {
    "whatsapp_token": "EAAG-token-value",
    "whatsapp_phone_number_id": "109876543210987",
    "whatsapp_app_secret": "app-secret-value",
    "whatsapp_verify_token": "verify-token-value",
}


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_whatsapp_is_off_without_any_of_its_settings() -> None:
    assert PLATFORM.config(settings()) is None


def test_all_four_settings_turn_it_on() -> None:
    config = PLATFORM.config(
        settings(
            **FULL, whatsapp_api_url="http://127.0.0.1:9/", whatsapp_business_number="+15550100001"
        )
    )
    assert isinstance(config, WhatsAppConfig)
    assert config.token == "EAAG-token-value"
    assert config.api_url == "http://127.0.0.1:9"
    assert config.business_number == "15550100001"
    assert config.templates.code_ready is None


@pytest.mark.parametrize("left_out", sorted(FULL))
def test_a_partial_set_names_what_is_missing(left_out: str) -> None:
    values = {k: v for k, v in FULL.items() if k != left_out}
    with pytest.raises(ConfigurationError, match=left_out.upper()):
        PLATFORM.config(settings(**values))


def test_secrets_never_show_in_repr() -> None:
    text = repr(settings(**FULL)) + repr(PLATFORM.config(settings(**FULL)))
    for name in ("whatsapp_token", "whatsapp_app_secret", "whatsapp_verify_token"):
        assert FULL[name] not in text


@pytest.mark.parametrize(
    ("field", "value"),
    [("whatsapp_phone_number_id", "+1 555 0100"), ("whatsapp_business_number", "call me")],
)
def test_bad_values_are_refused_clearly(field: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=field.upper()):
        PLATFORM.config(settings(**{**FULL, field: value}))


def test_the_api_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="WHATSAPP_API_URL"):
        settings(whatsapp_api_url="graph.facebook.com")


def test_templates_by_kind_of_message() -> None:
    config = PLATFORM.config(
        settings(**FULL, whatsapp_template_code_ready="code_ready", whatsapp_template_decision="d")
    )
    assert config is not None
    assert config.templates.for_codes(True) == "code_ready"
    assert config.templates.for_codes(False) == "d"


def test_it_is_registered_with_phone_number_ids() -> None:
    assert PLATFORM in PLATFORMS
    assert PLATFORM.user_ids.accepts("254700123456")
    assert not PLATFORM.user_ids.accepts("+254700123456")
    assert not PLATFORM.user_ids.accepts("0700123456")
    assert not PLATFORM.user_ids.accepts("12345")
