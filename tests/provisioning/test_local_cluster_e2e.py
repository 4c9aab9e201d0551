"""The provisioning DAGs for real, on the real Airflow of the local stack (REST API only:
platform-admin triggers, platform-approver approves), against the local Kubernetes cluster (real
control plane, kwok nodes) started once per session, with real upstream charts from the mirror.

The tests run in file order and build on each other: install, re-run with no change, two failed
upgrades rolled back (once `helm upgrade --wait` fails, once the health gate after it), drift,
then a provision run whose wave fails its gate and is rolled back while the later waves never
start, then the default StorageClass from its own wave. The subset of charts keeps the run short:
cert-manager and what it depends on (Cilium), cluster-issuers (never installed: its wave never
starts) and local-path-provisioner.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow_client.client import DAGPatchBody

from adplatform.provisioning.cluster import LocalCluster
from adplatform.provisioning.commands import ToolError
from adplatform.provisioning.manifest import load_manifest
from adplatform.settings import Settings
from tests.provisioning.conftest import DRIFT, PROVISION, UPGRADE, ChartMirror

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMPONENTS = ["cert-manager"]  # what it depends on (cilium, ...) comes along in earlier waves
WAVES = load_manifest(with_values=False).waves(COMPONENTS)  # as the DAG's wave_N task groups
RELEASES = [name for wave in WAVES for name in wave]


def helm_history(cluster: LocalCluster, settings: Settings, release: str) -> list[dict]:
    from adplatform.provisioning.commands import Command
    from adplatform.provisioning.releases import helm_env

    namespace = load_manifest(with_values=False).component(release).namespace
    result = Command(
        ("helm", "history", release, "-n", namespace, "-o", "json"),
        env=helm_env(settings, "local"),
    ).run()
    return list(json.loads(result.stdout))


def kubectl_json(cluster: LocalCluster, *args: str) -> dict:
    result = cluster.kubectl(*args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def provision(client, approver, components: list[str]) -> str:
    """A run ``client`` triggers and ``approver`` approves (nobody approves their own)."""
    run_id = client.trigger(
        PROVISION, {"environment": "local", "components": components, "dry_run": False}
    )
    client.wait_for_input(PROVISION, run_id, "approve")
    approver.respond(PROVISION, run_id, "approve", "Approve")
    client.wait_for_run(PROVISION, run_id)
    return run_id


def recorded(settings: Settings, run_id: str) -> list[dict]:
    path = settings.provisioning_dir / "local" / "upgrades.jsonl"
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["run_id"] == run_id]


@pytest.fixture(scope="module")
def cluster(local_cluster: LocalCluster, chart_mirror: ChartMirror) -> LocalCluster:
    return local_cluster


def adplatform(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, configured by the session's ADP_* variables."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "adplatform"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **settings.environment()},
        check=False,
    )


def test_the_cluster_commands_report_and_repeat_harmlessly(cluster, stack_settings):
    for args in (["cluster", "--help"], ["cluster", "up", "--help"], ["cluster", "down", "-h"]):
        shown = adplatform(stack_settings, *args)
        assert shown.returncode == 0 and "Usage:" in shown.stdout

    again = adplatform(stack_settings, "cluster", "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already running") == len(cluster.parts)
    assert "3/3 nodes Ready" in again.stdout
    status = adplatform(stack_settings, "cluster", "status")
    assert status.returncode == 0, status.stdout
    assert kubectl_json(cluster, "version")["serverVersion"]["gitVersion"] == "v1.37.2"


def test_provisioning_local_installs_real_releases_wave_by_wave(
    cluster, platform_admin, platform_approver, stack_settings
):
    run_id = provision(platform_admin, platform_approver, COMPONENTS)

    states = platform_admin.task_states(PROVISION, run_id)
    assert platform_admin.dag_runs.get_dag_run(PROVISION, run_id).state == "success", states
    for number, wave in enumerate(WAVES):
        steps = platform_admin.xcom(PROVISION, run_id, f"wave_{number}.deploy")
        assert [(s["component"], s["action"]) for s in steps] == [(n, "install") for n in wave]
    for release in RELEASES:
        [revision] = helm_history(cluster, stack_settings, release)
        assert revision["status"] == "deployed"
        assert revision["description"] == "applied by adplatform"
    deployments = kubectl_json(cluster, "get", "deployments", "-n", "cert-manager")["items"]
    assert {d["metadata"]["name"] for d in deployments} == {
        "cert-manager",
        "cert-manager-cainjector",
        "cert-manager-webhook",
    }
    assert all(d["status"].get("readyReplicas") == d["spec"]["replicas"] for d in deployments)
    crd = kubectl_json(cluster, "get", "crd", "certificates.cert-manager.io")
    assert {"type": "Established", "status": "True"}.items() <= {
        k: v
        for c in crd["status"]["conditions"]
        for k, v in c.items()
        if c["type"] == "Established"
    }.items()
    [gate] = platform_admin.xcom(PROVISION, run_id, f"wave_{len(WAVES) - 1}.health_gate")
    assert gate["component"] == "cert-manager"
    assert gate["healthy"] is True and gate["details"] == []


def test_a_second_run_with_nothing_changed_makes_no_new_revision(
    cluster, platform_admin, platform_approver, stack_settings
):
    run_id = provision(platform_admin, platform_approver, COMPONENTS)

    assert platform_admin.dag_runs.get_dag_run(PROVISION, run_id).state == "success"
    # The approval said so: the installed values are the values files'.
    approval = platform_admin.xcom(PROVISION, run_id, "plan")["text"]
    assert (
        f"cert-manager {load_manifest(with_values=False).component('cert-manager').version}: no change"
        in approval
    )
    for number, wave in enumerate(WAVES):
        steps = platform_admin.xcom(PROVISION, run_id, f"wave_{number}.deploy")
        assert [s["action"] for s in steps] == ["unchanged"] * len(wave)
    for release in RELEASES:
        assert len(helm_history(cluster, stack_settings, release)) == 1


def upgrade(client, approver, version: str) -> str:
    run_id = client.trigger(
        UPGRADE,
        {
            "environment": "local",
            "component": "cert-manager",
            "target_version": version,
            "dry_run": False,
        },
    )
    client.wait_for_input(UPGRADE, run_id, "approve")
    approver.respond(UPGRADE, run_id, "approve", "Approve")
    client.wait_for_run(UPGRADE, run_id)
    return run_id


def test_an_upgrade_whose_helm_wait_fails_is_rolled_back(
    cluster, platform_admin, platform_approver, chart_mirror, stack_settings
):
    """The new controller pods never become ready (kwok keeps them in CrashLoopBackOff):
    `helm upgrade --wait` times out, the gate reports it, the release goes back to revision 1."""
    run_id = upgrade(platform_admin, platform_approver, chart_mirror.cert_manager_crash_loop)

    assert platform_admin.dag_runs.get_dag_run(UPGRADE, run_id).state == "failed"
    states = platform_admin.task_states(UPGRADE, run_id)
    assert states["rollback"] == "success" and states["verdict"] == "failed", states
    assert platform_admin.xcom(UPGRADE, run_id, "upgrade")["error"]
    [entry] = recorded(stack_settings, run_id)
    assert entry["outcome"] == "rolled back"
    assert (entry["previous_revision"], entry["failed_revision"]) == (1, 2)
    assert entry["reason"].startswith("helm upgrade failed:")
    history = helm_history(cluster, stack_settings, "cert-manager")
    assert [h["status"] for h in history] == ["superseded", "failed", "deployed"]
    assert history[-1]["description"] == "Rollback to 1"
    assert history[-1]["chart"] == "cert-manager-v1.19.1"


def test_an_upgrade_that_fails_its_health_gate_afterwards_is_rolled_back(
    cluster, platform_admin, platform_approver, chart_mirror, stack_settings
):
    """helm is satisfied (it does not wait for Jobs), but a Job of the new release fails: the
    gate sees it and the release goes back to the revision before the upgrade."""
    run_id = upgrade(platform_admin, platform_approver, chart_mirror.cert_manager_failing_job)

    assert platform_admin.dag_runs.get_dag_run(UPGRADE, run_id).state == "failed"
    assert platform_admin.xcom(UPGRADE, run_id, "upgrade")["error"] == ""
    gate = platform_admin.xcom(UPGRADE, run_id, "health_gate")
    assert gate["healthy"] is False and gate["checked"] is True
    failed_job = "Job cert-manager/cert-manager-failing-check: failed: BackoffLimitExceeded"
    assert failed_job in gate["details"], gate
    [entry] = recorded(stack_settings, run_id)
    assert entry["outcome"] == "rolled back" and failed_job in entry["reason"]
    assert (entry["previous_revision"], entry["failed_revision"]) == (3, 4)
    history = helm_history(cluster, stack_settings, "cert-manager")
    assert [h["status"] for h in history[-2:]] == ["superseded", "deployed"]
    assert history[-2]["chart"] == f"cert-manager-{chart_mirror.cert_manager_failing_job}"
    assert history[-1]["description"] == "Rollback to 3"
    assert history[-1]["chart"] == "cert-manager-v1.19.1"
    assert cluster.kubectl("-n", "cert-manager", "get", "job/cert-manager-failing-check").returncode


def test_drift_names_a_patched_object_and_a_release_upgraded_outside_airflow(
    cluster, platform_admin, stack_settings
):
    from adplatform.provisioning.commands import Command
    from adplatform.provisioning.releases import helm_env

    patched = cluster.kubectl(
        "-n", "cert-manager", "patch", "deployment", "cert-manager-webhook", "--type=merge",
        "-p", '{"spec": {"replicas": 2}}',
    )  # fmt: skip
    assert patched.returncode == 0, patched.stderr
    cilium = load_manifest(with_values=False).component("cilium")
    Command(
        (
            "helm", "upgrade", "cilium", "-n", cilium.namespace, "--reuse-values",
            str(stack_settings.helm_chart_mirror) + f"/cilium-{cilium.version}.tgz",
        ),
        env=helm_env(stack_settings, "local"),
    ).run()  # fmt: skip

    platform_admin.dags.patch_dag(DRIFT, DAGPatchBody(is_paused=False))
    run_id = platform_admin.trigger(DRIFT)
    assert platform_admin.wait_for_run(DRIFT, run_id).state == "failed"
    report = platform_admin.xcom(DRIFT, run_id, "report", map_index=0)
    assert report["environment"] == "local" and report["drift"] is True
    drift = {(d["component"], d["drift"].split(" changed")[0]) for d in report["releases"]}
    assert ("cert-manager", "apps.v1.Deployment.cert-manager.cert-manager-webhook") in drift
    outside = [d["drift"] for d in report["releases"] if d["component"] == "cilium"]
    assert any("revision 2 was made outside Airflow" in d for d in outside), outside
    assert not any("cert-manager-cainjector" in d["drift"] for d in report["releases"])


def test_a_failed_wave_is_rolled_back_and_later_waves_do_not_start(
    cluster, platform_admin, platform_approver, chart_mirror, stack_settings
):
    """cilium's last revision was made outside Airflow (the drift test), so provisioning applies
    it again, from a mirror that now serves a bad build of the pinned chart: helm --wait passes,
    a Job of the release fails, the gate rolls cilium back to the revision before the run, and
    the later waves (cert-manager's, then cluster-issuers') never start."""
    components = ["cluster-issuers"]
    waves = load_manifest(with_values=False).waves(components)
    cilium = load_manifest(with_values=False).component("cilium")
    served = chart_mirror.path / f"cilium-{cilium.version}.tgz"
    real = served.readlink()
    served.unlink()
    served.symlink_to(chart_mirror.broken_cilium)
    try:
        run_id = provision(platform_admin, platform_approver, components)
    finally:
        served.unlink()
        served.symlink_to(real)

    assert platform_admin.dag_runs.get_dag_run(PROVISION, run_id).state == "failed"
    states = platform_admin.task_states(PROVISION, run_id)
    failed = next(number for number, wave in enumerate(waves) if "cilium" in wave)
    assert states[f"wave_{failed}.deploy"] == "success", states
    assert states[f"wave_{failed}.health_gate"] == "failed", states
    later = {
        task: state
        for task, state in states.items()
        if task.startswith("wave_") and int(task[5:].split(".")[0]) > failed
    }
    assert later and set(later.values()) == {"upstream_failed"}, states
    [entry] = recorded(stack_settings, run_id)
    assert (entry["component"], entry["outcome"]) == ("cilium", "rolled back")
    assert (entry["previous_revision"], entry["failed_revision"]) == (2, 3)
    assert entry["reason"].startswith("health gate failed: ")
    assert "Job kube-system/cilium-failing-check: failed" in entry["reason"], entry["reason"]
    history = helm_history(cluster, stack_settings, "cilium")
    assert history[-1]["description"] == "Rollback to 2" and history[-1]["status"] == "deployed"
    with pytest.raises(ToolError, match="not found"):  # never installed
        helm_history(cluster, stack_settings, "cluster-issuers")


def test_local_path_is_the_only_default_storage_class_and_its_claims_bind(
    cluster, platform_admin, platform_approver
):
    """The local environment's default StorageClass is made by the provisioning flow (the
    local-path-provisioner component), not assumed by the values that name it, and it is the only
    default: a claim that names no class gets it and binds for the pod that uses it."""
    run_id = provision(platform_admin, platform_approver, ["local-path-provisioner"])

    states = platform_admin.task_states(PROVISION, run_id)
    assert platform_admin.dag_runs.get_dag_run(PROVISION, run_id).state == "success", states
    classes = kubectl_json(cluster, "get", "storageclass")["items"]
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if (c["metadata"].get("annotations") or {}).get(
            "storageclass.kubernetes.io/is-default-class"
        )
        == "true"
    ]
    assert defaults == ["local-path"], defaults
    local_path = next(c for c in classes if c["metadata"]["name"] == "local-path")
    assert local_path["provisioner"] == "cluster.local/local-path-provisioner"  # the chart's
    assert local_path["volumeBindingMode"] == "WaitForFirstConsumer"

    claim_and_pod = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "default-class-check", "namespace": "default"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "default-class-check", "namespace": "default"},
                "spec": {
                    "containers": [{"name": "check", "image": "busybox:1.37"}],
                    "volumes": [
                        {
                            "name": "data",
                            "persistentVolumeClaim": {"claimName": "default-class-check"},
                        }
                    ],
                },
            },
        ],
    }
    created = cluster.kubectl("apply", "-f", "-", stdin=json.dumps(claim_and_pod))
    assert created.returncode == 0, created.stderr
    waited = cluster.kubectl(
        "-n", "default", "wait", "pvc/default-class-check",
        "--for=jsonpath={.status.phase}=Bound", "--timeout=90s",
    )  # fmt: skip
    claim = kubectl_json(cluster, "-n", "default", "get", "pvc", "default-class-check")
    assert waited.returncode == 0, claim
    assert claim["spec"]["storageClassName"] == "local-path"
