"""The world of the kill-the-process tests: the sandbox ERM, a fake Slack, a database with acme's
credentials and grants, and the environment an ``erm-bot run`` process is started with.

Shared by ``test_faults_process.py`` (a request redelivered after a SIGKILL) and
``test_recovery_process.py`` (recovery by itself after a SIGKILL).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fakes.slack import SIGNING_SECRET, Call, FakeSlack
from fault_rig import settings_of

from adapters.runtime import open_runtime
from bot.roles import Role
from bot.storage.approvals import ApprovalStore
from bot.storage.grants import GrantStore
from erm.models import keypad_format
from erm.sandbox import ACME, OPEN_ACP1_OEM_ID, create_app, seed_state, serve
from erm.sandbox.state import SandboxState

ITEM = OPEN_ACP1_OEM_ID


@dataclass
class World:
    env: dict[str, str]
    sandbox: SandboxState
    slack: FakeSlack
    cwd: Path
    log: Path

    def code_events(self) -> int:
        return len(self.sandbox.item_by_oem_id(ITEM).code_generator.events)

    def code_forms(self) -> tuple[str, ...]:
        """Every way the newest code can be written: ERM's digits, keypad form, hex."""
        event = self.sandbox.item_by_oem_id(ITEM).code_generator.events[-1]
        keypad = keypad_format(event.code_dec_string)
        digits = "".join(ch for ch in event.code_dec_string if ch.isdigit())
        return (keypad, keypad.replace(" ", ""), digits, event.code_hex_string)

    def newest_code(self) -> str:
        return self.code_forms()[0]

    def hang_next_mutation(self) -> None:
        """ERM makes the next code, then holds its answer longer than the test lasts."""
        self.sandbox.faults.hang_after_mutation_next = 1
        self.sandbox.faults.hang_seconds = 60.0

    def dms(self, user: str, *, after: int = 0) -> list[Call]:
        """Private messages to ``user`` among the fake's calls from index ``after`` on."""
        return [
            c
            for c in self.slack.calls[after:]
            if c.method == "chat.postMessage" and c.channel == user
        ]


@asynccontextmanager
async def bot_world(
    database: str,
    tmp_path: Path,
    secret_keys: list[str],
    *,
    grants: Sequence[tuple[str, Role]] = (("U1", Role.AGENT),),
    approval_channel: str | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[World]:
    """The world, with ``grants`` (Slack user id, role) at acme and, when given, acme's approval
    channel; ``env`` adds to the process environment."""
    sandbox = seed_state(0)
    async with serve(create_app(sandbox)) as erm_url, FakeSlack() as slack:
        environment = {
            "ERM_API_URL": erm_url,
            # The bot is still waiting for ERM's answer when it is killed.
            "ERM_READ_TIMEOUT": "30",
            "ERM_TOTAL_TIMEOUT": "30",
            "ERM_BOT_DATABASE_URL": database,
            "ERM_BOT_SECRET_KEYS": ",".join(secret_keys),
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            **(env or {}),
        }
        async with open_runtime(settings_of(environment)) as runtime:
            await runtime.service.add_distributor(ACME.name, ACME.email, ACME.password)
            store = GrantStore(runtime.engine)
            for user, role in grants:
                await store.grant("slack", user, role, ACME.name, "tests")
            if approval_channel is not None:
                await ApprovalStore(runtime.engine).set_channel(
                    ACME.name, "slack", approval_channel, by="tests", now=datetime.now(UTC)
                )
        yield World(environment, sandbox, slack, tmp_path, tmp_path / "erm-bot.log")
