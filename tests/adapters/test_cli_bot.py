"""The bot-facing CLI commands on the database a demo script left: users and the audit trail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
