"""
### platform_upgrade
Upgrade one platform component, with a health gate and automatic rollback.

Upgrades one component of `infra/platform.yaml` to a target chart version: pre-flight (the
version exists in its chart repository, the step is allowed by the component's upgrade policy;
the diff of the manifests `helm template` renders for the current and the target version) →
**approve** (Required actions, as in `platform_provision`: only an approver of
`ADP_PLATFORM_APPROVERS` other than the user who triggered the run; backup and upgrade refuse
without that recorded approval) → backup Job for stateful components (ClickHouse, PostgreSQL, Redpanda), on a bound volume →
`helm upgrade --wait` → health gate → on failure of either, automatic `helm rollback` to the
revision before the upgrade → a record in `<data root>/provisioning/<environment>/upgrades.jsonl`
(both revisions and why). A rolled-back upgrade ends
the run as failed (and alerts). After a successful upgrade, pin the new version in the manifest.
`dry_run` (default on) changes nothing: the gate takes one look at the release as it runs now
(an environment without a kubeconfig has no cluster: the record says `checked: false`), and a
failed look renders the rollback it would run.

**Owner:** platform-engineering. Only the `platform-admin` role may trigger it.

### Triage
- *preflight* failed: the message names the version or policy problem; nothing changed.
- *approve* failed: rejected, unanswered for 24 h, or no other approver; nothing changed.
- *backup*/*upgrade* failed with "refused:": no recorded approval by someone other than the
  triggering user (the approve task was marked successful by hand); trigger a new run.
- *backup* failed: nothing was upgraded; read the backup Job's pod log.
- *verdict* failed after *rollback*: the upgrade was rolled back; the record and the gate's
  details say which workload was unhealthy. Runbook: `infra/README.md`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, task

from adplatform.orchestration import Owner, Tag, dag_defaults
from adplatform.provisioning.approval import PlanApproval
from adplatform.provisioning.manifest import manifest_structure

MANIFEST = manifest_structure()

with DAG(
    dag_id="platform_upgrade",
    schedule=None,
    max_active_runs=1,
    doc_md=__doc__,
    params={
        "environment": Param("local", enum=list(MANIFEST.environments)),
        "component": Param("clickhouse", enum=list(MANIFEST.components)),
        "target_version": Param(
            "", type="string", pattern=r"^v?\d+\.\d+\.\d+$", description="Chart version, e.g. 0.3.7"
        ),
        "dry_run": Param(
            True, type="boolean", description="Check and render only; change nothing."
        ),
    },
    **dag_defaults(
        Owner.PLATFORM, Tag.PROVISIONING, retries=1, execution_timeout=timedelta(hours=1)
    ),
) as dag:

    @task
    def preflight(params: dict | None = None) -> dict:
        from adplatform.provisioning import flow

        assert params is not None
        return flow.upgrade_preflight(
            params["environment"], params["component"], params["target_version"], params["dry_run"]
        )

    @task
    def backup(checks: dict, ts_nodash: str | None = None) -> dict:
        from airflow.sdk import get_current_context

        from adplatform.provisioning import flow
        from adplatform.provisioning.approval import recorded_approval

        flow.require_approval(*recorded_approval(get_current_context()))
        return flow.upgrade_backup(checks, (ts_nodash or "").lower())

    @task
    def upgrade(checks: dict) -> dict:
        from airflow.sdk import get_current_context

        from adplatform.provisioning import flow
        from adplatform.provisioning.approval import recorded_approval

        flow.require_approval(*recorded_approval(get_current_context()))
        return flow.upgrade_release(checks)

    @task
    def health_gate(checks: dict, upgraded: dict) -> dict:
        from adplatform.provisioning import flow

        return flow.upgrade_gate(checks, upgraded)

    @task.branch
    def healthy(gate: dict) -> str:
        return "record" if gate["healthy"] else "rollback"

    @task
    def rollback(checks: dict) -> dict:
        from adplatform.provisioning import flow

        return flow.upgrade_rollback(checks)

    @task(trigger_rule="none_failed_min_one_success")
    def record(checks: dict, gate: dict, run_id: str | None = None) -> dict:
        from airflow.sdk import get_current_context

        from adplatform.provisioning import flow

        rolled_back = get_current_context()["ti"].xcom_pull(task_ids="rollback")
        return flow.upgrade_record(checks, gate, rolled_back, run_id or "")

    @task
    def verdict(entry: dict) -> str:
        from airflow.sdk.exceptions import AirflowFailException

        if not entry["health"]["healthy"]:
            # Deterministic: a retry would only repeat the verdict and delay the alert.
            raise AirflowFailException(
                f"{entry['component']} {entry['to_version']}: {entry['outcome']}: {entry['health']}"
            )
        return f"{entry['component']} {entry['from_version']} -> {entry['to_version']}: {entry['outcome']}"

    checks = preflight()
    approve = PlanApproval(
        task_id="approve",
        subject="Upgrade {{ params.component }} in {{ params.environment }} to "
        "{{ params.target_version }}?",
        plan_task_id="preflight",
    )
    upgraded = upgrade(checks)
    gate = health_gate(checks, upgraded)
    checks >> approve >> backup(checks) >> upgraded
    rolled_back = rollback(checks)
    entry = record(checks, gate)
    healthy(gate) >> [rolled_back, entry]
    rolled_back >> entry
    verdict(entry)
