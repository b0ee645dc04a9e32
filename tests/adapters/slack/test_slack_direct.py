"""Over HTTP, erm-bot's own slash commands and button clicks are served without bolt's
per-request machinery (adapters.slack.direct); everything else still goes to bolt.

The other Slack tests (commands, buttons, workspaces, signatures, the security suite) run through
this path already; these pin down which requests take it, and that the two ways agree.
U1 is an agent at acme (see conftest).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakes.slack import SIGNING_SECRET, encode_form, signed_headers
from slack_rig import SlackRig

from adapters.slack.app import SLACK_DOWN
from adapters.slack.direct import read_ours
from adapters.slack.render import ACTION_PREFIX

FORM = "application/x-www-form-urlencoded"
WORDS = frozenset({"code", "history", "erm"})


@pytest.fixture
def bolt_calls(slack: SlackRig, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every request the adapter handed to bolt."""
    calls: list[Any] = []
    dispatch = slack.adapter.app.async_dispatch

    async def counted(request: Any) -> Any:
        calls.append(request)
        return await dispatch(request)

    monkeypatch.setattr(slack.adapter.app, "async_dispatch", counted)
    return calls


async def test_a_command_and_a_click_of_ours_never_reach_bolt(
    slack: SlackRig, bolt_calls: list[Any]
) -> None:
    answer = await slack.ask("/erm", "whoami", user_id="U1")
    assert "slack:U1" in answer.text
    clicked = await slack.click(f"{ACTION_PREFIX}nothing", "no-such-button", user_id="U1")
    assert clicked.response.status_code == 200
    assert clicked.response.text == ""  # acked; the answer goes to the response_url
    assert "expired" in (await slack.answer(clicked)).text
    assert bolt_calls == []


async def test_what_is_not_ours_still_goes_to_bolt(slack: SlackRig, bolt_calls: list[Any]) -> None:
    challenge = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"})
    headers = signed_headers(challenge, secret=SIGNING_SECRET)
    headers["Content-Type"] = "application/json"
    verified = await slack.post(challenge, headers)
    assert verified.status_code == 200
    assert "c-123" in verified.text

    unknown = await slack.command("/weather", "nairobi", user_id="U1")
    assert unknown.response.status_code == 404  # bolt: no listener for it
    assert len(bolt_calls) == 2


async def test_when_slack_cannot_say_whose_workspace_it_is_nothing_runs(
    slack: SlackRig, bolt_calls: list[Any]
) -> None:
    slack.adapter._auth = None  # as after a start whose auth.test failed
    slack.fake.fail("auth.test", status=500)
    sent = await slack.command("/erm", "whoami", user_id="U1")
    assert sent.response.status_code == 200
    assert sent.response.json() == {"response_type": "ephemeral", "text": SLACK_DOWN}
    assert slack.adapter._tasks == set()
    assert bolt_calls == []


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        (encode_form({"command": "/code", "text": "days X 7"}), FORM, "command"),
        (encode_form({"command": "/erm", "text": "payload"}), FORM, "command"),
        (encode_form({"command": "/weather"}), FORM, None),
        (encode_form({"command": "code"}), FORM, None),  # not a slash command
        (encode_form({"ssl_check": "1"}), FORM, None),
        (encode_form({"command": "/code"}), "application/json", None),
        ('{"type": "url_verification"}', "application/json", None),
        (
            encode_form(
                {"payload": json.dumps({"type": "block_actions", "actions": [{"action_id": "x"}]})}
            ),
            FORM,
            None,  # not one of our buttons
        ),
        (
            encode_form(
                {
                    "payload": json.dumps(
                        {"type": "block_actions", "actions": [{"action_id": f"{ACTION_PREFIX}a"}]}
                    )
                }
            ),
            f"{FORM}; charset=utf-8",
            "click",
        ),
        (encode_form({"payload": json.dumps({"type": ["block_actions"]})}), FORM, None),
        (encode_form({"payload": "not json"}), FORM, None),
        (encode_form({"payload": json.dumps([1, 2])}), FORM, None),
        (
            encode_form({"payload": json.dumps({"type": "block_actions", "actions": "x"})}),
            FORM,
            None,  # malformed: bolt's path refuses it with its reason
        ),
    ],
)
def test_which_requests_are_ours(body: str, content_type: str, kind: str | None) -> None:
    read = read_ours(body, content_type, WORDS, ACTION_PREFIX)
    assert (read.kind if read else None) == kind


def test_the_workspace_is_read_as_bolt_reads_it() -> None:
    form = encode_form({"command": "/code", "team_id": "T1", "enterprise_id": "E1"})
    command = read_ours(form, FORM, WORDS, ACTION_PREFIX)
    assert command is not None
    assert (command.team_id, command.enterprise_id) == ("T1", "E1")
    payload = {
        "type": "block_actions",
        "actions": [{"action_id": f"{ACTION_PREFIX}a"}],
        "team": {"id": "T2"},
        "user": {"id": "U1", "team_id": "T9"},
    }
    click = read_ours(encode_form({"payload": json.dumps(payload)}), FORM, WORDS, ACTION_PREFIX)
    assert click is not None
    assert (click.team_id, click.enterprise_id) == ("T2", None)
