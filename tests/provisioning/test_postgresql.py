"""PostgreSQL as CloudNativePG runs it: the Cluster the clients name, and a health gate that waits
for the Cluster's own Ready condition (the operator makes the instance pods; the chart has no
workload of its own)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from adplatform.provisioning.cluster import LocalCluster
from adplatform.provisioning.manifest import load_manifest
from adplatform.provisioning.releases import check_health, deploy
from adplatform.settings import REPO_ROOT
from tests.provisioning.conftest import ChartMirror, rendered_release, served_apis

ENVIRONMENTS = ["local", "staging", "production"]
CRDS = served_apis({"postgresql.cnpg.io/v1": ("Cluster", "ScheduledBackup", "Pooler")})
HOST = re.compile(r"\b([a-z0-9-]+)\.([a-z0-9-]+)\.svc\b")


def the_cluster(environment: str, cache) -> dict[str, Any]:
    [cluster] = [
        o
        for o in rendered_release("postgresql", environment, cache, CRDS)
        if o["kind"] == "Cluster"
    ]
    return cluster


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_client_names_a_service_the_cluster_makes(environment, chart_cache):
    """CloudNativePG names the Services after the Cluster (<name>-rw, -ro, -r); a client naming
    the chart's default <release>-cluster-rw would never connect."""
    cluster = the_cluster(environment, chart_cache)
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    services = {f"{name}-{suffix}" for suffix in ("rw", "ro", "r")}
    clients = {
        (path.relative_to(REPO_ROOT).as_posix(), service)
        for path in sorted((REPO_ROOT / "helm_values").glob("*/*.yaml"))
        for service, where in HOST.findall(path.read_text())
        if where == namespace
    }
    assert {c for c, _ in clients} >= {
        "helm_values/gitlab/values.yaml",
        "helm_values/jupyterhub/values.yaml",
        "helm_values/mlflow/values.yaml",
    }
    assert {(c, s) for c, s in clients if s not in services} == set()
    component = load_manifest(with_values=False).component("postgresql")
    assert component.health.selector == f"cnpg.io/cluster={name}"
    assert component.health.ready == {"Cluster": "Ready"}


@pytest.mark.integration
@pytest.mark.slow
def test_the_gate_waits_for_the_clusters_ready_condition(
    local_cluster: LocalCluster,
    stack_settings,
    chart_mirror: ChartMirror,
    configured,
    cluster_releases_undone,
):
    """The operator's release and the Cluster's, installed as provisioning installs them (the
    operator's webhooks, which kwok's pod cannot serve, are not called on local). Nothing
    reconciles the Cluster here, so the gate passes on what the API server accepted; once the
    Cluster reports a condition, the gate reads it, as it does on every other cluster."""
    manifest = load_manifest(with_values=False)
    component = manifest.component("postgresql")
    for name in ("postgres-operator", "postgresql"):
        step = deploy(stack_settings, manifest, "local", name, dry_run=False)
        assert step.action == "install", step.error
    assert check_health(stack_settings, "local", component).details == []

    def report(status: str, message: str) -> list[str]:
        condition = {"type": "Ready", "status": status, "reason": "Test", "message": message}
        condition["lastTransitionTime"] = "2026-12-03T00:00:00Z"
        patched = local_cluster.kubectl(
            "-n", component.namespace, "patch", "clusters.postgresql.cnpg.io", "postgresql",
            "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"conditions": [condition]}}),
        )  # fmt: skip
        assert patched.returncode == 0, patched.stderr
        return check_health(stack_settings, "local", component).details

    assert report("False", "Cluster Is Not Ready") == [
        "Cluster postgresql/postgresql: Ready is False: Cluster Is Not Ready"
    ]
    assert report("True", "Cluster is Ready") == []
    typo = component.model_copy(
        update={"health": component.health.model_copy(update={"ready": {"Clustr": "Ready"}})}
    )
    assert check_health(stack_settings, "local", typo).details == [
        "health.ready names Clustr, but the release holds no Clustr"
    ]
