"""The Helm chart in deploy/helm/erm-bot, rendered and checked as Kubernetes would run it.

Rendered with ``helm_render`` (the subset of Helm's templates the chart uses) everywhere, and with
``helm template`` too where helm is installed (``helm lint`` as well); the same checks run on
both: probes, resources, a non-root read-only container, secrets only in the Secret.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_render import Rendered, TemplateError, render_chart

from adapters.serve import SHUTDOWN_GRACE_SECONDS
from adapters.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "erm-bot"
HELM = shutil.which("helm")
SECRET_SETTINGS = frozenset(
    {
        name.upper()
        for name, info in Settings.model_fields.items()
        if info.annotation is not None and "SecretStr" in str(info.annotation)
    }
    | {"ERM_BOT_DATABASE_URL"}  # its password
)
EVERY_SECRET = {
    name: f"value-of-{name.lower().replace('_', '-')}-0123456789" for name in SECRET_SETTINGS
}

Renderer = Callable[[dict[str, Any]], Rendered]


def helm_template(values: dict[str, Any], tmp: Path) -> Rendered:
    """``helm template`` with ``values``, split into documents like ``render_chart``."""
    assert HELM is not None
    values_file = tmp / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    out = subprocess.run(  # noqa: S603 - fixed arguments
        [HELM, "template", "erm-bot", str(CHART), "-f", str(values_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    documents = [d for d in yaml.safe_load_all(out) if d]
    return Rendered({"helm": out}, documents, "")


@pytest.fixture(params=["python", "helm"])
def render(request: pytest.FixtureRequest, tmp_path: Path) -> Renderer:
    if request.param == "helm":
        if HELM is None:
            pytest.skip(
                "helm is not installed: the chart is rendered by tests/deploy/helm_render.py"
            )
        return lambda values: helm_template(values, tmp_path)
    return lambda values: render_chart(CHART, values)


def container(rendered: Rendered) -> dict[str, Any]:
    [main] = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"]
    return main


def pod(rendered: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.one("Deployment")["spec"]["template"]["spec"]
    return spec


# -- the chart as shipped ---------------------------------------------------------------------


def test_default_values_render_the_core_objects_only(render: Renderer) -> None:
    rendered = render({})

    kinds = sorted(d["kind"] for d in rendered.documents)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service"]


def test_the_deployment_has_liveness_readiness_and_startup_probes(render: Renderer) -> None:
    main = container(render({}))

    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert [p["name"] for p in main["ports"]] == ["http"]
    assert main["ports"][0]["containerPort"] == 8080
    assert main["args"] == ["run", "--host", "0.0.0.0", "--port", "8080"]


def test_the_readiness_probe_waits_longer_than_the_checks_may_take(render: Renderer) -> None:
    rendered = render({})
    ready_timeout = float(rendered.one("ConfigMap")["data"]["ERM_BOT_READY_TIMEOUT"])

    # database then migrations, ERM alongside: at most two timeouts in a row
    assert container(rendered)["readinessProbe"]["timeoutSeconds"] > 2 * ready_timeout


def test_every_container_runs_as_a_non_root_user_on_a_read_only_root(render: Renderer) -> None:
    spec = pod(render({}))

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    for each in spec["containers"] + spec["initContainers"]:
        context = each["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"name": "tmp", "mountPath": "/tmp"} in each["volumeMounts"]  # noqa: S108


def test_containers_have_requests_and_limits(render: Renderer) -> None:
    spec = pod(render({}))

    for each in spec["containers"] + spec["initContainers"]:
        for kind in ("requests", "limits"):
            assert set(each["resources"][kind]) == {"cpu", "memory"}


def test_migrations_run_before_the_bot_starts(render: Renderer) -> None:
    [migrate] = pod(render({}))["initContainers"]

    assert migrate["args"] == ["db", "upgrade"]
    assert migrate["image"] == container(render({}))["image"]


def test_a_sigterm_has_time_to_finish_commands_before_the_pod_is_killed(render: Renderer) -> None:
    rendered = render({})
    spec = pod(rendered)
    pre_stop = container(rendered)["lifecycle"]["preStop"]["exec"]["command"]

    assert pre_stop[:2] == ["python", "-c"]
    assert spec["terminationGracePeriodSeconds"] > SHUTDOWN_GRACE_SECONDS + 5


def test_the_service_selects_the_pods_and_targets_the_named_port(render: Renderer) -> None:
    rendered = render({})
    deployment = rendered.one("Deployment")
    service = rendered.one("Service")

    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod_labels
    assert service["spec"]["selector"] == pod_labels
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert rendered.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == pod_labels


def test_the_image_tag_defaults_to_the_released_version(render: Renderer) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())

    assert chart["appVersion"] == version
    assert container(render({}))["image"].endswith(f":{version}")


# -- configuration and secrets ----------------------------------------------------------------


def test_values_name_only_real_settings_and_every_secret_is_a_secret() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    known = {name.upper() for name in Settings.model_fields}

    assert set(values["config"]) <= known
    assert not set(values["config"]) & SECRET_SETTINGS
    assert set(values["secrets"]) == SECRET_SETTINGS


def test_secret_values_reach_only_the_secret(render: Renderer) -> None:
    rendered = render({"secrets": EVERY_SECRET})
    secret = rendered.one("Secret")
    config = rendered.one("ConfigMap")

    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == EVERY_SECRET
    assert not set(config["data"]) & SECRET_SETTINGS
    for document in rendered.documents:
        if document["kind"] == "Secret":
            continue
        text = yaml.safe_dump(document)
        for value in EVERY_SECRET.values():
            assert value not in text
            assert base64.b64encode(value.encode()).decode() not in text


def test_the_bot_reads_both_the_config_map_and_the_secret(render: Renderer) -> None:
    rendered = render({})
    sources = container(rendered)["envFrom"]

    assert sources == [
        {"configMapRef": {"name": rendered.one("ConfigMap")["metadata"]["name"]}},
        {"secretRef": {"name": rendered.one("Secret")["metadata"]["name"]}},
    ]


def test_an_existing_secret_replaces_the_rendered_one(render: Renderer) -> None:
    rendered = render({"existingSecret": "erm-bot-credentials", "secrets": EVERY_SECRET})

    assert rendered.of_kind("Secret") == []
    assert {"secretRef": {"name": "erm-bot-credentials"}} in container(rendered)["envFrom"]
    for value in EVERY_SECRET.values():
        assert all(value not in yaml.safe_dump(d) for d in rendered.documents)


def test_a_config_change_rolls_the_pods(render: Renderer) -> None:
    before = render({})
    after = render({"config": {"ERM_BOT_LOG_LEVEL": "DEBUG"}})

    def checksum(r: Rendered) -> str:
        return str(
            r.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        )

    assert checksum(before) != checksum(after)


# -- optional objects ---------------------------------------------------------------------------


def test_the_ingress_exposes_only_the_webhooks(render: Renderer) -> None:
    rendered = render({"ingress": {"enabled": True, "className": "nginx"}})
    ingress = rendered.one("Ingress")
    service = rendered.one("Service")

    [rule] = ingress["spec"]["rules"]
    paths = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    assert set(paths) == {"/slack/events", "/telegram/webhook", "/whatsapp/webhook"}
    for backend in paths.values():
        assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]


def test_the_ingress_can_serve_telegram_alone(render: Renderer) -> None:
    values = {"ingress": {"enabled": True, "slack": False, "whatsapp": False}}
    ingress = render(values).one("Ingress")

    [rule] = ingress["spec"]["rules"]
    assert [p["path"] for p in rule["http"]["paths"]] == ["/telegram/webhook"]


def test_autoscaling_hands_the_replica_count_to_the_autoscaler(render: Renderer) -> None:
    rendered = render({"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5}})
    hpa = rendered.one("HorizontalPodAutoscaler")
    deployment = rendered.one("Deployment")

    assert "replicas" not in deployment["spec"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_notes_warn_when_no_database_is_configured() -> None:
    assert "ERM_BOT_DATABASE_URL is empty" in render_chart(CHART, {}).notes
    configured = {"secrets": {"ERM_BOT_DATABASE_URL": "postgresql://u:p@db/erm"}}
    assert "ERM_BOT_DATABASE_URL is empty" not in render_chart(CHART, configured).notes


# -- the renderer and helm itself -------------------------------------------------------------


def test_the_renderer_refuses_what_it_does_not_know(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("name: x\nversion: 0.1.0\nappVersion: '1'\n")
    (chart / "values.yaml").write_text("a: 1\n")
    (chart / "templates" / "x.yaml").write_text("v: {{ .Values.a | lookupSomething }}\n")

    with pytest.raises(TemplateError, match="lookupSomething"):
        render_chart(chart)


@pytest.mark.skipif(HELM is None, reason="helm is not installed (rendered by helm_render instead)")
def test_helm_lint_passes() -> None:
    assert HELM is not None
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [HELM, "lint", "--strict", str(CHART)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
