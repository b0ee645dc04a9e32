"""The WhatsApp cell of the benchmark harness runs end to end (``python -m bench --paths
whatsapp``) with tiny N.

Not a benchmark: no timing is asserted. It starts the ERM sandbox, erm-bot and the baselines, posts
a few signed webhook messages from two senders to erm-bot and to the bare pywa app, and checks that
both answered every message, in order per sender, and that the results file has the WhatsApp table.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_whatsapp_cell_measures_both_apps_and_checks_the_order(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    args = ["--quick", "--paths", "whatsapp", "--items", "4", "-n", "2", "--whatsapp-n", "4"]
    args += ["--concurrency", "2", "--latencies", "0", "--commands", "code", "--out", str(out)]
    args += ["--storage-n", "0"]  # the storage figures have a test of their own
    run = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )

    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    line = next(
        (x for x in run.stdout.splitlines() if x.startswith("whatsapp code days erm+0ms c=2")),
        "",
    )
    assert re.search(r"erm-bot [0-9.]+/s \(in order: yes\) \| bare pywa [0-9.]+/s", line), line
    assert "whatsapp code days erm+0ms c=2 ERM calls/cmd: erm-bot 1.00 | bare pywa 1.00" in (
        run.stdout
    )
    assert "telegram" not in run.stdout
    assert "realistic ERM" not in run.stdout  # a Slack cell: not on this path
    text = out.read_text()
    assert "## WhatsApp path" in text
    assert "| code days | 0 ms | 2 | SQLite | erm-bot |" in text
    assert "| WhatsApp throughput |" in text
    assert "| ERM calls per cached `/code days` (erm-bot) | = 1 | WhatsApp 1.00 (4 calls, " in text
