"""erm-bot's own slash commands and button clicks, served from the signature-checked body.

For every request bolt builds a context, a Web API client and the listener's arguments, checks
the signature a second time and matches every listener: about half the CPU of an ack
(``bench/findings.md``). For the two kinds of request erm-bot serves over HTTP, the adapter does
what its bolt listeners did, in the same order, without that machinery: refuse a workspace it
does not serve (the same refusal, metric and log line as :func:`adapters.slack.workspace.guard`),
answer 200 with an empty body, and run the work after. Everything else (URL verification, events,
``ssl_check``, a command that is not one of ours) still goes to bolt, and so does Socket Mode.

The body is read as bolt reads it (form fields; interactivity as the JSON ``payload`` field), and
the workspace ids with bolt's own extractors, so the two paths cannot disagree on whose it is.
"""

from __future__ import annotations

import json
from collections.abc import Set
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

from slack_bolt.request.internals import extract_enterprise_id, extract_team_id

from adapters.slack.inbound import payload_problem

FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Direct:
    """A request of ours: a slash command (its form fields) or a button click (its payload)."""

    kind: Literal["command", "click"]
    body: dict[str, Any]

    @property
    def team_id(self) -> str | None:
        return _text(extract_team_id(self.body))

    @property
    def enterprise_id(self) -> str | None:
        return _text(extract_enterprise_id(self.body))


def read_ours(
    raw: str, content_type: str | None, commands: Set[str], action_prefix: str
) -> Direct | None:
    """``raw`` as one of our slash commands (``/word`` with ``word`` in ``commands``) or a click
    on one of our buttons (``action_id`` starting with ``action_prefix``); None for bolt."""
    if (content_type or "").split(";")[0].strip().lower() != FORM:
        return None
    form = dict(parse_qsl(raw, keep_blank_values=True))
    payload = form.get("payload")
    if payload is None:
        command = form.get("command", "")
        if command.startswith("/") and command[1:] in commands:
            return Direct("command", form)
        return None
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None  # bolt answers what is not JSON
    if not isinstance(body, dict) or body.get("type") != "block_actions":
        return None
    if payload_problem(body) is not None:
        return None  # refused on bolt's path, with the reason logged
    action_id = body["actions"][0]["action_id"]
    return Direct("click", body) if action_id.startswith(action_prefix) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
