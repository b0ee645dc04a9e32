"""Requests from a Slack workspace the bot does not serve are refused before any work (issue 14,
item 11): a signed request proves it came from Slack, not from our workspace.

U1 is an agent at acme in the fake's workspace T0FAKE (see conftest).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fakes.slack import SIGNING_SECRET, TEAM_ID, FakeSlack, command_form, encode_form, shown
from slack_rig import Sent, SlackRig

from adapters.platform import Attached
from adapters.settings import Settings
from adapters.slack.app import SlackAdapter
from adapters.slack.config import SlackConfig, SlackConfigError
from adapters.slack.workspace import REFUSAL, Workspaces
from adapters.web import create_app
from bot import metrics
from bot.roles import Role
from erm.sandbox import OPEN_ACP1_OEM_ID
from erm.sandbox.server import serve_app

ITEM = OPEN_ACP1_OEM_ID
OTHER = "T0OTHER"


def refused() -> float:
    return metrics.value("erm_bot_foreign_requests_total", platform="slack")


async def _assert_ran_nothing(rig: SlackRig, stack: Any, sent: Sent, events: int) -> None:
    """The refused request spawned no work, and a request of ours sent after it is answered
    while the refused one never is."""
    assert rig.adapter._tasks == set()  # the listener never ran: nothing acked, nothing spawned
    ours = await rig.ask("/erm", "whoami", user_id="U1")
    assert "Who you are to erm-bot" in shown(ours)
    answered = [c for c in rig.fake.calls if c.method == "response"]
    assert [c for c in answered if c.path == sent.response_path] == []
    assert stack.code_events(ITEM) == events
    records = await stack.dispatcher.core.audit.recent(user=("slack", "U1"))
    assert [r.command for r in records] == ["whoami"]


async def test_a_command_from_another_workspace_is_refused(slack: SlackRig, stack: Any) -> None:
    before, events = refused(), stack.code_events(ITEM)

    sent = await slack.command("/code", f"days {ITEM} 30", user_id="U1", team_id=OTHER)

    assert sent.response.status_code == 200
    assert sent.response.json() == {"response_type": "ephemeral", "text": REFUSAL}
    assert refused() == before + 1
    await _assert_ran_nothing(slack, stack, sent, events)


async def test_a_button_from_another_workspace_is_refused(slack: SlackRig, stack: Any) -> None:
    before, events = refused(), stack.code_events(ITEM)

    sent = await slack.click("erm:run", "anything", user_id="U1", team_id=OTHER)

    assert sent.response.status_code == 200
    assert sent.response.json()["text"] == REFUSAL
    assert refused() == before + 1
    await _assert_ran_nothing(slack, stack, sent, events)


async def test_the_workspace_is_learned_from_auth_test(slack: SlackRig) -> None:
    assert await slack.adapter.workspaces() == Workspaces(teams=frozenset({TEAM_ID}))
    assert [c.method for c in slack.fake.calls].count("auth.test") == 1


@pytest.fixture
async def configured(stack: Any, fake_slack: FakeSlack) -> AsyncIterator[SlackRig]:
    """The adapter with SLACK_TEAM_IDS: another workspace, and an Enterprise Grid org."""
    await stack.grant("slack:U1", Role.AGENT)
    config = SlackConfig(
        bot_token=fake_slack.bot_token,
        signing_secret=SIGNING_SECRET,
        api_url=fake_slack.api_url,
        workspaces=Workspaces.parse(f"{OTHER}, E0ORG"),
    )
    adapter = SlackAdapter(stack.dispatcher, config)
    async with (
        serve_app(create_app([Attached(stack.dispatcher.core, "slack", adapter)])) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10.0) as http,
    ):
        yield SlackRig(fake_slack, adapter, base_url, http)


async def test_configured_workspaces_replace_the_tokens_own(configured: SlackRig) -> None:
    ours = await configured.ask("/erm", "whoami", user_id="U1", team_id=OTHER)
    assert "Who you are to erm-bot" in shown(ours)

    sent = await configured.command("/erm", "whoami", user_id="U1", team_id=TEAM_ID)
    assert sent.response.json()["text"] == REFUSAL


async def test_an_org_wide_install_serves_every_workspace_of_its_org(configured: SlackRig) -> None:
    form = command_form("/erm", "whoami", user_id="U1", team_id="T0ANYWHERE")
    form["response_url"] = configured.fake.response_url()
    form["enterprise_id"] = "E0ORG"
    response = await configured.post(encode_form(form))
    assert response.status_code == 200
    answer = await configured.answer(Sent(response, form, 0.0))
    assert "Who you are to erm-bot" in shown(answer)

    form = command_form("/erm", "whoami", user_id="U1", team_id="T0ANYWHERE")
    form["response_url"] = configured.fake.response_url()
    form["enterprise_id"] = "E0ELSEWHERE"
    response = await configured.post(encode_form(form))
    assert response.json()["text"] == REFUSAL


def test_team_ids_are_read_from_the_settings() -> None:
    settings = Settings(slack_bot_token="xoxb-1", slack_team_ids="T0AAA, E0BBB")  # type: ignore[call-arg]
    config = SlackConfig.from_settings(settings)
    assert config.workspaces == Workspaces(frozenset({"T0AAA"}), frozenset({"E0BBB"}))


@pytest.mark.parametrize("typed", ["acme", "U0123", "t0aaa", "T0AAA;E0BBB"])
def test_a_malformed_team_id_names_the_setting(typed: str) -> None:
    settings = Settings(slack_bot_token="xoxb-1", slack_team_ids=typed)  # type: ignore[call-arg]
    with pytest.raises(SlackConfigError, match="SLACK_TEAM_IDS holds workspace ids"):
        SlackConfig.from_settings(settings)
