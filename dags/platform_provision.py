"""
### platform_provision
Stand up or update the whole platform: plan, approve, apply, verify.

Stands up (or brings back in line) one environment of the self-hosted platform from
`infra/platform.yaml`: servers (OpenTofu), node preparation and K3s (Ansible over SSH), then the
Helm releases (and Kubeflow Pipelines' kustomize manifests) wave by wave, each wave gated by its
health checks, then smoke checks.

**Owner:** platform-engineering. Only the `platform-admin` role may trigger it.

**Flow:** validate → plan (this run's own saved plan file, every server attribute that changes,
each release's values diff) → **approve** (Required actions; only the approvers of
`ADP_PLATFORM_APPROVERS` other than the user who triggered the run may answer; no answer in 24 h
fails the run, it never approves by itself) → apply (refuses without a recorded approval by
someone else, or if the plan file is not the approved one, unchanged) → wait for SSH →
prepare nodes → K3s → kubeconfig → the cloud's Secret (hcloud-csi's token) → wave 0..n (deploy
→ health gate; after Vault's wave, Vault's bootstrap) → smoke checks. A re-run with nothing to
change changes nothing. `dry_run` (default on) plans and renders every step and wave and changes
nothing. The `local`
environment is the local cluster (`adplatform cluster up`): no servers, SSH, node preparation
or K3s; its releases are real.

A release whose `helm upgrade --install --wait` fails, or that fails its wave's health gate, is
rolled back to the revision it had before the run and recorded in
`<data root>/provisioning/<environment>/upgrades.jsonl` (release, both revisions, why); the wave
fails without a retry and later waves do not start.

### Triage
- *approve* failed: rejected, unanswered for 24 h, or no approver besides the triggering user
  (the message says which); trigger a new run.
- *apply* failed with "refused:": no recorded approval (the approve task was marked successful by
  hand), or the plan file changed; trigger a new run and have another platform admin approve it.
- *validate* failed: the message names the manifest or values file and key; fix it, re-run.
- *validate* failed naming `hcloud_default`/`aws_default`: a real run needs the cloud's API
  credentials in that connection; set them, re-run.
- *plan* failed: read the tofu error in the log (credentials: `hcloud_default`/`aws_default`).
- *wait_for_ssh*/*prepare_nodes*/*install_k3s*: the node named in the error; re-run is safe.
- *wave_N.deploy* / *wave_N.health_gate*: the message names each release, the revisions and why;
  it was rolled back. `kubectl -n <ns> get pods`, fix, re-run (unchanged releases are skipped).
  Runbook: `infra/README.md`.
- *wave_N.bootstrap_vault*: the message says which step and how to fix it (a bad
  platform-secrets entry names its file and key; staging/production: Vault not initialised or
  sealed, which its operators do). Every step is idempotent: re-run.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, TaskGroup, chain, task

from adplatform.orchestration import Owner, Tag, dag_defaults
from adplatform.provisioning.approval import PlanApproval
from adplatform.provisioning.manifest import manifest_structure

MANIFEST = manifest_structure()  # one small file, re-read only when it changes

with DAG(
    dag_id="platform_provision",
    schedule=None,
    max_active_runs=1,
    doc_md=__doc__,
    params={
        "environment": Param(
            "local", enum=list(MANIFEST.environments), description="Where to provision."
        ),
        "cloud_provider": Param(
            "existing",
            enum=["existing", "hcloud", "aws"],
            description="existing: the servers the ssh_default connection names (local).",
        ),
        "components": Param(
            list(MANIFEST.components),
            type="array",
            items={"type": "string", "enum": list(MANIFEST.components)},
            uniqueItems=True,
            examples=list(MANIFEST.components),
            description="Releases to install; their dependencies come along.",
        ),
        "dry_run": Param(True, type="boolean", description="Plan and render only; change nothing."),
    },
    **dag_defaults(
        Owner.PLATFORM, Tag.PROVISIONING, retries=1, execution_timeout=timedelta(hours=1)
    ),
) as dag:

    @task
    def validate(params: dict | None = None) -> dict:
        from adplatform.provisioning import flow

        assert params is not None
        return flow.validate_request(
            params["environment"], params["cloud_provider"], params["components"], params["dry_run"]
        )

    @task
    def plan(request: dict, run_id: str | None = None) -> dict:
        from adplatform.provisioning import flow

        return flow.plan(request, run_id or "")

    @task
    def apply(request: dict, planned: dict, run_id: str | None = None) -> list:
        from airflow.sdk import get_current_context

        from adplatform.provisioning import flow
        from adplatform.provisioning.approval import recorded_approval

        approval, triggered_by = recorded_approval(get_current_context())
        return flow.apply(request, planned, approval, triggered_by, run_id or "")

    @task
    def wait_for_ssh(request: dict, nodes: list) -> dict:
        from adplatform.provisioning import flow

        return flow.wait_for_ssh(request, nodes)

    @task
    def prepare_nodes(request: dict, nodes: list) -> dict:
        from adplatform.provisioning import flow

        return flow.run_playbook(request, nodes, "node_prepare.yml")

    @task
    def install_k3s(request: dict, nodes: list) -> dict:
        from adplatform.provisioning import flow

        return flow.run_playbook(request, nodes, "k3s.yml")

    @task
    def store_kubeconfig(request: dict, nodes: list) -> str:
        from adplatform.provisioning import flow

        return flow.store_kubeconfig(request, nodes)

    @task
    def store_cloud_secret(request: dict) -> str:
        from adplatform.provisioning import flow

        return flow.store_cloud_secret(request)

    @task
    def deploy(request: dict, wave: list, run_id: str | None = None) -> list:
        from adplatform.provisioning import flow

        return flow.deploy_wave(request, wave, run_id or "")

    @task
    def health_gate(request: dict, wave: list, steps: list, run_id: str | None = None) -> list:
        from adplatform.provisioning import flow

        return flow.gate_wave(request, wave, steps, run_id or "")

    @task
    def bootstrap_vault(request: dict) -> dict:
        from adplatform.provisioning import flow

        return flow.bootstrap_vault(request)

    @task
    def smoke_checks(request: dict) -> list:
        from adplatform.provisioning import flow

        return flow.smoke(request)

    request = validate()
    planned = plan(request)
    approve = PlanApproval(
        task_id="approve",
        subject="Apply the platform plan for {{ params.environment }}?",
        plan_task_id="plan",
    )
    nodes = apply(request, planned)
    steps = [
        wait_for_ssh(request, nodes),
        prepare_nodes(request, nodes),
        install_k3s(request, nodes),
        store_kubeconfig(request, nodes),
        store_cloud_secret(request),
    ]
    for wave, names in enumerate(MANIFEST.waves()):
        with TaskGroup(f"wave_{wave}", tooltip=", ".join(names)):
            deployed = deploy(request, names)
            steps += [deployed, health_gate(request, names, deployed)]
            if "vault" in names:  # before the waves that read secrets (platform-secrets)
                steps.append(bootstrap_vault(request))
    chain(planned, approve, nodes, *steps, smoke_checks(request))
