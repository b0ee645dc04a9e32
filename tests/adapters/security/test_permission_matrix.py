"""The permission matrix: every command, by every role (and none), at a distributor the user works
for and at one they don't, through the Slack adapter (signed HTTP, the whole path).

The expected matrix is written out here, independently of the commands' own declarations: it is
the policy (who may issue codes, read, administer), and the test fails when the code drifts from
it. A refusal must be audited as such and must not reach ERM's code mutations; an allowed command
must run (audited ``ok``). A stranger's (no role) refusals are sampled into the audit log (the
first of the hour, see bot.strangers): for the rest, the reply says why. The approval commands
(``/approvals ...``, issue 6) have their own security tests; an agent's free or reset code may go
to approval but never becomes a code here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from security_rig import SlackSide

from bot.audit import AuditLog
from bot.commands import COMMANDS
from bot.roles import Role
from erm.sandbox import ACME, OPEN_ACP1_OEM_ID, SUNBRIGHT

OWN, OTHER = ACME.name, SUNBRIGHT.name
ITEMS = {OWN: OPEN_ACP1_OEM_ID, OTHER: "BTRY2412000001"}
APPROVAL_COMMANDS = "approvals"  # the family of issue 6

# command -> (what the user types, the least role that runs it at a distributor of theirs).
# None: anyone, even without a role.
MATRIX: dict[str, tuple[str, Role | None]] = {
    "code days": ("/code days {item} 3 --dist {dist}", Role.AGENT),
    "code free": ("/code free {item} --dist {dist}", Role.SUPERVISOR),
    "code reset": ("/code reset {item} --dist {dist}", Role.SUPERVISOR),
    "code": ("/code {item} --dist {dist}", Role.AGENT),  # the guided menu: buttons, no code
    "resend": ("/resend {item} --dist {dist}", Role.AGENT),
    "history": ("/history {item} 1 --dist {dist}", Role.VIEWER),
    "fleet": ("/fleet --dist {dist}", Role.VIEWER),
    "items": ("/items --dist {dist}", Role.VIEWER),
    "account": ("/account {item} --dist {dist}", Role.VIEWER),
    "audit": ("/audit --dist {dist}", Role.ADMIN),
    "use": ("/use {dist}", Role.VIEWER),
    "grant": ("/grant slack:U0NEW viewer {dist}", Role.ADMIN),
    "revoke": ("/revoke slack:U0NEW {dist}", Role.ADMIN),
    "invite": ("/invite viewer {dist}", Role.ADMIN),
    # No distributor involved: the same at both.
    "help": ("/help", Role.VIEWER),
    "whoami": ("/whoami", Role.VIEWER),
    "users": ("/users", Role.ADMIN),
    "start": ("/start", None),
    "link": ("/link", None),
    "unlink": ("/unlink slack:{user}", None),  # one's own identity (linked to nobody here)
}
NO_DISTRIBUTOR = frozenset({"help", "whoami", "users", "start", "link", "unlink"})
CODE_COMMANDS = frozenset({"code days", "code free", "code reset"})
APPROVABLE = frozenset({"code free", "code reset"})  # an agent's request may await approval


def expected(command: str, role: Role | None, where: str) -> str:
    """ "ok", or the audit outcome of the refusal; "approval": no code, whatever else happens."""
    least = MATRIX[command][1]
    if least is None:
        return "ok"
    if role is None:
        return "denied"
    if command not in NO_DISTRIBUTOR and where == OTHER:
        return "invalid" if command == "use" else "denied"  # /use names a distributor not theirs
    if role >= least:
        return "ok"
    if command in APPROVABLE and role == Role.AGENT:
        return "approval"
    return "denied"


def test_the_matrix_covers_every_command() -> None:
    names = {c.name for c in COMMANDS if c.path[0] != APPROVAL_COMMANDS}
    assert set(MATRIX) == names, "add the new command to MATRIX with its least role"


ROLES = [None, Role.VIEWER, Role.AGENT, Role.SUPERVISOR, Role.ADMIN]


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.label if r else "no-role")
async def test_every_command_is_allowed_or_refused_as_the_matrix_says(
    stack: Any, slack_side: SlackSide, role: Role | None
) -> None:
    await stack.runtime.service.add_distributor(SUNBRIGHT.name, SUNBRIGHT.email, SUNBRIGHT.password)
    user = f"U0{role.label.upper() if role else 'NOROLE'}"
    if role is not None:
        await stack.grant(f"slack:{user}", role, OWN)
    else:  # every command in turn: more than a stranger may send in an hour by default
        core = stack.dispatcher.core
        core.limits = replace(core.limits, stranger_requests_per_hour=len(MATRIX) * 2)
    audit = AuditLog(stack.engine)
    wrong: list[str] = []
    stranger_row: int | None = None
    for command, (template, _) in MATRIX.items():
        for where in (OWN,) if command in NO_DISTRIBUTOR else (OWN, OTHER):
            text = template.format(item=ITEMS[where], dist=where, user=user)
            codes_before = stack.code_events(ITEMS[OWN]) + stack.code_events(ITEMS[OTHER])
            answer = await slack_side.ask(text, user_id=user)
            [row] = await audit.recent(limit=1)
            made_codes = stack.code_events(ITEMS[OWN]) + stack.code_events(ITEMS[OTHER])
            made_codes -= codes_before
            want = expected(command, role, where)
            if role is None and row.id == stranger_row:  # sampled: not audited again
                row = replace(row, outcome=want)
            stranger_row = row.id
            got = row.outcome
            if want == "approval":
                if made_codes or "#" in answer:
                    wrong.append(f"{text}: an agent got a code without approval")
                continue
            if row.request_key is None or row.user_id != user:
                wrong.append(f"{text}: no audit row of its own")
            if got != want:
                wrong.append(f"{text}: {got}, expected {want} ({answer.splitlines()[0][:90]})")
            if command in CODE_COMMANDS and made_codes != (1 if want == "ok" else 0):
                wrong.append(f"{text}: ERM issued {made_codes} codes")
            if want == "denied" and not any(
                hint in answer for hint in ("needs the", "no role", "access to erm-bot", "admin of")
            ):
                wrong.append(f"{text}: refusal does not say why: {answer[:120]!r}")

    assert wrong == []
    if role is None:  # only the first refusal of the hour is audited
        assert len(await audit.recent(user=("slack", user), limit=100)) == 1
