"""``erm-bot approvals policy``: the approval policy from the command line, as in chat."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from bot.storage.approvals import ApprovalStore

TIMEOUT = 60.0


async def erm_bot(stack: Any, cwd: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI on the stack's database (no encryption key: none is needed), in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ERM_", "SLACK_", "TELEGRAM_"))}
    env["ERM_BOT_DATABASE_URL"] = stack.settings.database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.cli",
        "approvals",
        "policy",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    return int(process.returncode or 0), out.decode(), err.decode()


async def test_the_policy_is_shown_with_its_defaults(stack: Any, tmp_path: Path) -> None:
    code, out, _ = await erm_bot(stack, tmp_path, "acme")

    assert code == 0
    assert "approval policy of acme" in out
    assert "Free codes: need approval" in out
    assert "Days codes: need approval above 30 days" in out


async def test_one_setting_is_changed_and_kept(stack: Any, tmp_path: Path) -> None:
    code, out, _ = await erm_bot(stack, tmp_path, "acme", "days-over", "45")

    assert code == 0
    assert "need approval above 45 days" in out
    assert (await ApprovalStore(stack.engine).policy("acme")).days_over == 45


async def test_a_bad_value_or_distributor_ends_with_one_line(stack: Any, tmp_path: Path) -> None:
    bad_value = await erm_bot(stack, tmp_path, "acme", "free", "maybe")
    unknown = await erm_bot(stack, tmp_path, "nowhere")

    assert bad_value[0] == 1
    assert "free takes on or off" in bad_value[2]
    assert unknown[0] == 1
    assert "no distributor 'nowhere'" in unknown[2]
    assert "Traceback" not in bad_value[2] + unknown[2]
