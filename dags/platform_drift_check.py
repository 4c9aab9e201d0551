"""
### platform_drift_check
Compare every provisioned environment with the code: servers and Helm releases.

Every six hours, for each provisioned environment: `tofu plan -detailed-exitcode` against the
environment's state (exit code 2 means the servers drifted from the code), and for each Helm
release: its chart version and values against `infra/platform.yaml` and `helm_values/`, a latest
revision made outside Airflow (`helm history`), and its objects changed out of band (`kubectl
diff --server-side` of the release's manifest; each changed object is named).
The report is the `report` task's return value; any drift fails `alert`, which sends the report
through the alert webhook.

**Owner:** platform-engineering. Only the `platform-admin` role may trigger it.

### Triage
- *alert* failed: read the drift report in its log. Someone changed the platform by hand, or a
  merged change was not provisioned: re-run `platform_provision` (plan first) or revert the change.
- *report* failed: the tofu or helm error names the environment; check its credentials
  connection and kubeconfig. Runbook: `infra/README.md`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, task

from adplatform.orchestration import Owner, Tag, dag_defaults
from adplatform.provisioning.manifest import manifest_structure

MANIFEST = manifest_structure()

with DAG(
    dag_id="platform_drift_check",
    schedule=timedelta(hours=6),
    max_active_runs=1,
    doc_md=__doc__,
    **dag_defaults(Owner.PLATFORM, Tag.PROVISIONING, execution_timeout=timedelta(minutes=30)),
) as dag:

    @task
    def report(environment: str) -> dict:
        from adplatform.provisioning import flow

        return flow.drift_report(environment)

    @task
    def alert(reports: list) -> str:
        from adplatform.provisioning import flow

        return flow.alert_on_drift(reports)

    alert(report.expand(environment=list(MANIFEST.environments)))
