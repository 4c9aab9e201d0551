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
    assert report == {
        "initialised": "found",
        "unsealed": "created",
        "kv_engine": "created",
        "policy": "created",
        "kubernetes_auth": "created",
        "role": "created",
        "secrets": {s.vault_key: "created" for s in plan.secrets},
    }
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
        s.vault_key: root.secrets.kv.v2.read_secret_version(s.vault_key)["data"]
        for s in plan.secrets
    }
    for s in plan.secrets:
        assert sorted(stored[s.vault_key]["data"]) == sorted(s.fields)
    assert not any(
        v in json.dumps(report) for v in stored[plan.secrets[0].vault_key]["data"].values()
    )

    # A second run changes nothing: no secret gets a new version.
    again = flow.bootstrap_vault(REQUEST)
    assert set(again.pop("secrets").values()) == {"found"}
    assert set(again.values()) == {"found"}
    for s in plan.secrets:
        assert root.secrets.kv.v2.read_secret_version(s.vault_key)["data"] == stored[s.vault_key]

    # A restarted Vault comes back sealed; a re-run unseals it and finds the rest.
    server.stop()
    server.start()
    assert anonymous.sys.is_sealed()
    after_restart = flow.bootstrap_vault(REQUEST)
    assert after_restart.pop("unsealed") == "created"
    assert set(after_restart.pop("secrets").values()) == {"found"}
    assert set(after_restart.values()) == {"found"}

    # platform-secrets' ExternalSecrets, read by the operator through Kubernetes auth. The
    # platform CA's Secret is what the cluster-issuers release makes; here it holds the CA
    # that signed the stand-in's certificate (vault.local_listener_certificate).
    local_cluster.kubectl("create", "namespace", "cert-manager")
    secret = local_cluster.kubectl(
        "-n", "cert-manager", "create", "secret", "generic", "platform-ca",
        f"--from-file=ca.crt={local_cluster.paths.pki / 'ca.crt'}", "--dry-run=client",
        "-o", "json",
    )  # fmt: skip
    applied = local_cluster.kubectl("apply", "-f", "-", stdin=secret.stdout)
    assert not applied.returncode, applied.stderr
    step = deploy(stack_settings, manifest, "local", "platform-secrets", dry_run=False)
    assert step.action == "install", step.error
    wanted = next(s for s in plan.secrets if s.name == "minio-root-credentials")

    def delivered() -> dict | None:
        got = local_cluster.kubectl(
            "-n", wanted.namespace, "get", "secret", wanted.name, "-o", "json"
        )
        return json.loads(got.stdout)["data"] if not got.returncode else None

    data = wait_for(f"no Secret {wanted.namespace}/{wanted.name}", delivered)
    assert {k: base64.b64decode(v).decode() for k, v in data.items()} == (
        stored[wanted.vault_key]["data"]
    )
