"""The demo and the README's by-hand setup, run as a person runs them: child processes, loopback.

After a restart the demo's bot and sandbox agree: a code the bot says it issued (``/resend``) is in
the item's history (``/history``), and the banner counts what the sandbox serves the demo's
distributor. The README's by-hand lines, run as they stand, end in a console where the first
admin, granted from the shell, issues a code.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from erm.sandbox import ACME, OPEN_ACP1_OEM_ID

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
"""The virtualenv's bin directory, where the README puts ``erm-bot`` on the PATH from."""
TIMEOUT = 120
KEYPAD = re.compile(r"\*\d{3}(?: \d{3}){6}#")
ITEM = OPEN_ACP1_OEM_ID
PROMPT = re.compile(r"^\w+> ", re.MULTILINE)


def environment(cwd: Path) -> dict[str, str]:
    """This process's environment without any ERM setting, ``erm-bot`` on the PATH, HOME here."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ERM_")}
    return clean | {"PATH": f"{BIN}{os.pathsep}{clean.get('PATH', '')}", "HOME": str(cwd)}


def demo(cwd: Path, *lines: str) -> tuple[str, list[str], str]:
    """``erm-bot demo`` typed into: the banner, each line's reply, and standard error."""
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [BIN / "erm-bot", "demo"],
        cwd=cwd,
        env=environment(cwd),
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    banner, *replies = PROMPT.split(result.stdout)
    return banner, replies[: len(lines)], result.stderr


def codes(text: str) -> list[str]:
    return [match.group(0) for match in KEYPAD.finditer(text)]


def issue_a_code(cwd: Path) -> str:
    _, [reply], _ = demo(cwd, f"/code days {ITEM} 30")
    [code] = codes(reply)
    return code


# -- the demo across restarts ---------------------------------------------------------------------


def test_a_code_issued_before_a_restart_is_in_history_and_resend_after_it(tmp_path: Path) -> None:
    code = issue_a_code(tmp_path)

    banner, [resent, listed], errors = demo(tmp_path, f"/resend {ITEM}", f"/history {ITEM}")

    assert codes(resent) == [code], resent  # the bot's database...
    assert code in codes(listed), listed  # ...and the sandbox's history
    assert "(1 code(s) kept from earlier runs)" in banner
    assert errors == ""


def test_the_next_code_after_a_restart_is_a_new_one(tmp_path: Path) -> None:
    first = issue_a_code(tmp_path)

    _, [reply], _ = demo(tmp_path, f"/code days {ITEM} 30 --again")

    [second] = codes(reply)
    assert second != first  # a fresh sandbox would make the very same code again


def test_a_code_survives_the_demo_being_killed_right_after_it(tmp_path: Path) -> None:
    with subprocess.Popen(  # noqa: S603 - our own CLI
        [BIN / "erm-bot", "demo"],
        cwd=tmp_path,
        env=environment(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdin is not None
        process.stdin.write(f"/code days {ITEM} 30\n")
        process.stdin.flush()
        output = Output(process)
        code = next(c for line in output for c in codes(line))
        process.send_signal(signal.SIGKILL)  # no shutdown: only what was already on disk counts
        process.wait(timeout=TIMEOUT)
        output.close()

    _, [resent, listed], _ = demo(tmp_path, f"/resend {ITEM}", f"/history {ITEM}")

    assert codes(resent) == [code], resent
    assert code in codes(listed), listed


def remove(saved: Path) -> None:
    saved.unlink()


def damage(saved: Path) -> None:
    saved.write_text('{"format": 1, "seed": 0, "items": {}}')  # no id counter: not one we wrote


@pytest.mark.parametrize(
    ("loss", "reason"),
    [(remove, "had no saved sandbox"), (damage, "is not a saved sandbox")],
    ids=["removed", "damaged"],
)
def test_a_database_without_its_saved_sandbox_is_set_aside_and_both_start_afresh(
    tmp_path: Path, loss: Callable[[Path], None], reason: str
) -> None:
    code = issue_a_code(tmp_path)
    loss(tmp_path / ".erm-bot-demo" / "sandbox.json")

    _, [resent, listed], errors = demo(tmp_path, f"/resend {ITEM}", f"/history {ITEM}")

    assert "starting afresh" in errors
    assert reason in errors
    assert "demo.db.old" in errors
    assert (tmp_path / ".erm-bot-demo" / "demo.db.old").exists()
    assert "has issued no code" in resent, resent
    assert code not in codes(listed), listed


def test_a_saved_sandbox_without_its_database_is_not_brought_back(tmp_path: Path) -> None:
    code = issue_a_code(tmp_path)
    for leftover in (tmp_path / ".erm-bot-demo").glob("demo.db*"):
        leftover.unlink()

    banner, [listed], _ = demo(tmp_path, f"/history {ITEM}")

    assert "(0 code(s) kept from earlier runs)" in banner
    assert code not in codes(listed), listed


def test_the_banner_counts_what_the_sandbox_serves_the_demo_distributor(tmp_path: Path) -> None:
    banner, [items, fleets], _ = demo(tmp_path, "/items", "/fleet")

    shown = re.search(rf"\((\d+) items in (\d+) fleets; distributor {ACME.name}\)", banner)
    served_items = re.search(r"\((\d+) items\)", items)
    served_fleets = re.search(rf"fleets of {ACME.name} \((\d+)\)", fleets)
    assert shown, banner
    assert served_items, items
    assert served_fleets, fleets
    assert shown.group(1) == served_items.group(1)
    assert shown.group(2) == served_fleets.group(1)


# -- the README's by-hand setup -------------------------------------------------------------------


def by_hand_lines() -> list[str]:
    """The shell block of the README's by-hand setup, line by line."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("Trying it against the sandbox by hand")
    block = re.search(r"```sh\n(.*?)```", readme[start:], re.DOTALL)
    assert block, "the README's by-hand setup has no sh block"
    return block.group(1).strip().splitlines()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ByHand:
    """Runs the README's lines one by one in a shell, as a person types them, in ``cwd``."""

    def __init__(self, cwd: Path, lines: list[str], port: int) -> None:
        self.cwd = cwd
        # the README's port may be taken on this machine; everything else runs as written
        self.lines = [line.replace("8765", str(port)) for line in lines]
        self.background: list[tuple[subprocess.Popen[str], Output]] = []

    def run(self, line: str, typed: str = "") -> str:
        command = re.fullmatch(r"(.*?)\s*&\s*(#.*)?", line)
        if command:  # `... &`: started, then waited for as a person waits for its first lines
            self.start(command.group(1))
            return ""
        result = subprocess.run(  # noqa: S603 - the README's own lines
            ["bash", "-c", line],  # noqa: S607 - bash from the PATH, as the reader's shell
            cwd=self.cwd,
            env=environment(self.cwd),
            input=typed,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"
        return result.stdout

    def start(self, command: str) -> None:
        process = subprocess.Popen(  # noqa: S603 - the README's own line
            ["bash", "-c", f"exec {command}"],  # noqa: S607
            cwd=self.cwd,
            env=environment(self.cwd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output = Output(process)
        self.background.append((process, output))
        for line in output:  # the sandbox prints its URL once it listens
            if "listening on" in line:
                return
        raise AssertionError(f"{command} ended before it listened")

    def stop(self) -> None:
        for process, output in self.background:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            output.close()
        self.background.clear()


@pytest.fixture
def by_hand(tmp_path: Path) -> Iterator[ByHand]:
    shell = ByHand(tmp_path, by_hand_lines(), free_port())
    try:
        yield shell
    finally:
        shell.stop()


def test_the_readme_by_hand_setup_ends_in_a_console_where_the_first_admin_issues_a_code(
    by_hand: ByHand,
) -> None:
    *setup, console = by_hand.lines
    assert console.split("#")[0].split() == ["erm-bot", "console"]
    for line in setup:
        by_hand.run(line)

    shown = by_hand.run(console, f"/whoami\n/code days {ITEM} 30\n/history {ITEM}\n")

    _, whoami, issued, listed, *_ = PROMPT.split(shown)
    assert "admin at acme" in whoami, shown
    [code] = codes(issued)
    assert code in codes(listed), shown
    assert (by_hand.cwd / "erm-bot.db").exists()


def test_the_readme_by_hand_sandbox_keeps_its_codes_across_a_restart(by_hand: ByHand) -> None:
    *setup, console = by_hand.lines
    for line in setup:
        by_hand.run(line)
    [code] = codes(by_hand.run(console, f"/code days {ITEM} 30\n"))
    by_hand.stop()

    by_hand.run(by_hand.lines[0])  # the sandbox again, as the README starts it
    shown = by_hand.run(console, f"/resend {ITEM}\n/history {ITEM}\n")

    _, resent, listed, *_ = PROMPT.split(shown)
    assert codes(resent) == [code], shown
    assert code in codes(listed), shown


# -- helpers --------------------------------------------------------------------------------------


class Output:
    """A child's output lines as they come; waiting for the next one fails after ``TIMEOUT``."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.stream = process.stdout
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.stream:
            self.lines.put(line)
        self.lines.put(None)

    def __iter__(self) -> Iterator[str]:
        while (line := self.lines.get(timeout=TIMEOUT)) is not None:
            yield line

    def close(self) -> None:
        """Once the child has ended: the rest read, then the pipe closed."""
        self.reader.join(timeout=TIMEOUT)
        self.stream.close()
