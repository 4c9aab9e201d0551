"""Auto-scaling and dashboards as the platform provisions them, from the real charts: the
`autoscalers` release's HPAs scale Deployments that the Airflow and MLflow releases make (by
name, in their namespace, with CPU requests to scale on), `metrics-server` serves the API they
read with its certificate checked, and the `grafana-dashboards` release carries every dashboard
of infra/grafana/dashboards, byte for byte, where kube-prometheus-stack's Grafana sidecar looks,
beside the four data sources. Then installed on the local cluster: metrics-server, MLflow and
the HPAs, which the controller-manager's HPA controller finds their target with; and the
dashboards' ConfigMaps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from adplatform.provisioning.cluster import LocalCluster
from adplatform.provisioning.commands import Command
from adplatform.provisioning.manifest import load_manifest
from adplatform.provisioning.releases import check_health, deploy, object_drift
from adplatform.settings import REPO_ROOT
from tests.provisioning.conftest import ChartMirror, rendered_release, served_apis

ENVIRONMENTS = ["local", "staging", "production"]
DASHBOARDS = sorted((REPO_ROOT / "infra" / "grafana" / "dashboards").glob("*.json"))
# The CRDs of earlier waves, as the cluster serves them (kube-prometheus-stack's objects).
CRDS = served_apis(
    {
        "monitoring.coreos.com/v1": (
            "ServiceMonitor",
            "PrometheusRule",
            "Prometheus",
            "Alertmanager",
        ),
        "cert-manager.io/v1": ("Certificate", "Issuer"),
    }
)


def rendered(name: str, environment: str, cache: Path) -> list[dict[str, Any]]:
    return rendered_release(name, environment, cache, CRDS)


def autoscalers(environment: str, cache: Path) -> list[dict[str, Any]]:
    return [
        o
        for o in rendered("autoscalers", environment, cache)
        if o["kind"] == "HorizontalPodAutoscaler"
    ]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_autoscaler_scales_a_deployment_its_release_makes(environment, chart_cache):
    deployments = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for name in ("airflow", "mlflow")
        for o in rendered(name, environment, chart_cache)
        if o["kind"] == "Deployment"
    }
    hpas = autoscalers(environment, chart_cache)
    assert {(h["metadata"]["namespace"], h["metadata"]["name"]) for h in hpas} == {
        ("airflow", "airflow-api-server"),
        ("mlflow", "mlflow"),
    }
    for hpa in hpas:
        spec = hpa["spec"]
        target = (hpa["metadata"]["namespace"], spec["scaleTargetRef"]["name"])
        assert spec["scaleTargetRef"]["kind"] == "Deployment" and target in deployments, target
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        # Utilization is relative to the requests: a container without a CPU request never scales.
        containers = deployments[target]["spec"]["template"]["spec"]["containers"]
        assert all(c["resources"]["requests"]["cpu"] for c in containers), target
        [metric] = spec["metrics"]
        assert metric["resource"]["name"] == "cpu"


def test_production_scales_out_further_than_the_local_cluster(chart_cache):
    bounds = {
        environment: {
            h["metadata"]["name"]: (h["spec"]["minReplicas"], h["spec"]["maxReplicas"])
            for h in autoscalers(environment, chart_cache)
        }
        for environment in ("local", "production")
    }
    assert bounds["local"] == {"airflow-api-server": (1, 2), "mlflow": (1, 2)}
    assert bounds["production"] == {"airflow-api-server": (3, 8), "mlflow": (2, 6)}
    [loki] = [
        o
        for o in rendered("loki", "production", chart_cache)
        if o["kind"] == "HorizontalPodAutoscaler"
    ]
    assert (loki["spec"]["minReplicas"], loki["spec"]["maxReplicas"]) == (3, 6)
    assert loki["spec"]["scaleTargetRef"]["name"] == "loki-read"


def test_the_autoscalers_chart_refuses_a_minimum_above_the_maximum(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "autoscalers": [
                    {
                        "name": "x",
                        "namespace": "x",
                        "deployment": "x",
                        "minReplicas": 4,
                        "maxReplicas": 2,
                        "cpuUtilization": 70,
                    }
                ]
            }
        )
    )
    result = Command(
        ("helm", "template", "x", str(REPO_ROOT / "infra/charts/autoscalers"), "-f", str(values))
    ).run(ok_codes=(0, 1))
    assert "autoscalers: x: minReplicas 4 is above maxReplicas 2" in result.stderr


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_metrics_server_serves_the_api_with_its_certificate_checked(environment, chart_cache):
    objects = rendered("metrics-server", environment, chart_cache)
    services = [o for o in objects if o["kind"] == "APIService"]
    if environment == "local":
        assert services == []  # kwok's nodes have no kubelet to scrape (helm_values/metrics-server)
        return
    [service] = services
    assert service["metadata"]["name"] == "v1beta1.metrics.k8s.io"
    assert not service["spec"].get("insecureSkipTLSVerify") and service["spec"]["caBundle"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_grafana_loads_every_dashboard_of_the_repository(environment, chart_cache):
    assert DASHBOARDS, "no dashboards in infra/grafana/dashboards"
    maps = [
        o
        for o in rendered("grafana-dashboards", environment, chart_cache)
        if o["kind"] == "ConfigMap"
    ]
    shipped = {key: value for m in maps for key, value in m["data"].items()}
    assert shipped == {path.name: path.read_text().rstrip("\n") for path in DASHBOARDS}
    stack = rendered("kube-prometheus-stack", environment, chart_cache)
    [grafana] = [
        o
        for o in stack
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "kube-prometheus-stack-grafana"
    ]
    [sidecar] = [
        c
        for c in grafana["spec"]["template"]["spec"]["containers"]
        if c["name"] == "grafana-sc-dashboard"
    ]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    for config_map in maps:
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["labels"][env["LABEL"]] == env["LABEL_VALUE"]
        assert config_map["metadata"]["annotations"][env["FOLDER_ANNOTATION"]] == "adplatform"
    [sources] = [
        o
        for o in stack
        if o["kind"] == "ConfigMap"
        and o["metadata"]["name"] == "kube-prometheus-stack-grafana-datasource"
    ]
    types = {s["type"] for s in yaml.safe_load(sources["data"]["datasource.yaml"])["datasources"]}
    assert {"prometheus", "grafana-clickhouse-datasource", "loki", "jaeger"} <= types


def wait_for(check, what: str, deadline_seconds: float = 120):
    """Polls until check() returns a value: the controllers act on their own schedule."""
    deadline = time.monotonic() + deadline_seconds
    while (found := check()) is None:
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(2)
    return found


@pytest.mark.integration
@pytest.mark.slow
def test_the_local_cluster_gets_the_autoscalers_and_the_dashboards(
    local_cluster: LocalCluster,
    stack_settings,
    chart_mirror: ChartMirror,
    chart_cache,
    configured,
    cluster_releases_undone,
):
    """metrics-server, MLflow and the autoscalers, then the dashboards, installed the way
    provisioning installs them; the HPA controller finds MLflow's Deployment to scale, and the
    drift check leaves the replicas it sets alone."""
    manifest = load_manifest(with_values=False)
    # What earlier waves make: Airflow's namespace (its release is not installed here) and
    # Grafana's (kube-prometheus-stack's release needs cert-manager's webhook, which kwok
    # cannot run).
    for namespace in ("airflow", "monitoring"):
        local_cluster.kubectl("create", "namespace", namespace)
    for name in ("metrics-server", "mlflow", "autoscalers", "grafana-dashboards"):
        step = deploy(stack_settings, manifest, "local", name, dry_run=False)
        assert step.action == "install", step.error
        health = check_health(stack_settings, "local", manifest.component(name))
        assert health.healthy, (name, health.details)

    want = {
        (h["metadata"]["namespace"], h["metadata"]["name"]): h["spec"]
        for h in autoscalers("local", chart_cache)
    }
    for (namespace, name), spec in want.items():
        live = json.loads(
            local_cluster.kubectl("-n", namespace, "get", "hpa", name, "-o", "json").stdout
        )
        assert live["spec"]["minReplicas"] == spec["minReplicas"] == 1
        assert live["spec"]["maxReplicas"] == spec["maxReplicas"] == 2
        assert live["spec"]["scaleTargetRef"] == spec["scaleTargetRef"]

    def mlflow_scale_found() -> dict[str, Any] | None:
        status = json.loads(
            local_cluster.kubectl("-n", "mlflow", "get", "hpa", "mlflow", "-o", "json").stdout
        ).get("status", {})
        conditions = {c["type"]: c for c in status.get("conditions", [])}
        return conditions if "AbleToScale" in conditions else None

    conditions = wait_for(mlflow_scale_found, "the HPA controller to read mlflow's scale")
    assert conditions["AbleToScale"]["status"] == "True", conditions
    # No kubelet, no metrics: the HPA holds its replicas rather than guessing.
    assert conditions["ScalingActive"]["status"] == "False", conditions

    # A scale-out by the HPA is not drift; any other change to the same Deployment is.
    mlflow = manifest.component("mlflow")
    local_cluster.kubectl("-n", "mlflow", "scale", "deployment", "mlflow", "--replicas=2")
    assert object_drift(stack_settings, "local", mlflow) == []
    local_cluster.kubectl(
        "-n", "mlflow", "patch", "deployment", "mlflow", "--type=merge",
        "-p", '{"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1}}}}',
    )  # fmt: skip
    [(obj, change)] = object_drift(stack_settings, "local", mlflow)
    assert obj == "apps.v1.Deployment.mlflow.mlflow" and "maxSurge: 1" in change
    assert "replicas" not in change

    for path in DASHBOARDS:
        live = json.loads(
            local_cluster.kubectl(
                "-n", "monitoring", "get", "configmap", f"dashboard-{path.stem}", "-o", "json"
            ).stdout
        )
        assert live["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(live["data"][path.name]) == json.loads(path.read_text())
