"""cert-manager for real on the local cluster: its controller, webhook and cainjector run as host
stand-ins of the session's cluster (LocalCluster.stand_ins: the upstream code built from the Go
module proxy, as host processes), so the provisioning flow's own steps install cert-manager and
the cluster-issuers release on `local`, the API server really calls the webhook (which refuses
an invalid Issuer with cert-manager's own message), the platform CA really issues a Certificate
(checked with `cryptography`), and letsencrypt reports its real failure to register (no ACME
server serves the loopback cluster). The stand-ins come back when they exit, and a second
`cluster up` or provisioning run changes nothing."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from adplatform.provisioning import flow
from adplatform.provisioning.cluster import HostWorkload, LocalCluster
from adplatform.provisioning.manifest import load_manifest
from adplatform.provisioning.releases import deploy
from adplatform.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STAND_INS = {"cert-manager-controller", "cert-manager-webhook", "cert-manager-cainjector"}
# The cluster's other stand-ins (test_vault_bootstrap.py exercises them).
OTHER_STAND_INS = {"vault", "external-secrets"}
NAMESPACE = "cert-check"  # the test's Certificate, deleted after it


def wait_for(check, what: str, deadline_seconds: float = 180):
    """Polls until check() returns a value: the controllers act on their own schedule."""
    deadline = time.monotonic() + deadline_seconds
    while (found := check()) is None:
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(2)
    return found


def kubectl_json(cluster: LocalCluster, *args: str) -> dict:
    result = cluster.kubectl(*args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def condition(cluster: LocalCluster, *resource: str) -> dict | None:
    """The resource's Ready condition once it has one."""
    result = cluster.kubectl("get", *resource, "-o", "json")
    if result.returncode:
        return None
    conditions = json.loads(result.stdout).get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


def workload_pid(stand_in: HostWorkload) -> int | None:
    """The stand-in's process under its supervisor (None between two runs)."""
    supervisor = stand_in.pid()
    assert supervisor is not None, f"{stand_in.name}'s supervisor is not running"
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    running = [
        int(pid) for pid in children if "sleep" not in Path(f"/proc/{pid}/cmdline").read_text()
    ]
    return running[0] if running else None


def test_the_stand_ins_run_with_the_cluster_and_come_back_when_they_exit(
    local_cluster: LocalCluster,
):
    stand_ins = {s.name: s for s in local_cluster.stand_ins}
    assert set(stand_ins) == STAND_INS | OTHER_STAND_INS
    rows = {name: state for name, state, *_ in local_cluster.status()}
    assert {rows[name] for name in STAND_INS | OTHER_STAND_INS} == {"healthy"}, rows

    webhook = stand_ins["cert-manager-webhook"]
    crashed = wait_for(lambda: workload_pid(webhook), "the webhook's process")
    os.kill(crashed, signal.SIGKILL)  # as a crash would
    restarted = wait_for(
        lambda: pid if (pid := workload_pid(webhook)) not in (None, crashed) else None,
        "the webhook to be restarted",
    )
    assert restarted != crashed
    wait_for(lambda: True if webhook.healthy() else None, "the restarted webhook to listen")
    assert "cert-manager-webhook exited with status 137; restarting" in webhook.log_file.read_text()


def test_provisioning_installs_cert_manager_and_the_cluster_issuers_on_local(
    local_cluster: LocalCluster, configured: Settings, cluster_releases_undone
):
    settings, run_id = configured, "manual__cert_manager"
    request = flow.validate_request("local", "existing", ["cluster-issuers"], False)
    assert request["waves"][-2:] == [["cert-manager"], ["cluster-issuers"]]
    for wave in request["waves"]:
        steps = flow.deploy_wave(request, wave, run_id)
        reports = flow.gate_wave(request, wave, steps, run_id)
        assert all(report["healthy"] for report in reports), reports
        assert [s["action"] for s in steps] == ["install"] * len(wave), steps

    # The API server calls the host webhook, with the CA cainjector put in the configuration.
    webhook = next(s for s in local_cluster.stand_ins if s.name == "cert-manager-webhook")
    config = kubectl_json(
        local_cluster, "get", "validatingwebhookconfiguration", "cert-manager-webhook"
    )
    [client] = [w["clientConfig"] for w in config["webhooks"]]
    assert client["url"] == f"https://localhost:{webhook.port}/validate"
    ca_secret = kubectl_json(
        local_cluster, "-n", "cert-manager", "get", "secret", "cert-manager-webhook-ca"
    )
    assert base64.b64decode(client["caBundle"]) == base64.b64decode(ca_secret["data"]["ca.crt"])

    # platform-ca: the self-signed root, its CA Certificate, the CA issuer, all Ready.
    ready = wait_for(
        lambda: (
            c
            if (c := condition(local_cluster, "clusterissuer", "platform-ca"))
            and c["status"] == "True"
            else None
        ),
        "platform-ca to be Ready",
    )
    assert ready["reason"] == "KeyPairVerified", ready
    # letsencrypt exists and reports why it is not Ready: no ACME directory answers locally.
    refused = wait_for(
        lambda: condition(local_cluster, "clusterissuer", "letsencrypt"), "letsencrypt's condition"
    )
    assert (refused["status"], refused["reason"]) == ("False", "ErrRegisterACMEAccount"), refused
    assert "Failed to register ACME account" in refused["message"]
    assert "acme-v02.api.letsencrypt.invalid" in refused["message"]

    # A Certificate from platform-ca is issued, and its chain is the platform CA's.
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "app", "namespace": NAMESPACE},
        "spec": {
            "secretName": "app-tls",
            "dnsNames": ["app.localhost"],
            "issuerRef": {
                "group": "cert-manager.io",
                "kind": "ClusterIssuer",
                "name": "platform-ca",
            },
        },
    }
    local_cluster.kubectl("create", "namespace", NAMESPACE)
    try:
        applied = local_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(certificate))
        assert applied.returncode == 0, applied.stderr
        wait_for(
            lambda: (
                True
                if (c := condition(local_cluster, "-n", NAMESPACE, "certificate", "app"))
                and c["status"] == "True"
                else None
            ),
            "the Certificate to be issued",
        )
        tls = kubectl_json(local_cluster, "-n", NAMESPACE, "get", "secret", "app-tls")["data"]
        leaf = x509.load_pem_x509_certificate(base64.b64decode(tls["tls.crt"]))
        root = kubectl_json(local_cluster, "-n", "cert-manager", "get", "secret", "platform-ca")[
            "data"
        ]
        ca = x509.load_pem_x509_certificate(base64.b64decode(root["tls.crt"]))
        leaf.verify_directly_issued_by(ca)  # raises unless ca's key signed it
        assert base64.b64decode(tls["ca.crt"]) == base64.b64decode(root["tls.crt"])
        assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        names = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        assert names.get_values_for_type(x509.DNSName) == ["app.localhost"]

        # The webhook really validates: an Issuer of two kinds is refused with its own message.
        invalid = {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Issuer",
            "metadata": {"name": "two-kinds", "namespace": NAMESPACE},
            "spec": {"selfSigned": {}, "ca": {"secretName": "platform-ca"}},
        }
        refused_issuer = local_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(invalid))
        assert refused_issuer.returncode != 0
        assert (
            'admission webhook "webhook.cert-manager.io" denied the request'
            in refused_issuer.stderr
        )
        assert "may not specify more than one issuer type" in refused_issuer.stderr
    finally:
        local_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")

    # Again: the cluster's processes are left as they are, and provisioning changes nothing
    # (the host values the flow adds are the installed ones).
    assert {local_cluster.up()[name] for name in STAND_INS} == {"already running"}
    manifest = load_manifest(with_values=False)
    for name in ("cert-manager", "cluster-issuers"):
        again = deploy(settings, manifest, "local", name, dry_run=False)
        assert (again.action, again.previous_revision) == ("unchanged", 1), again
