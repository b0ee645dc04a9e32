"""The scaling bench (``python -m bench.scaling``) runs end to end with tiny N on PostgreSQL.

Not a benchmark: no timing is asserted. It starts the ERM stand-in and one, then two ``erm-bot
serve`` processes on one fresh PostgreSQL database, sends signed ``/code days`` commands through
the fake Slack and checks, from ERM's code history and the bot's table, that no code was issued
twice.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from support import postgres_server_url

REPO = Path(__file__).resolve().parents[2]


def test_one_and_two_bot_processes_answer_every_command_with_one_code_each(
    tmp_path: Path,
) -> None:
    server = postgres_server_url()
    out = tmp_path / "scaling.md"
    args = ["--postgres", server, "-n", "8", "-c", "2", "--out", str(out)]
    run = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "bench.scaling", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for processes in ("1 process", "2 processes"):
        line = next(x for x in run.stdout.splitlines() if f"erm+0ms {processes}:" in x)
        assert "0 failed, 0 wrong, 0 answered twice, ERM codes 8 for 8 answers" in line, line
        assert line.endswith(", 0 duplicates"), line
    assert re.search(r"scaling ratio 2 processes / 1: \d+\.\d\dx", run.stdout), run.stdout
    rows = [x for x in out.read_text().splitlines() if re.match(r"\| [12] \|", x)]
    assert len(rows) == 2, out.read_text()
    assert all(row.endswith("| 0 / 0 | 0 |") for row in rows), rows
