"""The bot-facing CLI commands on the database a demo script left: users and the audit trail."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.cli import build_parser

TIMEOUT = 120


def erm_bot(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ERM_")}
    return subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "adapters.cli", *args],
        cwd=cwd,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("demo")
    script = cwd / "script.txt"
    script.write_text("/whoami\n/code days TEST2503000001 30 cash\n!@agent /users\n")
    result = erm_bot(cwd, "demo", "--script", str(script))
    assert result.returncode == 0, result.stdout + result.stderr
    return cwd


def settings_env(cwd: Path) -> dict[str, str]:
    key = (cwd / ".erm-bot-demo" / "secret.key").read_text().strip()
    return {
        "ERM_BOT_DATABASE_URL": f"sqlite+aiosqlite:///{cwd / '.erm-bot-demo' / 'demo.db'}",
        "ERM_BOT_SECRET_KEYS": key,
    }


def test_audit_verify_reports_an_intact_chain(demo_dir: Path) -> None:
    result = erm_bot(demo_dir, "audit", "verify", env=settings_env(demo_dir))
    assert result.returncode == 0, result.stderr
    assert "audit trail intact: 3 row(s)" in result.stdout


def test_audit_export_writes_every_row_as_csv(demo_dir: Path) -> None:
    result = erm_bot(demo_dir, "audit", "export", "--csv", env=settings_env(demo_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4  # header + three commands
    assert "denied" in lines[-1]
    assert "exported 3 row(s)" in result.stderr


def test_audit_export_needs_no_format_flag_and_takes_whole_days(demo_dir: Path) -> None:
    env = settings_env(demo_dir)
    today = datetime.now(UTC).date()
    yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)

    same_day = erm_bot(
        demo_dir, "audit", "export", "--since", f"{today}", "--until", f"{today}", env=env
    )
    before = erm_bot(demo_dir, "audit", "export", "--until", f"{yesterday}", env=env)
    after = erm_bot(demo_dir, "audit", "export", "--since", f"{tomorrow}", env=env)

    assert same_day.returncode == 0, same_day.stderr
    assert "exported 3 row(s)" in same_day.stderr  # --until names a day that is included
    assert len(same_day.stdout.strip().splitlines()) == 4
    assert "exported 0 row(s)" in before.stderr
    assert "exported 0 row(s)" in after.stderr


def test_audit_export_refuses_since_after_until(demo_dir: Path) -> None:
    result = erm_bot(
        demo_dir,
        "audit",
        "export",
        "--since",
        "2026-12-05",
        "--until",
        "2026-12-01",
        env=settings_env(demo_dir),
    )

    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("erm-bot: --since 2026-12-05 is after --until 2026-12-01")


def test_audit_export_ends_quietly_when_its_reader_goes_away(demo_dir: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ERM_")}
    reader, writer = os.pipe()
    os.close(reader)  # like `| head -0`: gone before the first row is written
    try:
        result = subprocess.run(
            [sys.executable, "-m", "adapters.cli", "audit", "export"],
            cwd=demo_dir,
            env=clean | settings_env(demo_dir),
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        os.close(writer)

    assert result.returncode == 0
    assert result.stderr == ""  # no traceback, no "Exception ignored ... BrokenPipeError"


def test_erm_bot_alone_prints_help_and_version_says_which(tmp_path: Path) -> None:
    alone = erm_bot(tmp_path)
    version = erm_bot(tmp_path, "--version")

    assert alone.returncode == 0
    assert alone.stdout.startswith("usage: erm-bot")
    assert "demo" in alone.stdout
    assert "doctor" in alone.stdout
    assert alone.stderr == ""
    assert version.returncode == 0
    assert re.fullmatch(r"erm-bot \d+\.\d+\.\d+\S*\n", version.stdout)


def test_serving_commands_and_the_sandbox_say_their_default_ports(tmp_path: Path) -> None:
    for command, port in (("run", "8080"), ("serve", "8080"), ("sandbox", "8765")):
        shown = erm_bot(tmp_path, command, "--help").stdout
        assert f"(default {port})" in shown, (command, shown)


def test_sandbox_help_explains_each_fault_once_without_internal_names(tmp_path: Path) -> None:
    shown = erm_bot(tmp_path, "sandbox", "--help").stdout

    assert "FaultConfig" not in shown
    assert "Share (0..1) of GraphQL requests answered HTTP 503" in shown
    # The short spellings are the same options, listed with them, not a second set.
    assert "--fault-error-rate N, --error-rate N" in shown
    assert shown.count("--error-rate N") == 1


def test_users_grant_list_and_revoke(demo_dir: Path) -> None:
    env = settings_env(demo_dir)
    granted = erm_bot(demo_dir, "users", "grant", "telegram:42", "supervisor", "acme", env=env)
    assert granted.returncode == 0, granted.stderr
    listed = erm_bot(demo_dir, "users", "list", env=env)
    assert "telegram:42\tsupervisor\tacme" in listed.stdout
    revoked = erm_bot(demo_dir, "users", "revoke", "telegram:42", env=env)
    assert "removed 1 grant(s)" in revoked.stdout
    for user, distributor, message in [
        ("nobody", "acme", "platform:id"),
        ("fax:42", "acme", "unknown platform"),
        ("slack:U0123ABCD", "nowhere", "no distributor"),  # a possible id (issue 14, item 12)
    ]:
        bad = erm_bot(demo_dir, "users", "grant", user, "agent", distributor, env=env)
        assert bad.returncode == 1
        assert message in bad.stderr
        assert "Traceback" not in bad.stderr


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every subcommand's parser, depth first, with the words that reach it."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append(((*path, name), child))
                found.extend(_commands(child, (*path, name)))
    return found


def test_every_subcommand_help_says_what_it_does_and_explains_each_argument() -> None:
    undocumented = []
    for path, parser in _commands(build_parser()):
        if not parser.description:
            undocumented.append(f"erm-bot {' '.join(path)}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            if not action.help:
                undocumented.append(f"erm-bot {' '.join(path)} {action.dest}: no help")
    assert undocumented == []
