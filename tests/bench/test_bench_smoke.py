"""The benchmark harness runs end to end (``python -m bench``) with tiny N.

Not a benchmark: no timing is asserted. It starts the ERM sandbox, erm-bot and both baselines as
processes, sends a few commands through the fake Slack and Telegram, and writes the results file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _python_m(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_bench_harness_measures_both_paths_and_writes_the_results(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    args = ["--quick", "--items", "4", "-n", "2", "--telegram-n", "2", "--chats", "1"]
    args += ["--concurrency", "1", "--latencies", "0", "--commands", "history"]
    args += ["--paths", "slack,telegram"]  # the WhatsApp cell has a test of its own
    args += ["--realistic-n", "2"]  # the realistic-ERM cell: /code days at ERM +250 ms
    args += ["--storage-n", "3"]
    run = _python_m("bench", *args, "--out", str(out), timeout=90)

    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "slack /history erm+0ms c=1 ack p50: erm-bot" in run.stdout
    assert "telegram /history erm+0ms updates/s: erm-bot" in run.stdout
    assert "realistic ERM slack /code days erm+250ms c=1 end-to-end p50: erm-bot" in run.stdout
    # Items known from the warm-up: one ERM call per command, as the bare apps make.
    assert "slack /history erm+0ms c=1 ERM calls/cmd: erm-bot 1.00 | bare bolt 1.00" in run.stdout
    assert "telegram /history erm+0ms ERM calls/cmd: erm-bot 1.00 | bare PTB 1.00" in run.stdout
    assert (
        "target ERM calls per cached `/code days` (erm-bot) (= 1): met "
        "[Slack 1.00 (2 calls, 2 commands)]"
    ) in run.stdout
    text = out.read_text()
    assert "## Slack path" in text
    assert "## Telegram path" in text
    assert "### `/code days` at a realistic ERM latency (+250 ms)" in text
    assert "| ERM calls/cmd | failed / wrong |" in text
    assert "| Slack `/code days` e2e p50 at ERM +250 ms | <= 250 + 15 ms | erm-bot " in text
    assert "Peak RSS (VmHWM) of erm-bot" in text
    # --quick runs SQLite only (no --postgres), then the in-process storage figures.
    assert "PostgreSQL pass" not in run.stdout
    assert "PostgreSQL cells skipped" not in run.stdout
    assert "storage /code days SQLite file total: " in run.stdout
    assert "| Storage CPU per `/code days` (in process, `bench.storage`) | PostgreSQL: " in text
    assert "## Storage per `/code days` (in process)" in text


def test_the_storage_bench_runs_the_code_commands_transactions() -> None:
    run = _python_m("bench.storage", "-n", "3", timeout=60)

    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert len(lines) == 4, lines  # three transactions and the total
    assert lines[-1].startswith("storage /code days SQLite file total: ")
