"""Grants refuse ids that cannot exist on their platform (issue 14, item 12).

The rules live with the adapters (``adapters.platform_ids``); the core gets them through
``Permissions`` and names no platform itself.
"""

from __future__ import annotations

import pytest
from bot_harness import Bot

from adapters.platform_ids import USER_IDS
from bot.messages import Tone
from bot.roles import Role
from erm.sandbox import ACME


@pytest.fixture
def checked(bot: Bot) -> Bot:
    """The bot with the platforms' id rules, as ``adapters.runtime`` wires it."""
    bot.core.permissions.user_ids = USER_IDS
    return bot


@pytest.mark.parametrize(
    ("user", "form"),
    [
        ("telegram:abc", "Telegram user ids are positive whole numbers, e.g. telegram:123456789"),
        ("telegram:-100123", "Telegram user ids are positive whole numbers"),
        ("telegram:0", "Telegram user ids are positive whole numbers"),
        ("telegram:٤٢", "Telegram user ids are positive whole numbers"),
        ("slack:u0123abcd", "Slack user ids are U or W, then capital letters and digits"),
        ("slack:C0123ABCD", "Slack user ids are U or W"),
        ("slack:U", "Slack user ids are U or W"),
        ("console:a;b", "console users are one word"),
    ],
)
async def test_grant_to_an_impossible_id_is_refused(checked: Bot, user: str, form: str) -> None:
    platform, user_id = user.split(":", 1)
    reply = await checked.say("admin", f"/grant {user} agent")
    assert reply.tone is Tone.WARNING
    assert reply.text().startswith(f"{user} is not a possible user id: {form}")
    assert reply.text().endswith("They can see theirs with /whoami.")
    assert await checked.core.grants.grants_of(platform, user_id) == {}


@pytest.mark.parametrize("user", ["telegram:123456789", "slack:U0123ABCD", "slack:W0123ABCD"])
async def test_grant_to_a_possible_id_works(checked: Bot, user: str) -> None:
    platform, user_id = user.split(":", 1)
    reply = await checked.say("admin", f"/grant {user} agent")
    assert reply.tone is Tone.OK, reply.text()
    assert await checked.core.grants.grants_of(platform, user_id) == {ACME.name: Role.AGENT}


async def test_an_unknown_platform_is_named(checked: Bot) -> None:
    reply = await checked.say("admin", "/grant fax:42 agent")
    assert (
        reply.title
        == "fax:42: unknown platform 'fax' (platforms: console, slack, telegram, whatsapp)."
    )


async def test_an_impossible_id_granted_before_the_check_can_be_revoked(checked: Bot) -> None:
    await checked.core.grants.grant("telegram", "abc", Role.AGENT, ACME.name, "old release")
    reply = await checked.say("admin", "/revoke telegram:abc")
    assert reply.title == "telegram:abc no longer has a role at acme."
    assert await checked.core.grants.grants_of("telegram", "abc") == {}


def test_the_runtime_hands_the_rules_to_the_core() -> None:
    from adapters import runtime

    assert runtime.USER_IDS is USER_IDS
