"""deploy/slack-manifest.yml stays in step with the bot's commands and the adapter's needs.

PyYAML is not a dependency, so the manifest is read line by line: it is a flat, hand-written
file and these checks only need its keys and list items.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from adapters.slack.app import EVENTS_PATH, SLASH_KINDS, UMBRELLA, SlackAdapter
from adapters.slack.config import SlackConfig
from bot.commands import COMMANDS

MANIFEST = Path(__file__).resolve().parents[3] / "deploy" / "slack-manifest.yml"


def manifest() -> str:
    return MANIFEST.read_text(encoding="utf-8")


def slash_commands() -> list[str]:
    return re.findall(r"^\s*- command: /(\S+)\s*$", manifest(), flags=re.MULTILINE)


def test_every_lookup_and_code_command_has_its_slash_command_plus_the_umbrella() -> None:
    words = {c.path[0] for c in COMMANDS if c.kind in SLASH_KINDS}
    assert sorted(slash_commands()) == sorted(words | {UMBRELLA})


def test_the_adapter_routes_every_slash_command_of_the_manifest(stack: Any) -> None:
    adapter = SlackAdapter(stack.dispatcher, SlackConfig(bot_token="xoxb-1", signing_secret="s"))
    assert set(slash_commands()) <= adapter.words | {UMBRELLA}
    assert adapter.command_text("/code", "days X 30") == "/code days X 30"
    assert adapter.command_text("/erm", "grant slack:U1 agent") == "/grant slack:U1 agent"


def test_every_url_is_the_events_endpoint() -> None:
    urls = re.findall(r"^\s*(?:url|request_url): (\S+)\s*$", manifest(), flags=re.MULTILINE)
    assert len(urls) == len(slash_commands()) + 1  # each command, and interactivity
    assert all(url.startswith("https://") and url.endswith(EVENTS_PATH) for url in urls)


def test_commands_are_not_escaped_and_have_short_descriptions() -> None:
    text = manifest()
    assert text.count("should_escape: false") == len(slash_commands())
    descriptions = re.findall(r"^\s*description: (.+)$", text, flags=re.MULTILINE)
    assert all(len(d) <= 100 for d in descriptions)


def test_scopes_interactivity_and_socket_mode_settings() -> None:
    text = manifest()
    scopes = re.findall(r"^\s*- ([a-z:.]+)(?:\s+#.*)?$", text, flags=re.MULTILINE)
    assert {"commands", "chat:write"} <= set(scopes)
    assert re.search(r"interactivity:\n\s+is_enabled: true", text)
    assert re.search(r"^\s+socket_mode_enabled: (true|false)$", text, flags=re.MULTILINE)
    assert "\t" not in text
