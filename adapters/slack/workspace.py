"""Which Slack workspaces the bot serves, and the refusal of a request from any other.

A request signed with the app's signing secret comes from Slack, but not necessarily from our
workspace: a distributed app installed in a second workspace (or a copied manifest) sends signed
requests too, and grants are keyed by user id alone. So every request names its workspace
(``team_id``, ``enterprise_id`` on Enterprise Grid) and one from a workspace the bot does not
serve is refused before any command or button runs.

The workspaces served: ``SLACK_TEAM_IDS`` when set (team ids ``T...``, or org ids ``E...`` for an
org-wide install), else the bot token's own workspace, from ``auth.test`` (and its org when the
install is org-wide).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot import metrics

if TYPE_CHECKING:
    from slack_bolt.context.async_context import AsyncBoltContext
    from slack_bolt.response import BoltResponse

log = logging.getLogger(__name__)

PLATFORM = "slack"
REFUSAL = (
    "This erm-bot serves another Slack workspace, so nothing was done.\n"
    "Ask your Slack admin which erm-bot your workspace uses."
)
_ID = re.compile(r"[TE][A-Z0-9]{2,31}")


@dataclass(frozen=True, slots=True)
class Workspaces:
    """Team ids and Enterprise Grid org ids served; a request matching either is ours."""

    teams: frozenset[str] = frozenset()
    enterprises: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> Workspaces:
        """``T0123,E0456`` -> teams {T0123}, orgs {E0456}; a malformed id raises ``ValueError``."""
        ids = [part.strip() for part in text.split(",") if part.strip()]
        bad = [i for i in ids if not _ID.fullmatch(i)]
        if bad:
            raise ValueError(
                f"SLACK_TEAM_IDS holds workspace ids (T...) or org ids (E...), not {bad[0][:30]!r}"
            )
        return cls(
            teams=frozenset(i for i in ids if i.startswith("T")),
            enterprises=frozenset(i for i in ids if i.startswith("E")),
        )

    @classmethod
    def from_auth(cls, auth: Mapping[str, Any]) -> Workspaces:
        """The bot token's own workspace, as ``auth.test`` names it."""
        team = str(auth.get("team_id") or "")
        enterprise = str(auth.get("enterprise_id") or "")
        org_wide = bool(auth.get("is_enterprise_install")) and bool(enterprise)
        return cls(
            teams=frozenset({team} if team else ()),
            enterprises=frozenset({enterprise} if org_wide else ()),
        )

    def __bool__(self) -> bool:
        return bool(self.teams or self.enterprises)

    def serves(self, team_id: str | None, enterprise_id: str | None) -> bool:
        if enterprise_id and enterprise_id in self.enterprises:
            return True  # an org-wide install serves every workspace of the org
        return bool(team_id) and team_id in self.teams


def guard(
    served: Callable[[], Awaitable[Workspaces]],
) -> Callable[..., Awaitable[BoltResponse | None]]:
    """A bolt global middleware: requests from a workspace not ``served`` end here, with a short
    ephemeral answer, a metric and a log line; nothing else runs (no ack, no command, no audit
    row a stranger workspace could grow). HTTP and Socket Mode requests both pass through it."""
    # Here, not at the top: the Slack config (and so every erm-bot command) imports this module.
    from slack_bolt.response import BoltResponse

    async def workspace_guard(
        context: AsyncBoltContext, next_: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        team, enterprise = context.team_id, context.enterprise_id
        if (await served()).serves(team, enterprise):
            await next_()
            return None
        return BoltResponse(
            status=200, body=refusal(team, enterprise), headers={"content-type": "application/json"}
        )

    return workspace_guard


def refusal(team: str | None, enterprise: str | None) -> str:
    """Count and log a request from a workspace not served; the JSON body that answers it."""
    metrics.count_foreign_request(PLATFORM)
    log.warning(
        "Slack request refused: workspace %.32s (org %.32s) is not served",
        team or "-",
        enterprise or "-",
    )
    return json.dumps({"response_type": "ephemeral", "text": REFUSAL})
