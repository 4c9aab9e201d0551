"""Vault's bootstrap on the local cluster, against a real `vault server` (TLS, file storage, real
init and unseal), and a secret delivered from it into a Kubernetes Secret by the real External
Secrets Operator controller, both host stand-ins of the session's cluster (cluster.py): the
vault, external-secrets and platform-secrets releases are installed by the provisioning flow with
the real charts, and Kubernetes auth reviews the operator's real service-account token against
the real API server."""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import hvac
import pytest
import yaml
from cryptography.fernet import Fernet

from adplatform.provisioning import flow, vault
from adplatform.provisioning.cluster import LocalCluster
from adplatform.provisioning.manifest import load_manifest
from adplatform.provisioning.releases import deploy
from adplatform.settings import REPO_ROOT, Settings

REQUEST = {"environment": "local", "components": ["vault"], "dry_run": False, "local_cluster": True}


def test_a_bad_platform_secrets_entry_is_refused_naming_file_and_key(scratch_repo: Path):
    """Refused when the plan is read, before a client to Vault exists."""
    shutil.copytree(REPO_ROOT / "infra" / "charts", scratch_repo / "infra" / "charts")
    values = scratch_repo / "helm_values" / "platform-secrets" / "values.yaml"
    data = yaml.safe_load(values.read_text())
    data["externalSecrets"][1]["vaultKey"] = "platform/../airflow"
    values.write_text(yaml.safe_dump(data))
    manifest = load_manifest(scratch_repo / "infra" / "platform.yaml", scratch_repo)
    with pytest.raises(vault.BootstrapError) as refused:
        vault.load_plan(manifest, "local")
    assert str(refused.value).startswith(
        "helm_values/platform-secrets/values.yaml: externalSecrets[1].vaultKey "
        "'platform/../airflow' is not a Vault key path"
    )

    data["externalSecrets"][1]["vaultKey"] = "platform/airflow/airflow-fernet-key"
    data["externalSecrets"][1]["fields"] = {"fernet-v2": ["fernet-key"]}
    values.write_text(yaml.safe_dump(data))
    with pytest.raises(vault.BootstrapError) as refused:
        vault.load_plan(
            load_manifest(scratch_repo / "infra" / "platform.yaml", scratch_repo), "local"
        )
    assert str(refused.value) == (
        "helm_values/platform-secrets/values.yaml: externalSecrets[1].fields.fernet-v2: "
        "not a kind: use one of password, fernet, hex, manual"
    )


def awaiting(status: str) -> str:
    """What a re-run reports for a secret: its manual fields still awaited, else found."""
    return status[status.index("awaiting") :] if "awaiting" in status else "found"


def wait_for(what: str, check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while (result := check()) is None:
        assert time.monotonic() < deadline, f"{what} after {timeout:.0f}s"
        time.sleep(1)
    return result


@pytest.mark.integration
@pytest.mark.slow
def test_vault_is_bootstrapped_and_external_secrets_delivers_from_it(
    local_cluster: LocalCluster,
    stack_settings: Settings,
    configured,
    cluster_releases_undone,
):
    manifest = load_manifest(with_values=False)
    for name in ("local-path-provisioner", "vault", "external-secrets"):
        step = deploy(stack_settings, manifest, "local", name, dry_run=False)
        assert step.action in ("install", "unchanged"), step.error
    server = next(part for part in local_cluster.stand_ins if part.name == "vault")
    keys = vault.LocalKeys(stack_settings)
    plan = vault.load_plan(load_manifest(), "local")
    anonymous = hvac.Client(
        url=f"https://127.0.0.1:{server.port}",
        verify=str(local_cluster.paths.pki / "ca.crt"),
    )
    # Killed right after init: the keys are on disk, Vault is initialised and sealed.
    assert vault.initialise(anonymous, "local", keys) == "created"
    assert anonymous.sys.is_sealed()
    assert keys.keys_file.stat().st_mode & 0o777 == 0o600
    assert keys.token_file.stat().st_mode & 0o777 == 0o600

    report = flow.bootstrap_vault(REQUEST)
    seeded = report.pop("secrets")
    assert report == {
        "initialised": "found",
        "unsealed": "created",
        "kv_engine": "created",
        "policy": "created",
        "kubernetes_auth": "created",
        "role": "created",
    }
    generated = {
        s.vault_key: [f for f, k in s.fields.items() if k != "manual"] for s in plan.secrets
    }
    for s in plan.secrets:
        manual = sorted(f for f, kind in s.fields.items() if kind == "manual")
        status = seeded[s.vault_key]
        assert status.startswith("created" if generated[s.vault_key] else "awaiting"), status
        assert (f"awaiting {', '.join(manual)}: set by hand" in status) == bool(manual), status
    root = hvac.Client(
        url=anonymous.url,
        token=keys.token_file.read_text(),
        verify=str(local_cluster.paths.pki / "ca.crt"),
    )
    mount = root.sys.list_mounted_secrets_engines()["data"]["secret/"]
    assert (mount["type"], mount["options"]["version"]) == ("kv", "2")
    role = root.auth.kubernetes.read_role("external-secrets")
    assert role["bound_service_account_names"] == ["external-secrets"]
    assert role["bound_service_account_namespaces"] == ["external-secrets"]
    assert role["token_policies"] == [vault.POLICY]
    stored = {
        key: root.secrets.kv.v2.read_secret_version(key)["data"]
        for key, fields in generated.items()
        if fields
    }
    for key, data in stored.items():
        assert sorted(data["data"]) == sorted(generated[key])
        assert not any(v in json.dumps(seeded) for v in data["data"].values())
    # Each kind in the format its reader takes: Airflow's Fernet key, JupyterHub's hex secrets.
    Fernet(stored["platform/airflow/airflow-fernet-key"]["data"]["fernet-key"])
    hub = stored["platform/jupyterhub/jupyterhub-hub-secrets"]["data"]
    assert all(len(bytes.fromhex(v)) == 32 for v in hub.values())

    # A second run changes nothing: no secret gets a new version; manual fields stay awaited.
    again = flow.bootstrap_vault(REQUEST)
    assert again.pop("secrets") == {k: awaiting(v) for k, v in seeded.items()}
    assert set(again.values()) == {"found"}
    for key, data in stored.items():
        assert root.secrets.kv.v2.read_secret_version(key)["data"] == data

    # A restarted Vault comes back sealed; a re-run unseals it and finds the rest.
    server.stop()
    server.start()
    assert anonymous.sys.is_sealed()
    after_restart = flow.bootstrap_vault(REQUEST)
    assert after_restart.pop("unsealed") == "created"
    assert after_restart.pop("secrets") == {k: awaiting(v) for k, v in seeded.items()}
    assert set(after_restart.values()) == {"found"}

    wanted = next(s for s in plan.secrets if s.name == "minio-root-credentials")
    # platform-secrets' ExternalSecrets, read by the operator through Kubernetes auth, which
    # trusts the stand-in's certificate through the CA Secret the local cluster publishes. A
    # namespace an earlier release created (as helm --create-namespace does) stays that release's.
    created = local_cluster.kubectl("create", "namespace", wanted.namespace)
    assert not created.returncode, created.stderr
    step = deploy(stack_settings, manifest, "local", "platform-secrets", dry_run=False)
    assert step.action == "install", step.error
    again = deploy(stack_settings, manifest, "local", "platform-secrets", dry_run=False)
    assert again.action == "unchanged", again.error

    def delivered() -> dict | None:
        got = local_cluster.kubectl(
            "-n", wanted.namespace, "get", "secret", wanted.name, "-o", "json"
        )
        return json.loads(got.stdout)["data"] if not got.returncode else None

    data = wait_for(f"no Secret {wanted.namespace}/{wanted.name}", delivered)
    assert {k: base64.b64decode(v).decode() for k, v in data.items()} == (
        stored[wanted.vault_key]["data"]
    )
