"""cert-manager for real on the local cluster: its controller, webhook and cainjector run as host
stand-ins of the session's cluster (LocalCluster.stand_ins: the upstream code built from the Go
module proxy, as host processes), and come back when they exit."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from adplatform.provisioning.cluster import HostWorkload, LocalCluster

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
