"""deploy/Dockerfile and deploy/compose.yaml, checked structurally (building needs the network).

The Dockerfile is read instruction by instruction: two stages, a slim base, a non-root user, a
health check on /healthz, the port the bot listens on. The compose file is parsed as YAML: the
bot, PostgreSQL and a one-shot migration the bot waits for, no secret written in it. Where
``docker compose`` is installed, ``docker compose config`` validates it too.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.serve import SHUTDOWN_GRACE_SECONDS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
COMPOSE = DEPLOY / "compose.yaml"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int


def instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped)."""
    found: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        found.append(Instruction(keyword, arguments.strip(), stage))
    return found


def final_stage() -> list[Instruction]:
    all_ = instructions()
    last = max(i.stage for i in all_)
    return [i for i in all_ if i.stage == last]


def exec_form(arguments: str) -> list[str]:
    value = yaml.safe_load(arguments)  # a JSON array is YAML too
    assert isinstance(value, list), arguments
    return [str(v) for v in value]


# -- Dockerfile ---------------------------------------------------------------------------------


def test_the_image_builds_in_one_stage_and_runs_from_another_slim_one() -> None:
    froms = [i.arguments for i in instructions() if i.keyword == "FROM"]

    assert len(froms) == 2
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim AS build", froms[0])
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim AS runtime", froms[1])
    copies = [i.arguments for i in final_stage() if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/erm-bot /opt/erm-bot"]
    assert not [i for i in final_stage() if i.keyword == "RUN" and "pip" in i.arguments]


def test_the_bot_runs_as_an_unprivileged_user() -> None:
    [user] = [i.arguments for i in final_stage() if i.keyword == "USER"]
    uid = user.split(":")[0]

    assert uid not in {"root", "0"}
    assert uid.isdigit()  # numeric, so Kubernetes' runAsNonRoot can verify it
    helm_values = yaml.safe_load((DEPLOY / "helm" / "erm-bot" / "values.yaml").read_text())
    assert helm_values["podSecurityContext"]["runAsUser"] == int(uid)


def test_the_health_check_asks_healthz_on_the_served_port() -> None:
    stage = final_stage()
    [health] = [i.arguments for i in stage if i.keyword == "HEALTHCHECK"]
    [expose] = [i.arguments for i in stage if i.keyword == "EXPOSE"]
    command = exec_form(next(i.arguments for i in stage if i.keyword == "CMD"))
    entrypoint = exec_form(next(i.arguments for i in stage if i.keyword == "ENTRYPOINT"))

    assert "--interval=" in health
    assert f"http://127.0.0.1:{expose}/healthz" in health
    assert entrypoint == ["erm-bot"]
    assert command == ["run", "--host", "0.0.0.0", "--port", expose]


def test_the_image_logs_json_and_stops_on_sigterm() -> None:
    stage = final_stage()
    env = " ".join(i.arguments for i in stage if i.keyword == "ENV")

    assert "ERM_BOT_LOG_FORMAT=json" in env
    assert [i.arguments for i in stage if i.keyword == "STOPSIGNAL"] == ["SIGTERM"]


def test_no_secret_is_baked_into_the_image() -> None:
    words = ("TOKEN", "SECRET", "PASSWORD", "KEYS")
    for instruction in instructions():
        if instruction.keyword in {"ENV", "ARG", "LABEL"}:
            for word in words:
                assert word not in instruction.arguments.upper(), instruction


def test_what_the_build_copies_exists_and_the_context_leaves_out_secrets() -> None:
    sources = [
        part
        for i in instructions()
        if i.keyword == "COPY" and not i.arguments.startswith("--from")
        for part in shlex.split(i.arguments)[:-1]
    ]
    ignored = DOCKERIGNORE.read_text().splitlines()

    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert f"!{source.rstrip('/')}" in ignored
    assert ignored.index("*") < min(ignored.index(f"!{s.rstrip('/')}") for s in sources)
    for secret in ("**/.env", "**/*.db"):
        assert secret in ignored


# -- compose ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_runs_the_bot_postgres_and_a_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]

    assert set(services) == {"bot", "postgres", "migrate"}
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert services["bot"]["command"][0] == "run"
    assert services["postgres"]["image"].startswith("postgres:")


def test_the_bot_starts_after_postgres_is_healthy_and_migrated(compose: dict[str, Any]) -> None:
    services = compose["services"]

    assert services["bot"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_the_bot_has_a_health_check_and_time_to_stop(compose: dict[str, Any]) -> None:
    bot = compose["services"]["bot"]

    assert "/healthz" in " ".join(bot["healthcheck"]["test"])
    assert bot["stop_signal"] == "SIGTERM"
    assert int(bot["stop_grace_period"].removesuffix("s")) > SHUTDOWN_GRACE_SECONDS
    assert bot["read_only"] is True
    assert bot["cap_drop"] == ["ALL"]


def test_compose_builds_the_image_from_the_dockerfile(compose: dict[str, Any]) -> None:
    build = compose["services"]["bot"]["build"]

    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_holds_no_secret_only_references(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if any(word in key for word in ("PASSWORD", "TOKEN", "SECRET", "DATABASE_URL")):
                assert "${POSTGRES_PASSWORD" in str(value), (name, key)
    assert compose["services"]["bot"]["env_file"] == ["../.env"]


def _docker_compose() -> str | None:
    """The docker CLI when its compose plugin answers, else None."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run(  # noqa: S603 - a version probe
        [docker, "compose", "version"], capture_output=True, check=False, timeout=30
    )
    return docker if probe.returncode == 0 else None


DOCKER_COMPOSE = _docker_compose()


@pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker compose is not installed (the file is checked as YAML instead)",
)
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    # A copy beside a throwaway .env: the real one (../.env) is the operator's.
    (tmp_path / "deploy").mkdir()
    copy = tmp_path / "deploy" / "compose.yaml"
    copy.write_text(COMPOSE.read_text())
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PASSWORD=compose-check\n")
    assert DOCKER_COMPOSE is not None
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [DOCKER_COMPOSE, "compose", "--env-file", str(env_file), "-f", str(copy), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
