"""The steps of the provisioning DAGs, one function per task: each loads settings and the
manifest, does one thing through the modules beside it, and returns what the next step needs
(small, JSON-serialisable XComs). Dry runs render and plan; they never change anything."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from adplatform.provisioning.manifest import ManifestError, load_manifest
from adplatform.settings import get_settings

# What the node steps say for an environment on the local cluster: kwok's nodes need no SSH,
# node preparation or K3s.
LOCAL_CLUSTER_NODES = "skipped: the local cluster's nodes are simulated (adplatform cluster up)"


def validate_request(
    environment: str, cloud: str, components: list[str], dry_run: bool
) -> dict[str, Any]:
    """Check the request against the manifest (and every values file against the policy), every
    chart version against the chart mirror, the values against the charts they configure (unknown
    keys, schema, rendering), and, for a real run into an existing cluster, that its API answers:
    refused here, before anything changes."""
    from adplatform.provisioning.charts import check_before_apply
    from adplatform.provisioning.infrastructure import cloud_credentials
    from adplatform.provisioning.releases import check_in_mirror

    settings, manifest = get_settings(), load_manifest()
    env = manifest.environment(environment)
    if cloud not in env.clouds:
        raise ManifestError(
            [f"params.cloud_provider: {environment} runs on {', '.join(env.clouds)}, not {cloud}"]
        )
    waves = manifest.waves(components or None, [cloud])
    names = sorted(name for wave in waves for name in wave)
    for name in names:
        check_in_mirror(settings, manifest.component(name), manifest.component(name).version)
    check_before_apply(settings, manifest, environment, names)
    if "vault" in names:
        from adplatform.provisioning.vault import load_plan

        load_plan(manifest, environment)  # what the bootstrap would seed, refused now if bad
    if env.cluster == "local" and not dry_run:
        check_reachable(environment)
    if not dry_run:
        cloud_credentials(cloud)  # refused now if its connection is empty, not after the plan
    return {
        "environment": environment,
        "cloud": cloud,
        "dry_run": dry_run,
        "local_cluster": env.cluster == "local",
        "components": names,
        "waves": waves,
        "k3s_version": env.k3s_version,
    }


def check_reachable(environment: str) -> str:
    """The environment's Kubernetes API answers (GET /version with its kubeconfig)."""
    from adplatform.provisioning.commands import ToolError

    settings = get_settings()
    kubeconfig = settings.provisioning_dir / environment / "kubeconfig"
    hint = (
        "start it with `adplatform cluster up`"
        if load_manifest(with_values=False).environment(environment).cluster == "local"
        else "provision it first, or check the network to its API"
    )
    if not kubeconfig.exists():
        raise ToolError(f"{environment}: no cluster ({kubeconfig} does not exist): {hint}")
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client import VersionApi
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        client = KubernetesHook(conn_id=f"kubernetes_{environment}").api_client
        client.configuration.retries = 0
        version = VersionApi(client).get_code(_request_timeout=10).git_version
    except (HTTPError, ApiException) as error:
        cause = getattr(error, "reason", None) or error
        raise ToolError(
            f"{environment}: the Kubernetes API in {kubeconfig} does not answer ({cause}): {hint}"
        ) from None
    return f"{environment}: Kubernetes {version}"


def plan(request: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The run's plan, for the approval: servers (a saved tofu plan in a file of this run's own,
    its sha256, and every attribute that changes) and each release's values diff."""
    from adplatform.provisioning.approval import run_plan_file
    from adplatform.provisioning.infrastructure import PlanSummary, plan_infrastructure
    from adplatform.provisioning.releases import shortened, values_diff

    settings, manifest = get_settings(), load_manifest(with_values=False)
    environment, cloud = request["environment"], request["cloud"]
    plan_file = run_plan_file(settings, environment, cloud, run_id)
    summary = plan_infrastructure(settings, environment, cloud, plan_file)
    servers = (
        f"{environment}: the local cluster (adplatform cluster up), no servers to change."
        if request["local_cluster"]
        else PlanSummary(**summary).text()
    )
    releases = [
        f"  wave {i}: " + ", ".join(f"{n} {manifest.component(n).version}" for n in wave)
        for i, wave in enumerate(request["waves"])
    ]
    diffs = [
        values_diff(settings, environment, manifest.component(name))
        for wave in request["waves"]
        for name in wave
    ]
    print("\n\n".join(diffs))  # the whole diff in the task log; the approval shows its head
    mode = "DRY RUN: nothing will change" if request["dry_run"] else "changes on approval"
    text = (
        f"{mode}\n\nServers\n{servers}\n\nReleases (helm upgrade --install, or kubectl "
        "apply --server-side of kustomize manifests; in waves)\n"
        + "\n".join(releases)
        + "\n\nRelease values (installed -> values files)\n"
        + "\n\n".join(map(shortened, diffs))
    )
    return summary | {"text": text}


def require_approval(
    approval: dict[str, Any] | None, triggered_by: str | None, plan_file: str = ""
) -> str:
    """Before anything changes: the run has a recorded approval by someone other than the user
    who triggered it, and, when there is a server plan, the approved file is ``plan_file`` (this
    run's), unchanged. Refused for good (no retry) otherwise, with one line naming why."""
    from airflow.sdk.exceptions import AirflowFailException

    from adplatform.provisioning.approval import ApprovalRefused, check_approval, check_plan_file

    try:
        approver = check_approval(approval, triggered_by)
        if plan_file:
            assert approval is not None  # check_approval refused a missing one
            check_plan_file(approval, plan_file)
    except ApprovalRefused as refused:
        raise AirflowFailException(f"refused: {refused}") from None
    return approver


def apply(
    request: dict[str, Any],
    planned: dict[str, Any],
    approval: dict[str, Any] | None,
    triggered_by: str | None,
    run_id: str,
) -> list[dict[str, Any]]:
    from adplatform.provisioning.approval import run_plan_file
    from adplatform.provisioning.infrastructure import Workspace, existing_nodes

    settings = get_settings()
    environment, cloud = request["environment"], request["cloud"]
    # Only this run's own plan file is ever applied, whatever a task returned.
    plan_file = run_plan_file(settings, environment, cloud, run_id).resolve()
    require_approval(approval, triggered_by, str(plan_file) if planned["plan_file"] else "")
    if request["local_cluster"]:
        return []  # the local cluster (adplatform cluster up) has no servers to manage
    if request["cloud"] == "existing":
        return [asdict(node) for node in existing_nodes(settings)]
    workspace = Workspace(settings, environment, cloud)
    if request["dry_run"]:
        return []  # the servers exist only after a real apply
    nodes = (
        workspace.apply(plan_file)
        if planned["create"] or planned["update"] or planned["delete"]
        else workspace.nodes()
    )
    return [asdict(node) for node in nodes]


def _nodes(raw: list[dict[str, Any]]) -> list[Any]:
    from adplatform.provisioning.infrastructure import Node

    return [Node(**node) for node in raw]


def wait_for_ssh(request: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, str]:
    from adplatform.provisioning import nodes as node_steps

    if request["local_cluster"]:
        return {"local": LOCAL_CLUSTER_NODES}
    if request["dry_run"]:
        return {
            node["name"]: f"dry run: would wait for ssh {node['host']}:{node['port']}"
            for node in nodes
        }
    access = node_steps.access_for(get_settings(), request["environment"])
    return node_steps.wait_for_ssh(_nodes(nodes), access)


def run_playbook(
    request: dict[str, Any], nodes: list[dict[str, Any]], playbook: str
) -> dict[str, Any]:
    """Ansible over SSH; a dry run renders the command (the nodes may not exist yet)."""
    from adplatform.provisioning import commands
    from adplatform.provisioning import nodes as node_steps

    settings = get_settings()
    inventory = settings.provisioning_dir / request["environment"] / "inventory.yaml"
    if request["local_cluster"]:
        return {"playbook": playbook, "skipped": LOCAL_CLUSTER_NODES}
    if request["dry_run"]:
        return {
            "playbook": playbook,
            "command": str(commands.ansible_playbook(playbook, inventory, None, check=True)),
            "dry_run": True,
        }
    access = node_steps.access_for(settings, request["environment"])
    node_steps.write_inventory(_nodes(nodes), access, inventory)
    extra: dict[str, Any] = {}
    if playbook == "k3s.yml":
        from airflow.sdk import BaseHook

        extra = {
            "k3s_version": request["k3s_version"],
            "k3s_token": BaseHook.get_connection(f"k3s_{request['environment']}").password,
        }
    return asdict(node_steps.run_playbook(playbook, inventory, check=False, extra_vars=extra))


def store_kubeconfig(request: dict[str, Any], nodes: list[dict[str, Any]]) -> str:
    from adplatform.provisioning import nodes as node_steps

    settings = get_settings()
    target = settings.provisioning_dir / request["environment"] / "kubeconfig"
    if request["local_cluster"]:
        if request["dry_run"]:
            return f"dry run: would use {target}, written by `adplatform cluster up`"
        return check_reachable(request["environment"])
    if request["dry_run"]:
        return f"dry run: would copy /etc/rancher/k3s/k3s.yaml from the first server to {target}"
    server = next(node for node in _nodes(nodes) if node.role == "server")
    access = node_steps.access_for(settings, request["environment"])
    return str(node_steps.fetch_kubeconfig(settings, request["environment"], server, access))


def store_cloud_secret(request: dict[str, Any]) -> str:
    from adplatform.provisioning.infrastructure import CLUSTER_SECRETS, store_cloud_secret

    cloud = request["cloud"]
    if request["dry_run"] and cloud in CLUSTER_SECRETS:
        namespace, name, _ = CLUSTER_SECRETS[cloud]
        return f"dry run: would write the {cloud}_default credentials into {namespace}/{name}"
    return store_cloud_secret(request["environment"], cloud)


def _selected(request: dict[str, Any], wave: list[str]) -> list[str]:
    """The wave's components that this run installs (the request's selection and its needs)."""
    return [name for name in wave if name in request["components"]]


def deploy_wave(request: dict[str, Any], wave: list[str], run_id: str) -> list[dict[str, Any]]:
    """Install or upgrade the wave's releases. A release whose helm command failed is rolled back
    to its previous revision (and recorded) and the task fails without a retry: later waves do
    not start."""
    from adplatform.provisioning.releases import deploy

    manifest = load_manifest(with_values=False)
    steps = [
        asdict(
            deploy(
                get_settings(), manifest, request["environment"], name, dry_run=request["dry_run"]
            )
        )
        for name in _selected(request, wave)
    ]
    failed = [step for step in steps if step["action"] == "failed"]
    if failed:
        _roll_back_and_fail(
            request,
            run_id,
            [(step, f"helm upgrade --install failed: {step['error']}") for step in failed],
        )
    return steps


def gate_wave(
    request: dict[str, Any], wave: list[str], steps: list[dict[str, Any]], run_id: str
) -> list[dict[str, Any]]:
    """A wave's health gate; a dry run lists what it would check (nothing was installed). An
    unhealthy release that this run changed is rolled back to its previous revision (and
    recorded), and the task fails without a retry: later waves do not start."""
    from adplatform.provisioning.commands import ToolError
    from adplatform.provisioning.releases import health_gate

    manifest = load_manifest(with_values=False)
    names = _selected(request, wave)
    if request["dry_run"]:
        return [
            {"component": n, "would_check": manifest.component(n).health.model_dump()}
            for n in names
        ]
    reports = health_gate(get_settings(), manifest, request["environment"], names)
    if request["local_cluster"]:
        _gate_stand_ins(reports)
    if unhealthy := [r for r in reports if not r["healthy"]]:
        by_name = {step["component"]: step for step in steps}
        changed = [
            (by_name[r["component"]], "health gate failed: " + "; ".join(r["details"]))
            for r in unhealthy
            if by_name[r["component"]]["action"] in ("install", "upgrade")
        ]
        if changed:
            _roll_back_and_fail(request, run_id, changed)
        raise ToolError(f"wave {', '.join(names)} is not healthy: {unhealthy}")
    return reports


def _gate_stand_ins(reports: list[dict[str, Any]]) -> None:
    """On the local cluster a healthy release also needs its host stand-ins serving (kwok's pods
    are Ready at once; cert-manager's webhook answers only once it has its certificate)."""
    from adplatform.provisioning.cluster import LocalCluster

    cluster = LocalCluster(get_settings())
    for report in reports:
        if report["healthy"] and (waiting := cluster.not_serving([report["component"]])):
            report["healthy"] = False
            report["details"] = [f"host stand-in {name} is not serving" for name in waiting]


def _roll_back_and_fail(
    request: dict[str, Any], run_id: str, failures: list[tuple[dict[str, Any], str]]
) -> None:
    """Roll each failed release back to the revision it had before this run (a first install
    has none: it stays for a fixed re-run), record what happened, and fail the task for good."""
    from airflow.sdk.exceptions import AirflowFailException

    from adplatform.provisioning.releases import deployed, rollback
    from adplatform.provisioning.upgrade import record

    settings, manifest = get_settings(), load_manifest(with_values=False)
    lines = []
    for step, reason in failures:
        component = manifest.component(step["component"])
        previous = step["previous_revision"]
        if previous is None and component.kustomize is None:
            current = deployed(settings, request["environment"], component)
            rolled = {"command": None, "failed_revision": current.revision if current else None}
            outcome = "install failed: nothing to roll back to"
        else:  # a kustomize component's first install is deleted
            rolled = rollback(settings, request["environment"], component, previous, dry_run=False)
            outcome = "rolled back" if previous is not None else "install failed: deleted"
        entry = record(
            settings,
            request["environment"],
            {
                "run_id": run_id,
                "dag": "platform_provision",
                "component": component.name,
                "to_version": component.version,
                "outcome": outcome,
                "previous_revision": previous,
                "failed_revision": rolled["failed_revision"],
                "reason": reason[-1500:],
                "rollback": rolled["command"],
            },
        )
        lines.append(
            f"{component.name}: {outcome} (revision {entry['failed_revision']} -> "
            f"{previous}): {reason[-500:]}"
        )
    raise AirflowFailException("release failed, later waves will not start:\n" + "\n".join(lines))


def bootstrap_vault(request: dict[str, Any]) -> dict[str, Any]:
    """Vault's bootstrap (provisioning/vault.py) once its wave is healthy: initialised,
    unsealed, KV engine, policy, Kubernetes auth and role, seeded secrets. The report says what
    was created and what was found; keys and tokens never leave Vault and their files."""
    import hvac
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.providers.hashicorp.hooks.vault import VaultHook

    from adplatform.provisioning import vault

    environment = request["environment"]
    if "vault" not in request["components"]:
        return {"skipped": "vault is not in this run"}
    plan = vault.load_plan(load_manifest(with_values=False), environment)
    if request["dry_run"]:
        return {"would_seed": [s.vault_key for s in plan.secrets], "kv_engine": plan.mount}
    if request["local_cluster"]:
        keys = vault.LocalKeys(get_settings())
        hook = VaultHook(vault_conn_id=f"vault_{environment}", token_path=str(keys.token_file))
        # Init and unseal need no token, and the root token exists only after init: a client
        # of the hook's URL and TLS settings that takes the token once it is there.
        client = hvac.Client(url=hook.vault_client.url, **hook.vault_client.kwargs)
        kubernetes = KubernetesHook(conn_id=f"kubernetes_{environment}")
        auth = vault.local_kubernetes_auth(kubernetes.api_client, kubernetes.core_v1_client)
    else:
        keys, client = None, VaultHook(vault_conn_id=f"vault_{environment}").get_conn()
        auth = vault.KubernetesAuth(host="https://kubernetes.default.svc:443")
    return vault.bootstrap(client, plan, auth, environment, keys)


def smoke(request: dict[str, Any]) -> list[dict[str, Any]]:
    """Every selected release healthy at once, after all waves (a late failure shows here)."""
    from adplatform.provisioning.commands import ToolError
    from adplatform.provisioning.releases import check_health

    manifest = load_manifest(with_values=False)
    if request["dry_run"]:
        return [{"component": n, "would_check": "health"} for n in request["components"]]
    reports = [
        asdict(check_health(get_settings(), request["environment"], manifest.component(n)))
        for n in request["components"]
    ]
    if failed := [r for r in reports if not r["healthy"]]:
        raise ToolError(f"smoke checks failed: {failed}")
    return reports


# --- platform_upgrade ----------------------------------------------------------------------------


def upgrade_preflight(
    environment: str, component: str, target: str, dry_run: bool
) -> dict[str, Any]:
    from adplatform.provisioning.releases import deployed, shortened, template_diff
    from adplatform.provisioning.upgrade import preflight

    settings, manifest = get_settings(), load_manifest()
    manifest.environment(environment)
    checks = preflight(settings, manifest, environment, component, target)
    if not dry_run:
        check_reachable(environment)
    # A dry run looks at the cluster once, in the health gate; the revision stays unread.
    current = None if dry_run else deployed(settings, environment, manifest.component(component))
    # What the upgrade changes, for the approval: the manifests each version renders.
    diff = template_diff(
        settings,
        environment,
        manifest.component(component),
        checks["from_version"],
        checks["to_version"],
    )
    print(diff)  # the whole diff in the task log; the approval shows its head
    mode = "DRY RUN: nothing will change" if dry_run else "changes on approval"
    text = (
        f"{mode}\n\nUpgrade {component} in {environment}: {checks['from_version']} -> "
        f"{checks['to_version']}\n\n{shortened(diff)}"
    )
    return checks | {
        "environment": environment,
        "dry_run": dry_run,
        "previous_revision": current.revision if current else None,
        "text": text,
    }


def upgrade_backup(checks: dict[str, Any], backup_id: str) -> dict[str, Any]:
    from adplatform.provisioning.upgrade import backup_job, run_backup

    component = load_manifest(with_values=False).component(checks["component"])
    if component.backup is None:
        return {"backup": "not needed: stateless component"}
    job = backup_job(component, checks["environment"], backup_id)
    if checks["dry_run"]:
        return {"backup": "dry run: rendered, not run", "job": job}
    return {"backup": run_backup(get_settings(), checks["environment"], job), "job": job}


def upgrade_release(checks: dict[str, Any]) -> dict[str, Any]:
    """`helm upgrade --wait` to the target version. A failure is returned, not raised, so the
    health gate, rollback and record steps still run (the verdict fails the run)."""
    from adplatform.provisioning.commands import Command, ToolError, helm_upgrade
    from adplatform.provisioning.releases import extra_values, helm_env, wait_seconds

    settings = get_settings()
    component = load_manifest(with_values=False).component(checks["component"])
    command = helm_upgrade(
        component,
        checks["environment"],
        version=checks["to_version"],
        wait_seconds=wait_seconds(settings, component),
        extra_values=extra_values(settings, checks["environment"], component),
    )
    if checks["dry_run"]:
        return {"command": str(command), "error": ""}
    try:
        Command(command.argv, env=helm_env(settings, checks["environment"])).run(
            timeout=wait_seconds(settings, component) + 300
        )
    except ToolError as error:
        return {"command": str(command), "error": str(error)[-2000:]}
    return {"command": str(command), "error": ""}


def upgrade_gate(checks: dict[str, Any], upgraded: dict[str, Any]) -> dict[str, Any]:
    """The health gate after the upgrade: wait (up to the component's timeout) for the release to
    be healthy; a failed `helm upgrade` fails it without looking. A dry run upgraded nothing, so
    it takes one look at the release as it runs now: an unhealthy release or a cluster that does
    not answer fails it, as it would fail a real upgrade. An environment without a kubeconfig was
    never provisioned: there is no cluster to look at, and the report says so (``checked:
    false``) instead of claiming health."""
    from adplatform.provisioning.releases import health_gate

    settings, environment = get_settings(), checks["environment"]
    if upgraded["error"]:
        return {
            "component": checks["component"],
            "healthy": False,
            "checked": False,
            "details": [f"helm upgrade failed: {upgraded['error']}"],
        }
    kubeconfig = settings.provisioning_dir / environment / "kubeconfig"
    if checks["dry_run"] and not kubeconfig.exists():
        return {
            "component": checks["component"],
            "healthy": True,
            "checked": False,
            "details": [f"dry run: {environment} has no cluster yet (no {kubeconfig})"],
        }
    [report] = health_gate(
        settings,
        load_manifest(with_values=False),
        environment,
        [checks["component"]],
        timeout=0 if checks["dry_run"] else None,
    )
    return report | {"checked": True}


def upgrade_rollback(checks: dict[str, Any]) -> dict[str, Any]:
    from adplatform.provisioning.releases import rollback

    component = load_manifest(with_values=False).component(checks["component"])
    return rollback(
        get_settings(),
        checks["environment"],
        component,
        checks["previous_revision"],
        dry_run=checks["dry_run"],
    )


def upgrade_record(
    checks: dict[str, Any],
    gate: dict[str, Any] | None,
    rolled_back: dict[str, Any] | None,
    run_id: str,
) -> dict[str, Any]:
    from adplatform.provisioning.upgrade import record

    healthy = bool(gate and gate["healthy"])
    if checks["dry_run"]:
        outcome = "dry run: gate passed" if healthy else "dry run: would roll back"
    else:
        outcome = "upgraded" if healthy else ("rolled back" if rolled_back else "failed")
    return record(
        get_settings(),
        checks["environment"],
        {
            "run_id": run_id,
            "dag": "platform_upgrade",
            "component": checks["component"],
            "from_version": checks["from_version"],
            "to_version": checks["to_version"],
            "dry_run": checks["dry_run"],
            "outcome": outcome,
            "health": gate,
            "reason": "" if healthy else "; ".join((gate or {}).get("details", []))[-1500:],
            "previous_revision": checks["previous_revision"],
            "failed_revision": rolled_back["failed_revision"] if rolled_back else None,
            "rollback": rolled_back["command"] if rolled_back else None,
        },
    )


# --- platform_drift_check ------------------------------------------------------------------------


def drift_report(environment: str) -> dict[str, Any]:
    """Terraform plan -detailed-exitcode and release drift for one provisioned environment."""
    import tempfile
    from pathlib import Path

    from adplatform.provisioning.infrastructure import Workspace
    from adplatform.provisioning.releases import release_drift

    settings = get_settings()
    home = settings.provisioning_dir / environment
    report: dict[str, Any] = {"environment": environment, "servers": [], "releases": []}
    clouds = [path.stem for path in sorted(home.glob("*.tfstate"))]
    for cloud in clouds:
        with tempfile.TemporaryDirectory() as scratch:  # never an approved run's plan file
            plan_file = Path(scratch) / f"{cloud}.tfplan"
            summary, code = Workspace(settings, environment, cloud).plan(
                plan_file, detailed_exitcode=True
            )
        if code == 2:
            report["servers"].append(summary.text())
    if (home / "kubeconfig").exists():
        report["releases"] = release_drift(settings, load_manifest(), environment)
    report["provisioned"] = bool(clouds) or (home / "kubeconfig").exists()
    report["drift"] = bool(report["servers"] or report["releases"])
    return report


def alert_on_drift(reports: list[dict[str, Any]]) -> str:
    from adplatform.provisioning.commands import ToolError

    lines = []
    for report in reports:
        if report["drift"]:
            lines.append(f"{report['environment']}:")
            lines += [f"  servers: {text}" for text in report["servers"]]
            lines += [f"  {d['component']}: {d['drift']}" for d in report["releases"]]
    if lines:  # a failed task fires the DAG's alert callback with the report
        raise ToolError("platform drift:\n" + "\n".join(lines))
    provisioned = [r["environment"] for r in reports if r["provisioned"]]
    return f"no drift in {', '.join(provisioned) or 'any environment (none provisioned here)'}"
