"""The teams' push-to-deploy pipelines: the GitLab CI/CD templates of infra/gitlab-ci (Python, Rust
on Glommio, Seastar C++) against GitLab's CI schema and against each other, and the service chart
their deploy job installs (infra/charts/service), rendered and linted for the three examples,
refusing bad values, then installed on the local cluster. The templates' build, test and image
jobs run in GitLab's runners, not here: no Rust or C++ is compiled by these tests."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from adplatform.provisioning.charts import object_problems
from adplatform.provisioning.cluster import LocalCluster
from adplatform.provisioning.commands import Command, ToolError
from adplatform.provisioning.manifest import load_manifest
from adplatform.provisioning.releases import helm_env
from adplatform.settings import REPO_ROOT, Settings
from tests.provisioning.conftest import UPSTREAM_CHARTS

TEMPLATES = REPO_ROOT / "infra" / "gitlab-ci"
CHART = REPO_ROOT / "infra" / "charts" / "service"
LANGUAGES = ["python", "rust-glommio", "seastar-cpp"]
STAGES = ["build", "test", "image", "deploy"]
KUBE_VERSION = "v1.34.2"
SERVICE_MONITOR = ("monitoring.coreos.com/v1", "ServiceMonitor")
# GitLab CI's keywords that are not jobs, at the top of a file.
GLOBAL_KEYWORDS = {"include", "stages", "variables", "workflow", "default", "image", "cache"}


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    """GitLab CI's JSON schema as check-jsonschema vendors it (read from the package: offline)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
         "vendor.gitlab-ci", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def pipeline(language: str) -> dict[str, Any]:
    """A language template with its local includes merged in, as GitLab merges them (the
    including file wins; variables merge key by key)."""
    top = yaml.safe_load((TEMPLATES / f"{language}.gitlab-ci.yml").read_text())
    merged: dict[str, Any] = {}
    for include in top.get("include", []):
        merged.update(yaml.safe_load((REPO_ROOT / include["local"]).read_text()))
    variables = {**merged.get("variables", {}), **top.get("variables", {})}
    merged.update({k: v for k, v in top.items() if k != "include"})
    merged["variables"] = variables
    return merged


def resolved(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A job with its `extends` applied (hash keys merged, the job's own win)."""
    job = config[name]
    parents = job.get("extends", [])
    base: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        assert parent in config, f"{name} extends {parent}, which no included file defines"
        for key, value in resolved(config, parent).items():
            base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    for key, value in job.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    return base


@pytest.mark.parametrize(
    "path",
    sorted(TEMPLATES.rglob("*.yml")),
    ids=lambda p: str(p.relative_to(TEMPLATES)),
)
def test_every_template_and_example_is_valid_gitlab_ci(path: Path):
    result = check_jsonschema(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_refuses_a_broken_job(tmp_path: Path):
    """The validator is not a YAML parse: a misspelt keyword fails it, naming the job."""
    broken = tmp_path / "python.gitlab-ci.yml"
    text = (TEMPLATES / "python.gitlab-ci.yml").read_text()
    broken.write_text(text.replace("  script:\n", "  scripts:\n", 1))
    result = check_jsonschema(broken)
    assert result.returncode == 1
    assert "$.build: Additional properties are not allowed ('scripts' was unexpected)" in (
        result.stdout
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_language_builds_tests_images_and_deploys_in_that_order(language: str):
    config = pipeline(language)
    assert config["stages"] == STAGES
    jobs = {
        name: resolved(config, name)
        for name in config
        if name not in GLOBAL_KEYWORDS and not name.startswith(".")
    }
    for name, job in jobs.items():
        assert job.get("stage") in STAGES, f"{language}: job {name} has no stage of {STAGES}"
        assert job.get("script"), f"{language}: job {name} has no script"
        # A line with ": " in it is a mapping to YAML, which the schema lets through.
        assert all(isinstance(line, str) for line in job["script"]), f"{language}: {name}"
        for need in job.get("needs", []):
            needed = need if isinstance(need, str) else need["job"]
            assert needed in jobs, f"{language}: {name} needs {needed}, which does not exist"
    by_stage = {
        stage: sorted(n for n, j in jobs.items() if j["stage"] == stage) for stage in STAGES
    }
    assert {"build", "test"} <= set(by_stage["build"] + by_stage["test"])
    assert by_stage["image"] == ["container-image"]
    assert by_stage["deploy"] == ["deploy"]
    assert config["variables"]["SERVICE_LANGUAGE"] == language
    # The image is built without a Docker daemon or a privileged container.
    image_job = jobs["container-image"]
    assert image_job["image"]["name"] == "$ADP_BUILDKIT_IMAGE"
    assert config["variables"]["ADP_BUILDKIT_IMAGE"].endswith("-rootless")
    assert not image_job.get("services"), "no docker:dind service"
    deploy = " ".join(jobs["deploy"]["script"])
    assert "helm upgrade --install" in deploy and ".platform/infra/charts/service" in deploy


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_example_includes_its_template_from_the_project_holding_the_chart(
    language: str,
):
    example = TEMPLATES / "examples" / f"{language}-service"
    [include] = yaml.safe_load((example / ".gitlab-ci.yml").read_text())["include"]
    assert include["file"] == f"infra/gitlab-ci/{language}.gitlab-ci.yml"
    assert (REPO_ROOT / include["file"]).is_file()
    variables = pipeline(language)["variables"]
    assert (include["project"], include["ref"]) == (
        variables["ADP_PLATFORM_PROJECT"],
        variables["ADP_PLATFORM_REF"],
    )
    assert (example / "Dockerfile").is_file() and example_values(language).is_file()


def test_the_runner_lets_the_image_job_ask_for_what_buildkit_needs():
    """The image job's annotation is one the runner allows, and job pods run as BuildKit
    rootless's uid (helm_values/gitlab-runner)."""
    import re
    import tomllib

    values = yaml.safe_load(
        (REPO_ROOT / "helm_values" / "gitlab-runner" / "values.yaml").read_text()
    )
    [runner] = tomllib.loads(values["runners"]["config"])["runners"]
    kubernetes = runner["kubernetes"]
    image_job = yaml.safe_load((TEMPLATES / "service.gitlab-ci.yml").read_text())[".adp-image"]
    annotation = image_job["variables"]["KUBERNETES_POD_ANNOTATIONS_1"].split("=")[0]
    assert re.fullmatch(kubernetes["pod_annotations_overwrite_allowed"], annotation)
    context = kubernetes["pod_security_context"]
    assert (context["run_as_non_root"], context["run_as_user"]) == (True, 1000)


# --- The service chart --------------------------------------------------------------------------


def example_values(language: str) -> Path:
    return TEMPLATES / "examples" / f"{language}-service" / "deploy" / "values.yaml"


def helm_args(language: str, *extra: str) -> tuple[str, ...]:
    """What the deploy job passes (service.gitlab-ci.yml), for a release in namespace shop."""
    return (
        "--namespace", "shop",
        "--values", str(example_values(language)),
        "--set-string", f"language={language}",
        "--set-string", f"image.repository=gitlab.example.com:5050/shop/{language}-service",
        "--set-string", "image.tag=0123456789abcdef",
        "--set-string", f"imagePullSecrets[0].name={language}-service-registry",
        *extra,
    )  # fmt: skip


def template(language: str, *extra: str) -> list[dict[str, Any]]:
    out = Command(
        ("helm", "template", f"{language}-service", str(CHART), "--kube-version", KUBE_VERSION,
         *helm_args(language, *extra))
    ).run()  # fmt: skip
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def grafana_sidecar() -> dict[str, Any]:
    """The dashboards sidecar of the platform's Grafana: kube-prometheus-stack's pinned chart
    defaults under this repository's values."""
    component = load_manifest(with_values=False).component("kube-prometheus-stack")
    archive = UPSTREAM_CHARTS / f"{component.chart}-{component.version}.tgz"
    with tarfile.open(archive) as tar:
        member = tar.extractfile(f"{component.chart}/values.yaml")
        assert member is not None
        defaults = yaml.safe_load(member)["grafana"]["sidecar"]["dashboards"]
    ours = yaml.safe_load(
        (REPO_ROOT / "helm_values" / "kube-prometheus-stack" / "values.yaml").read_text()
    )
    return {**defaults, **(ours.get("grafana", {}).get("sidecar", {}).get("dashboards", {}))}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_chart_renders_and_lints_for_each_example(language: str):
    values = yaml.safe_load(example_values(language).read_text())
    lint = Command(
        (
            "helm",
            "lint",
            "--strict",
            str(CHART),
            "--kube-version",
            KUBE_VERSION,
            *helm_args(language),
        )
    ).run(ok_codes=(0, 1))
    assert lint.returncode == 0, lint.stdout
    objects = template(language)
    assert sorted(o["kind"] for o in objects) == [
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service",
        "ServiceMonitor",
    ]  # fmt: skip
    # Every object as Kubernetes' own schema (and the Prometheus Operator's CRD) accepts it.
    assert list(object_problems(objects, {SERVICE_MONITOR}, KUBE_VERSION)) == []

    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    scaling = values["autoscaling"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": f"{language}-service",
    }  # fmt: skip
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (
        scaling["minReplicas"],
        scaling["maxReplicas"],
    )
    [metric] = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": scaling["targetCPUUtilizationPercentage"],
    }
    deployment = one(objects, "Deployment")["spec"]
    assert "replicas" not in deployment, "the HPA owns the replica count"
    pod = deployment["template"]["spec"]
    [container] = pod["containers"]
    assert container["resources"]["requests"]["cpu"] == values["resources"]["requests"]["cpu"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["image"] == f"gitlab.example.com:5050/shop/{language}-service:0123456789abcdef"
    assert container.get("args", []) == values.get("args", [])

    sidecar = grafana_sidecar()
    assert sidecar["enabled"] is True and sidecar["searchNamespace"] == "ALL"
    configmap = one(objects, "ConfigMap")
    assert configmap["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"] == "1"
    [(key, text)] = configmap["data"].items()
    assert key == f"{language}-service.json"
    dashboard = json.loads(text)
    assert dashboard["title"] == f"shop / {language}-service"
    assert language in dashboard["tags"]
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert all('namespace="shop"' in e for e in exprs)
    assert any(f'horizontalpodautoscaler="{language}-service"' in e for e in exprs)


def test_each_release_has_its_own_dashboard_uid():
    uids = {
        json.loads(
            next(iter(one(template("python", "--namespace", ns), "ConfigMap")["data"].values()))
        )["uid"]
        for ns in ("shop", "ads")
    }
    assert len(uids) == 2 and all(len(uid) <= 40 for uid in uids)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--set-string", "image.tag="), "at '/image/tag': minLength: got 0, want 1"),
        (("--set", "autoscaling.maxReplicas=1"),
         "autoscaling.maxReplicas (1) is below autoscaling.minReplicas (2): raise maxReplicas or lower minReplicas"),
        (("--set", "autoscaling.minReplicas=0"), "at '/autoscaling/minReplicas': minimum"),
        (("--set", "autoscaling.targetCPUUtilizationPercentage=150"),
         "at '/autoscaling/targetCPUUtilizationPercentage': maximum"),
        (("--set", "podSecurityContext.runAsNonRoot=false"), "at '/podSecurityContext/runAsNonRoot'"),
        (("--set-string", "language=go"), "at '/language'"),
        (("--set", "autoscaling.maxReplica=3"), "at '/autoscaling': additional properties 'maxReplica' not allowed"),
    ],
    ids=["no-image", "max-below-min", "min-zero", "target-over-100", "root", "language", "typo"],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_key(extra: tuple[str, ...], message: str):
    with pytest.raises(ToolError) as refused:
        template("python", *extra)
    assert message in str(refused.value)


def test_a_values_file_without_image_is_refused():
    """The chart alone (no deploy job to set the image) renders nothing."""
    result = Command(("helm", "template", "svc", str(CHART))).run(ok_codes=(1,))
    assert "at '/image/repository': minLength: got 0, want 1" in result.stderr


# --- On the local cluster -----------------------------------------------------------------------


def kubectl_json(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    result = cluster.kubectl(*args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.mark.integration
@pytest.mark.slow
def test_the_deploy_job_installs_a_service_that_becomes_available(
    local_cluster: LocalCluster, stack_settings: Settings
):
    """The deploy job's helm command on the real control plane (kwok runs the pods): the
    Deployment becomes Available with the HPA's minimum of pods, and the HPA, the dashboard and
    the ServiceMonitor are there as rendered."""
    # The ServiceMonitor CRD of the pinned kube-prometheus-stack (wave 0 of the platform).
    component = load_manifest(with_values=False).component("kube-prometheus-stack")
    with tarfile.open(UPSTREAM_CHARTS / f"{component.chart}-{component.version}.tgz") as tar:
        member = tar.extractfile(f"{component.chart}/charts/crds/crds/crd-servicemonitors.yaml")
        assert member is not None
        crd = member.read().decode()
    applied = local_cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=crd
    )
    assert applied.returncode == 0, applied.stderr
    established = local_cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
    )  # fmt: skip
    assert established.returncode == 0, established.stderr

    release, namespace = "python-service", "shop"
    env = helm_env(stack_settings, "local")
    local_cluster.kubectl("create", "namespace", namespace)
    install = (
        "helm", "upgrade", "--install", release, str(CHART), *helm_args("python"),
        "--wait", "--timeout", "120s", "--atomic",
    )  # fmt: skip
    try:
        Command(install, env=env).run(timeout=300)
        deployment = kubectl_json(local_cluster, "-n", namespace, "get", "deployment", release)
        conditions = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
        assert conditions["Available"] == "True"
        minimum = yaml.safe_load(example_values("python").read_text())["autoscaling"]["minReplicas"]
        assert deployment["status"]["readyReplicas"] == minimum

        hpa = kubectl_json(local_cluster, "-n", namespace, "get", "hpa", release)
        rendered = one(template("python"), "HorizontalPodAutoscaler")
        assert hpa["spec"] == rendered["spec"]

        configmap = kubectl_json(
            local_cluster, "-n", namespace, "get", "configmap", f"{release}-dashboard"
        )
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        json.loads(configmap["data"][f"{release}.json"])
        monitor = kubectl_json(local_cluster, "-n", namespace, "get", "servicemonitor", release)
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        kubectl_json(local_cluster, "-n", namespace, "get", "poddisruptionbudget", release)

        # The next push: the same command again upgrades in place, the HPA's count kept.
        Command(install, env=env).run(timeout=300)
        again = kubectl_json(local_cluster, "-n", namespace, "get", "deployment", release)
        assert again["metadata"]["generation"] == deployment["metadata"]["generation"]
    finally:
        Command(("helm", "uninstall", release, "-n", namespace, "--wait"), env=env).run(
            ok_codes=(0, 1)
        )
        local_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
