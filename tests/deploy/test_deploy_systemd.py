"""deploy/systemd/erm-bot.service: a hardened, unprivileged service that stops gracefully."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from adapters.serve import SHUTDOWN_GRACE_SECONDS

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "erm-bot.service"

Unit = dict[str, dict[str, list[str]]]


def parse(path: Path = UNIT) -> Unit:
    """Sections -> key -> values (systemd allows a key more than once)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"not a setting: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    return parse()["Service"]


def test_the_unit_has_the_three_sections() -> None:
    unit = parse()

    assert set(unit) == {"Unit", "Service", "Install"}
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]


def test_the_bot_runs_unprivileged_from_its_own_state_directory(
    service: dict[str, list[str]],
) -> None:
    assert service["User"] == ["erm-bot"]
    assert service["Group"] == ["erm-bot"]
    assert service["WorkingDirectory"] == ["/var/lib/erm-bot"]
    assert service["ReadWritePaths"] == service["WorkingDirectory"]
    assert service["StateDirectory"] == ["erm-bot"]


def test_the_service_migrates_then_runs_the_bot(service: dict[str, list[str]]) -> None:
    [pre] = service["ExecStartPre"]
    [start] = service["ExecStart"]

    assert shlex.split(pre)[1:] == ["db", "upgrade"]
    argv = shlex.split(start)
    assert argv[0].endswith("/erm-bot")
    assert argv[1] == "run"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"  # a reverse proxy fronts it


def test_sigterm_gets_time_to_finish_commands(service: dict[str, list[str]]) -> None:
    assert service["KillSignal"] == ["SIGTERM"]
    assert int(service["TimeoutStopSec"][0]) > SHUTDOWN_GRACE_SECONDS
    assert service["Restart"] == ["on-failure"]


def test_the_service_is_hardened(service: dict[str, list[str]]) -> None:
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
    }.items():
        assert service[key] == [value], key
    assert service["CapabilityBoundingSet"] == [""]


def test_secrets_come_from_an_environment_file_not_the_unit(service: dict[str, list[str]]) -> None:
    assert service["EnvironmentFile"] == ["/etc/erm-bot/erm-bot.env"]
    for assignment in service["Environment"]:
        name = assignment.split("=", 1)[0]
        assert name in {"PTB_TIMEDELTA", "ERM_BOT_DATABASE_URL"}, name
        assert "@" not in assignment  # no credentials in a database URL here
