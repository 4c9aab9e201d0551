"""The provisioning DAGs end to end on the real Airflow of the local stack (api-server, scheduler,
dag-processor and triggerer, FAB auth manager), driven only through the REST API: the
platform-admin user triggers with params, platform-approver (a second platform admin: nobody
approves their own run) answers the approval; task states and XComs are read back.

Every run here is a dry run (test_local_cluster_e2e.py provisions the local cluster for real). The
failing health gate is real: the staging kubeconfig names a Kubernetes API on a loopback port where
nothing listens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from airflow_client.client import PatchTaskInstanceBody, TaskInstanceState
from airflow_client.client.exceptions import ApiException

from adplatform.airflow_client import AirflowClient
from adplatform.localstack import LocalStack
from adplatform.provisioning.manifest import load_manifest
from adplatform.settings import Settings
from tests.conftest import free_port
from tests.provisioning.conftest import PROVISION, UPGRADE, ChartMirror

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def analyst(admin: AirflowClient, local_stack: LocalStack) -> Iterator[AirflowClient]:
    client = local_stack.services["airflow"].client("analyst")
    yield client
    client.close()


@pytest.fixture
def unreachable_staging_cluster(stack_settings: Settings) -> Iterator[Path]:
    """A staging kubeconfig whose API server refuses connections (nothing listens on its port)."""
    kubeconfig = stack_settings.provisioning_dir / "staging" / "kubeconfig"
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    server = f"http://127.0.0.1:{free_port()}"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "staging", "cluster": {"server": server}}],
                "users": [{"name": "staging", "user": {"token": "not-used"}}],
                "contexts": [
                    {"name": "staging", "context": {"cluster": "staging", "user": "staging"}}
                ],
                "current-context": "staging",
            }
        )
    )
    yield kubeconfig
    kubeconfig.unlink()


def dry_run_upgrade(
    client: AirflowClient, approver: AirflowClient, environment: str, version: str
) -> tuple[str, str, dict]:
    """Upgrade ClickHouse on paper, approved by ``approver``; returns the run id, how the run
    ended and the approval request."""
    run_id = client.trigger(
        UPGRADE,
        {"environment": environment, "component": "clickhouse", "target_version": version},
    )
    request = client.wait_for_input(UPGRADE, run_id, "approve")
    approver.respond(UPGRADE, run_id, "approve", "Approve")
    return run_id, client.wait_for_run(UPGRADE, run_id).state, request


def recorded(settings: Settings, environment: str, run_id: str) -> dict:
    path = settings.provisioning_dir / environment / "upgrades.jsonl"
    [entry] = [e for e in map(json.loads, path.read_text().splitlines()) if e["run_id"] == run_id]
    return entry


# --- platform_provision -------------------------------------------------------------------------


def test_a_dry_run_waits_for_another_admins_approval_then_walks_every_wave(
    platform_admin, platform_approver, analyst
):
    run_id = platform_admin.trigger(
        PROVISION, {"environment": "staging", "cloud_provider": "hcloud", "dry_run": True}
    )

    request = platform_admin.wait_for_input(PROVISION, run_id, "approve")
    assert request.subject == "Apply the platform plan for staging?"
    assert request.options == ["Approve", "Reject"]
    body = request.body or ""
    assert "DRY RUN: nothing will change" in body
    assert '+ module.cluster.hcloud_server.node["staging-server-1"]' in body
    # What changes, attribute by attribute (tofu show) and values line by line, per release.
    assert "will be created" in body and "server_type" in body
    assert "+++ cert-manager v1.19.1 values" in body
    planned = platform_admin.xcom(PROVISION, run_id, "plan")
    assert f"/plans/{run_id.replace(':', '_').replace('+', '_')}/hcloud.tfplan" in body
    assert f"sha256: {planned['plan_sha256']}" in body
    assert "May approve: platform-approver (not platform-admin, who triggered this run)" in body
    assert [user.name for user in request.assigned_users or []] == ["platform-approver"]
    assert platform_admin.task_states(PROVISION, run_id)["apply"] is None  # nothing ran past it
    for refused_user in (analyst, platform_admin):  # not allowed; the triggering user
        with pytest.raises(ApiException) as refused:
            refused_user.respond(PROVISION, run_id, "approve", "Approve")
        assert refused.value.status == 403

    answer = platform_approver.respond(PROVISION, run_id, "approve", "Approve")
    assert answer.responded_by.name == "platform-approver"
    assert platform_admin.wait_for_run(PROVISION, run_id).state == "success"
    approval = platform_admin.xcom(PROVISION, run_id, "approve")
    assert (approval["plan_file"], approval["plan_sha256"]) == (
        planned["plan_file"],
        planned["plan_sha256"],
    )

    states = platform_admin.task_states(PROVISION, run_id)
    assert set(states.values()) == {"success"}, states
    manifest = load_manifest(with_values=False)
    # Every component but another cloud's own (AWS's CSI driver), in the DAG's wave groups.
    on_hcloud = [
        [n for n in wave if manifest.component(n).runs_on(["hcloud"])] for wave in manifest.waves()
    ]
    for number, wave in enumerate(on_hcloud):
        deployed = platform_admin.xcom(PROVISION, run_id, f"wave_{number}.deploy")
        assert [step["component"] for step in deployed] == wave
        assert all(step["action"] == "rendered" for step in deployed)
        for step in deployed:  # a Helm release, or a kustomize component's server-side apply
            kustomize = manifest.component(step["component"]).kustomize
            tool = "kubectl apply --server-side " if kustomize else "helm upgrade --install "
            assert step["command"].startswith(tool), step
        gated = platform_admin.xcom(PROVISION, run_id, f"wave_{number}.health_gate")
        assert [check["component"] for check in gated] == wave
    left_out = {n for n, c in manifest.components.items() if not c.runs_on(["hcloud"])}
    assert left_out == {"aws-ebs-csi-driver", "local-path-provisioner"}
    assert sum(map(len, on_hcloud)) == len(manifest.components) - len(left_out)


def test_a_rejected_plan_stops_the_run_before_apply(platform_admin, platform_approver):
    run_id = platform_admin.trigger(PROVISION, {"environment": "local", "dry_run": True})
    platform_admin.wait_for_input(PROVISION, run_id, "approve")
    platform_approver.respond(PROVISION, run_id, "approve", "Reject")

    assert platform_admin.wait_for_run(PROVISION, run_id).state == "failed"
    states = platform_admin.task_states(PROVISION, run_id)
    assert states["approve"] == "failed"
    after_approval = {
        task: state for task, state in states.items() if task not in {"validate", "plan", "approve"}
    }
    assert set(after_approval.values()) == {"upstream_failed"}, states


def test_an_approval_marked_successful_by_hand_is_refused_before_apply(platform_admin):
    """Marking the approve task successful skips the question, not the check: apply finds no
    recorded approval and refuses, and nothing after it runs."""
    run_id = platform_admin.trigger(PROVISION, {"environment": "local", "dry_run": True})
    platform_admin.wait_for_input(PROVISION, run_id, "approve")
    platform_admin.task_instances.patch_task_instance(
        PROVISION, run_id, "approve", PatchTaskInstanceBody(new_state=TaskInstanceState.SUCCESS)
    )

    assert platform_admin.wait_for_run(PROVISION, run_id).state == "failed"
    states = platform_admin.task_states(PROVISION, run_id)
    assert (states["approve"], states["apply"]) == ("success", "failed"), states
    log = platform_admin.task_log(PROVISION, run_id, "apply")
    assert "refused: this run has no recorded approval" in log


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"environment": "moon"}, "moon"),
        ({"components": ["clickhouse", "oracle"]}, "oracle"),
        ({"dry_run": "no"}, "no"),
        ({"cloud_provider": "gcp"}, "gcp"),
    ],
)
def test_params_outside_the_schema_are_refused_before_a_run_exists(platform_admin, params, named):
    before = platform_admin.dag_runs.get_dag_runs(PROVISION).total_entries
    with pytest.raises(ApiException) as refused:
        platform_admin.trigger(PROVISION, params)
    assert refused.value.status == 400
    assert named in str(refused.value)
    assert platform_admin.dag_runs.get_dag_runs(PROVISION).total_entries == before


# --- platform_upgrade ---------------------------------------------------------------------------


def test_a_dry_run_upgrade_waits_for_approval_checks_the_version_and_passes_its_gate(
    platform_admin, platform_approver, chart_mirror: ChartMirror, stack_settings
):
    """The approval shows what the upgrade changes in the rendered manifests. staging has no
    cluster yet (no kubeconfig): the gate says it checked nothing, and passes."""
    run_id, state, request = dry_run_upgrade(
        platform_admin, platform_approver, "staging", chart_mirror.clickhouse_next
    )
    assert state == "success"
    assert request.subject == f"Upgrade clickhouse in staging to {chart_mirror.clickhouse_next}?"
    body = request.body or ""
    assert f"Upgrade clickhouse in staging: 0.3.6 -> {chart_mirror.clickhouse_next}" in body
    assert "-    helm.sh/chart: clickhouse-0.3.6" in body
    assert f"+    helm.sh/chart: clickhouse-{chart_mirror.clickhouse_next}" in body
    assert [user.name for user in request.assigned_users or []] == ["platform-approver"]

    states = platform_admin.task_states(UPGRADE, run_id)
    assert states.pop("rollback") == "skipped"
    assert set(states.values()) == {"success"}, states
    checks = platform_admin.xcom(UPGRADE, run_id, "preflight")
    assert checks["version"] == (
        f"{chart_mirror.path} has clickhouse-{chart_mirror.clickhouse_next}.tgz"
    )
    assert platform_admin.xcom(UPGRADE, run_id, "backup")["job"]["kind"] == "Job"
    entry = recorded(stack_settings, "staging", run_id)
    assert entry["outcome"] == "dry run: gate passed"
    assert entry["health"]["checked"] is False
    assert (entry["from_version"], entry["to_version"]) == ("0.3.6", chart_mirror.clickhouse_next)


def test_a_failing_health_gate_rolls_back_and_fails_the_run(
    platform_admin,
    platform_approver,
    chart_mirror: ChartMirror,
    unreachable_staging_cluster,
    stack_settings,
):
    run_id, state, _ = dry_run_upgrade(
        platform_admin, platform_approver, "staging", chart_mirror.clickhouse_next
    )
    assert state == "failed"

    states = platform_admin.task_states(UPGRADE, run_id)
    assert states == {
        "preflight": "success",
        "approve": "success",
        "backup": "success",
        "upgrade": "success",
        "health_gate": "success",
        "healthy": "success",
        "rollback": "success",
        "record": "success",
        "verdict": "failed",
    }
    gate = platform_admin.xcom(UPGRADE, run_id, "health_gate")
    assert gate["healthy"] is False and gate["checked"] is True
    assert "Connection refused" in " ".join(gate["details"])
    rollback = platform_admin.xcom(UPGRADE, run_id, "rollback")
    assert rollback["command"].startswith(
        "helm rollback clickhouse '<revision before the upgrade>' "
    )
    entry = recorded(stack_settings, "staging", run_id)
    assert entry["outcome"] == "dry run: would roll back"
    assert entry["rollback"] == rollback["command"]


# --- access -------------------------------------------------------------------------------------


def test_the_analyst_may_trigger_reports_but_not_provisioning(admin, analyst):
    for dag_id, params in ((PROVISION, {}), (UPGRADE, {"target_version": "0.3.7"})):
        with pytest.raises(ApiException) as refused:
            analyst.trigger(dag_id, params)
        assert refused.value.status == 403

    dags = admin.dags.get_dags(limit=1000, tags=["reporting"]).dags
    assert dags, "no DAG is tagged reporting"
    # A real run, due far in the future so the scheduler leaves it alone, then removed.
    run_id = analyst.trigger(dags[0].dag_id, run_after=datetime(2999, 1, 1, tzinfo=UTC))
    assert analyst.dag_runs.get_dag_run(dags[0].dag_id, run_id).state == "queued"
    admin.dag_runs.delete_dag_run(dags[0].dag_id, run_id)


def test_each_role_sees_exactly_the_dags_its_tags_grant(admin, analyst, platform_admin):
    """Per-DAG access comes from the DAGs' tags: analysts get reporting and lakehouse DAGs,
    platform admins the provisioning ones; Admin sees them all."""
    grants = {
        "analyst": (analyst, {"reporting", "lakehouse"}),
        "platform-admin": (platform_admin, {"provisioning"}),
    }
    dags = admin.dags.get_dags(limit=1000).dags
    for user, (client, tags) in grants.items():
        for dag in dags:
            granted = bool(tags & {tag.name for tag in dag.tags})
            try:
                client.dags.get_dag(dag.dag_id)
                visible = True
            except ApiException as error:
                assert error.status == 403, error
                visible = False
            assert visible == granted, f"{user} and {dag.dag_id} (tags {dag.tags})"
