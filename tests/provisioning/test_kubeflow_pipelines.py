"""Kubeflow Pipelines, the platform's kustomize component: rendered offline from the chart
mirror's archives (the Argo Workflows remote bases rewritten to the mirror's archive), refused
naming the file when an archive is missing or broken, and installed by the provisioning flow's
own steps on the session's local cluster (real API server, kwok nodes): planned, applied, verified
by the health gate, re-run without change, rolled back to its previous revision and, as after a
failed first install, deleted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from adplatform.provisioning import flow, kustomize
from adplatform.provisioning.cluster import LocalCluster
from adplatform.provisioning.manifest import ManifestError, load_manifest
from adplatform.provisioning.releases import check_in_mirror, deploy, object_drift, values_diff
from adplatform.settings import Settings, load_settings
from tests.provisioning.conftest import UPSTREAM_CHARTS

NAME = "kubeflow-pipelines"
ARGO = "argo-workflows-v4.0.5-manifests.tgz"


@pytest.fixture(scope="module")
def component():
    return load_manifest().component(NAME)


@pytest.mark.parametrize("environment", ["local", "staging", "production"])
def test_the_manifests_render_offline_from_the_mirror(component, environment, tmp_path):
    rendered = kustomize.render(component, environment, str(UPSTREAM_CHARTS), tmp_path)

    cluster_scoped, env = rendered.objects(0), rendered.objects(1)
    assert len(cluster_scoped) > 0 and len(env) > 0
    deployments = {o["metadata"]["name"]: o for o in env if o["kind"] == "Deployment"}
    assert "workflow-controller" in deployments  # Argo's, from the mirror's Argo archive
    assert {"ml-pipeline", "ml-pipeline-ui", "mysql", "seaweedfs"} <= set(deployments)
    crds = {
        o["metadata"]["name"] for o in cluster_scoped if o["kind"] == "CustomResourceDefinition"
    }
    assert {"workflows.argoproj.io", "scheduledworkflows.kubeflow.org"} <= crds
    assert all(o["metadata"].get("namespace") in (None, "kubeflow") for o in cluster_scoped + env)
    # No remote reference is left, in the rendered objects or in the extracted manifests.
    assert all("github.com/argoproj" not in text for _, text in rendered.stages)
    extracted = kustomize.sources(component, str(UPSTREAM_CHARTS), tmp_path).parent
    for kustomization in extracted.rglob("kustomization.yaml"):
        remote = re.search(r"^\s*-\s*(https?://|github\.com/)\S*", kustomization.read_text(), re.M)
        assert remote is None, f"{kustomization}: {remote and remote[0]}"
    # The overlays: every container sized, production's stateless servers doubled.
    replicas = deployments["ml-pipeline"]["spec"].get("replicas", 1)
    assert replicas == (2 if environment == "production" else 1)
    for deployment in deployments.values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container["resources"]["limits"]["memory"], deployment["metadata"]["name"]


@pytest.fixture
def mirror_without(tmp_path: Path):
    """A copy of the mirror (links) without one archive, or with it replaced by other bytes."""

    def make(archive: str, replacement: bytes | None = None) -> Path:
        mirror = tmp_path / "mirror"
        mirror.mkdir()
        for path in UPSTREAM_CHARTS.glob("*.tgz"):
            if path.name != archive:
                (mirror / path.name).symlink_to(path)
        if replacement is not None:
            (mirror / archive).write_bytes(replacement)
        return mirror

    return make


def test_a_missing_archive_is_refused_naming_it_before_anything_is_applied(
    component, mirror_without, tmp_path
):
    mirror = mirror_without(ARGO)
    settings = load_settings(data_root=tmp_path / "data", helm_chart_mirror=str(mirror))

    # validate_request's first check, before any render or apply
    with pytest.raises(ManifestError) as refused:
        check_in_mirror(settings, component, component.version)
    [line] = refused.value.problems
    assert f"{mirror / ARGO} is missing from the chart mirror (ADP_HELM_CHART_MIRROR)" in line
    assert f"add {ARGO} there" in line
    with pytest.raises(kustomize.KustomizeError, match=f"{ARGO} is missing"):
        kustomize.render(component, "local", str(mirror), tmp_path / "cache")
    assert not (settings.provisioning_dir / "local" / "kustomize").exists()


def test_a_broken_archive_is_refused_naming_it(component, mirror_without, tmp_path):
    mirror = mirror_without(ARGO, b"not a tar archive")

    with pytest.raises(kustomize.KustomizeError) as refused:
        kustomize.render(component, "local", str(mirror), tmp_path / "cache")
    [line] = refused.value.problems
    assert f"{mirror / ARGO} is not a readable tar.gz archive" in line
    assert "replace it with the archive the mirror's SOURCES.tsv describes" in line


def test_a_remote_base_the_mirror_does_not_serve_is_refused_naming_the_file(component, tmp_path):
    spec = component.kustomize.model_copy(update={"remote_bases": {}})
    unserved = component.model_copy(update={"kustomize": spec})

    with pytest.raises(kustomize.KustomizeError) as refused:
        kustomize.render(unserved, "local", str(UPSTREAM_CHARTS), tmp_path)
    [line] = refused.value.problems
    assert (
        "kustomize/third-party/argo/" in line and "/kustomization.yaml names https://github" in line
    )
    assert "add its archive to components.kubeflow-pipelines.kustomize.remote_bases" in line
    assert not list((tmp_path / "kustomize").glob(".extract-*"))  # nothing half-extracted left


def test_an_overlay_that_does_not_render_is_refused_naming_the_overlay(
    component, scratch_repo, tmp_path
):
    patch = scratch_repo / "helm_values" / NAME / "local" / "resources.yaml"
    patch.write_text(patch.read_text().replace("name: mysql\n", "name: mysqll\n"))

    with pytest.raises(kustomize.KustomizeError) as refused:
        kustomize.render(component, "local", str(UPSTREAM_CHARTS), tmp_path, scratch_repo)
    [line] = refused.value.problems
    assert "`kubectl kustomize` of env/platform-agnostic with " in line
    assert f"helm_values/{NAME}/local" in line and "mysqll" in line
    assert "\n" not in line


# --- On the local cluster --------------------------------------------------------------------------


def deployments(cluster: LocalCluster) -> dict[str, dict]:
    result = cluster.kubectl("-n", "kubeflow", "get", "deployments", "-o", "json")
    assert result.returncode == 0, result.stderr
    return {d["metadata"]["name"]: d for d in json.loads(result.stdout)["items"]}


def available(deployment: dict) -> bool:
    conditions = deployment.get("status", {}).get("conditions") or []
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


@pytest.mark.integration
@pytest.mark.slow
def test_provisioning_installs_verifies_re_runs_and_rolls_back_on_the_local_cluster(
    local_cluster: LocalCluster, configured: Settings, component, cluster_releases_undone
):
    settings, run_id = configured, "manual__kfp"
    request = flow.validate_request("local", "existing", [NAME], False)
    assert request["waves"][-1] == [NAME]

    # The plan shows what a first install creates.
    planned = values_diff(settings, "local", component)
    assert planned.startswith(f"{NAME}: not installed -> 2.17.0 (kustomize, ")
    assert "+ Deployment kubeflow/workflow-controller" in planned.splitlines()
    assert "+ CustomResourceDefinition workflows.argoproj.io" in planned.splitlines()

    for wave in request["waves"]:
        steps = flow.deploy_wave(request, wave, run_id)
        reports = flow.gate_wave(request, wave, steps, run_id)
        assert all(report["healthy"] for report in reports), reports
    [step] = steps
    assert (step["component"], step["action"], step["previous_revision"]) == (NAME, "install", None)
    assert "kubectl apply --server-side --field-manager=adplatform" in step["command"]
    [gate] = reports
    assert gate["healthy"] is True and gate["details"] == []
    live = deployments(local_cluster)
    assert {"workflow-controller", "ml-pipeline", "mysql"} <= set(live)
    assert all(available(d) for d in live.values()), {n: d["status"] for n, d in live.items()}
    crd = local_cluster.kubectl("get", "crd", "workflows.argoproj.io", "-o", "json")
    conditions = json.loads(crd.stdout)["status"]["conditions"]
    assert {"type": "Established", "status": "True"}.items() <= next(
        c for c in conditions if c["type"] == "Established"
    ).items()
    assert all(report["healthy"] for report in flow.smoke(request))

    # A re-run with nothing changed applies nothing, and the plan says so.
    manifest = load_manifest(with_values=False)
    again = deploy(settings, manifest, "local", NAME, dry_run=False)
    assert (again.action, again.previous_revision) == ("unchanged", 1)
    assert values_diff(settings, "local", component) == f"{NAME} 2.17.0: no change"

    # A change made by hand to a field the overlays set is in the plan's diff, and applying
    # takes it back (revision 2).
    limit = "/spec/template/spec/containers/0/resources/limits/memory"
    patched = local_cluster.kubectl(
        "-n", "kubeflow", "patch", "deployment", "ml-pipeline-ui", "--type=json",
        "-p", json.dumps([{"op": "replace", "path": limit, "value": "999Mi"}]),
    )  # fmt: skip
    assert patched.returncode == 0, patched.stderr
    assert "memory: 999Mi" in values_diff(settings, "local", component)
    drift = dict(object_drift(settings, "local", component))
    assert "apps.v1.Deployment.kubeflow.ml-pipeline-ui" in drift, drift
    applied = deploy(settings, manifest, "local", NAME, dry_run=False)
    assert (applied.action, applied.previous_revision) == ("upgrade", 1), applied.error
    ui = deployments(local_cluster)["ml-pipeline-ui"]["spec"]["template"]["spec"]
    assert ui["containers"][0]["resources"]["limits"]["memory"] == "256Mi"

    # Rollback re-applies the previous revision's manifests, recorded as a revision of its own.
    rolled = flow.upgrade_rollback(
        {"component": NAME, "environment": "local", "previous_revision": 1, "dry_run": False}
    )
    assert (rolled["failed_revision"], rolled["restored_revision"]) == (2, 1)
    recorded = kustomize.revisions(settings, "local", component)
    assert [(r.revision, r.status) for r in recorded][-1] == (3, "deployed")
    assert recorded[-1].description == "Rollback to 1"
    [report] = flow.gate_wave(request, [NAME], [again.__dict__], run_id)
    assert report["healthy"] is True

    # A first install that failed is deleted: no revision left, the namespace and CRDs going.
    deleted = kustomize.rollback(settings, "local", component, None, dry_run=False)
    assert deleted["failed_revision"] == 3 and "kubectl delete" in deleted["command"]
    assert kustomize.revisions(settings, "local", component) == []
    assert local_cluster.kubectl("get", "crd", "workflows.argoproj.io").returncode
