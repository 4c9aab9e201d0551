"""The provisioning steps in-process against the session's local cluster: a backup Job on its
bound volume, and the refusals that come before anything changes (unknown component, a chart
version the mirror lacks, a cluster that does not answer, a port in use)."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from adplatform.localstack import StackError
from adplatform.provisioning import flow
from adplatform.provisioning.cluster import PORT_SPAN, LocalCluster
from adplatform.provisioning.commands import ToolError
from adplatform.provisioning.manifest import ManifestError, load_manifest
from adplatform.provisioning.releases import deploy
from adplatform.provisioning.upgrade import BACKUP_CLAIM, backup_job, run_backup
from adplatform.settings import Settings, get_settings, load_settings
from tests.conftest import free_port
from tests.provisioning.conftest import ChartMirror

pytestmark = [pytest.mark.integration]


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings (and Airflow connections) read from the environment afresh per test."""
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def use(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    for name, value in {**settings.environment(), **settings.airflow_connections()}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def test_a_backup_job_runs_on_the_cluster_and_writes_to_a_bound_volume(
    local_cluster: LocalCluster, stack_settings, chart_mirror: ChartMirror, configured, monkeypatch
):
    use(monkeypatch, stack_settings)
    manifest = load_manifest(with_values=False)
    # The volume comes from the default StorageClass, local-path on `local`: its release first.
    storage = deploy(stack_settings, manifest, "local", "local-path-provisioner", dry_run=False)
    assert storage.action in ("install", "unchanged"), storage.error
    component = manifest.component("postgresql")
    assert component.backup is not None
    # What the release and Vault provide before an upgrade: the namespace and the credentials.
    local_cluster.kubectl("create", "namespace", component.namespace)
    local_cluster.kubectl(
        "-n", component.namespace, "create", "secret", "generic",
        component.backup.credentials_secret, "--from-literal=PGPASSWORD=not-used",
    )  # fmt: skip
    job = backup_job(component, "local", "20261202t0500")

    succeeded = f"backup job postgresql/{job['metadata']['name']} succeeded"
    outcome = run_backup(stack_settings, "local", job, timeout=300)
    # local-path binds the claim for the Job's pod (WaitForFirstConsumer), after the first look.
    assert (
        outcome
        == f"{succeeded} (volume postgresql/{BACKUP_CLAIM} (local-path: bound for the Job's pod))"
    )
    # A retried task finds the Job it created, and the volume it wrote to, bound by then.
    again = run_backup(stack_settings, "local", job, timeout=300)
    assert again.startswith(f"{succeeded} (volume postgresql/{BACKUP_CLAIM} bound to pvc-")
    claim = json.loads(
        local_cluster.kubectl(
            "-n", component.namespace, "get", "pvc", BACKUP_CLAIM, "-o", "json"
        ).stdout
    )
    assert claim["status"]["phase"] == "Bound"
    pod = json.loads(
        local_cluster.kubectl(
            "-n", component.namespace, "get", "pods", "-l", f"job-name={job['metadata']['name']}",
            "-o", "json",
        ).stdout
    )["items"][0]  # fmt: skip
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["backups"]["persistentVolumeClaim"]["claimName"] == BACKUP_CLAIM
    assert pod["status"]["phase"] == "Succeeded"


def test_the_hcloud_token_reaches_the_secret_its_csi_driver_reads(
    local_cluster: LocalCluster, stack_settings, configured, monkeypatch
):
    request = {"environment": "local", "cloud": "hcloud", "dry_run": False}

    def stored_token() -> str:
        secret = json.loads(
            local_cluster.kubectl(
                "-n", "kube-system", "get", "secret", "hcloud", "-o", "json"
            ).stdout
        )
        return base64.b64decode(secret["data"]["token"]).decode()

    use(monkeypatch, stack_settings.model_copy(update={"hcloud_token": SecretStr("first-token")}))
    assert flow.store_cloud_secret(request) == (
        "Secret kube-system/hcloud holds the hcloud_default connection's credentials"
    )
    assert stored_token() == "first-token"
    # A token rotated in the connection reaches the cluster at the next run; a retry is harmless.
    use(monkeypatch, stack_settings.model_copy(update={"hcloud_token": SecretStr("rotated")}))
    flow.store_cloud_secret(request)
    flow.store_cloud_secret(request)
    assert stored_token() == "rotated"


def test_a_real_cloud_run_without_its_credentials_is_refused(
    stack_settings, chart_mirror: ChartMirror, configured, monkeypatch
):
    use(monkeypatch, stack_settings)  # no hcloud token: no hcloud_default connection
    with pytest.raises(ToolError, match=r"^the hcloud_default connection has no password: set"):
        flow.validate_request("staging", "hcloud", ["cert-manager"], False)
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "login": "AKIA"})
    )
    with pytest.raises(ToolError, match=r"^the aws_default connection has no password: set"):
        flow.validate_request("staging", "aws", ["cert-manager"], False)
    assert flow.validate_request("staging", "hcloud", ["cert-manager"], True)["dry_run"]


def test_an_unknown_component_is_refused_naming_it(stack_settings, configured, monkeypatch):
    use(monkeypatch, stack_settings)
    with pytest.raises(ManifestError, match="unknown component 'oracle'; choose from"):
        flow.validate_request("local", "existing", ["cert-manager", "oracle"], False)


def test_a_chart_version_the_mirror_lacks_is_refused(
    stack_settings, chart_mirror: ChartMirror, configured, monkeypatch, tmp_path
):
    only_old = tmp_path / "mirror"
    only_old.mkdir()
    (only_old / "cert-manager-v1.18.0.tgz").write_bytes(b"")
    use(monkeypatch, stack_settings.model_copy(update={"helm_chart_mirror": str(only_old)}))
    with pytest.raises(ManifestError) as refused:
        flow.validate_request("local", "existing", ["cert-manager"], False)
    message = str(refused.value)
    assert message.startswith(
        f"cert-manager: chart cert-manager v1.19.1 is not in the chart mirror {only_old}"
    )
    assert "it has cert-manager-v1.18.0.tgz" in message
    assert "add cert-manager-v1.19.1.tgz there" in message
    assert len(message.splitlines()) == 1  # the first missing chart, named with the fix


def test_a_real_run_into_a_cluster_that_does_not_answer_is_refused(
    stack_settings, chart_mirror: ChartMirror, configured, monkeypatch, tmp_path
):
    settings = load_settings(data_root=tmp_path / "data", helm_chart_mirror=str(chart_mirror.path))
    kubeconfig = settings.provisioning_dir / "local" / "kubeconfig"
    use(monkeypatch, settings)
    with pytest.raises(ToolError, match=r"no cluster .* start it with `adplatform cluster up`"):
        flow.validate_request("local", "existing", ["cert-manager"], False)

    kubeconfig.parent.mkdir(parents=True, exist_ok=True)  # the values check made it
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    with pytest.raises(ToolError, match=r"does not answer .*start it with `adplatform cluster up`"):
        flow.validate_request("local", "existing", ["cert-manager"], False)
    # A dry run changes nothing, so it needs no cluster.
    assert flow.validate_request("local", "existing", ["cert-manager"], True)["dry_run"]


def test_cluster_up_refuses_a_port_in_use_naming_the_setting(tmp_path: Path):
    port = free_port(span=PORT_SPAN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))  # etcd's port
        taken.listen()
        cluster = LocalCluster(load_settings(data_root=tmp_path / "data", cluster_api_port=port))
        with pytest.raises(StackError, match=f"port {port + 1} is in use .*ADP_CLUSTER_API_PORT"):
            cluster.up()
    assert all(part.pid() is None for part in cluster.parts)
