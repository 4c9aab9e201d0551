"""The steps of the provisioning DAGs, one function per task: each loads settings and the
manifest, does one thing through the modules beside it, and returns what the next step needs
(small, JSON-serialisable XComs). Dry runs render and plan; they never change anything."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from adplatform.provisioning.manifest import ManifestError, load_manifest
from adplatform.settings import get_settings

# Who may trigger (and see) the platform DAGs: the FAB role the local stack creates.
PLATFORM_ADMIN_ROLE = "platform-admin"
ACCESS_CONTROL = {
    PLATFORM_ADMIN_ROLE: {
        "DAGs": {"can_read", "can_edit"},
        "DAG Runs": {"can_create", "can_read", "can_edit"},
    }
}


def validate_request(
    environment: str, cloud: str, components: list[str], dry_run: bool
) -> dict[str, Any]:
    """Check the request against the manifest (and every values file against the policy)."""
    manifest = load_manifest()
    env = manifest.environment(environment)
    if cloud not in env.clouds:
        raise ManifestError(
            [f"params.cloud_provider: {environment} runs on {', '.join(env.clouds)}, not {cloud}"]
        )
    waves = manifest.waves(components or None)
    return {
        "environment": environment,
        "cloud": cloud,
        "dry_run": dry_run,
        "components": sorted(name for wave in waves for name in wave),
        "waves": waves,
        "k3s_version": env.k3s_version,
    }


def plan(request: dict[str, Any]) -> dict[str, Any]:
    from adplatform.provisioning.infrastructure import PlanSummary, plan_infrastructure

    manifest = load_manifest(with_values=False)
    summary = plan_infrastructure(get_settings(), request["environment"], request["cloud"])
    text = PlanSummary(**summary).text()
    releases = [
        f"  wave {i}: " + ", ".join(f"{n} {manifest.component(n).version}" for n in wave)
        for i, wave in enumerate(request["waves"])
    ]
    mode = "DRY RUN: nothing will change" if request["dry_run"] else "changes on approval"
    text = (
        f"{mode}\n\nServers\n{text}\n\nHelm releases (upgrade --install, in waves)\n"
        + "\n".join(releases)
    )
    return summary | {"text": text}


def apply(request: dict[str, Any], planned: dict[str, Any]) -> list[dict[str, Any]]:
    from adplatform.provisioning.infrastructure import Workspace, existing_nodes

    settings = get_settings()
    if request["cloud"] == "existing":
        return [asdict(node) for node in existing_nodes(settings)]
    workspace = Workspace(settings, request["environment"], request["cloud"])
    if request["dry_run"]:
        return []  # the servers exist only after a real apply
    nodes = (
        workspace.apply()
        if planned["create"] or planned["update"] or planned["delete"]
        else workspace.nodes()
    )
    return [asdict(node) for node in nodes]


def _nodes(raw: list[dict[str, Any]]) -> list[Any]:
    from adplatform.provisioning.infrastructure import Node

    return [Node(**node) for node in raw]


def wait_for_ssh(request: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, str]:
    from adplatform.provisioning import nodes as node_steps

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
    if request["dry_run"]:
        return f"dry run: would copy /etc/rancher/k3s/k3s.yaml from the first server to {target}"
    server = next(node for node in _nodes(nodes) if node.role == "server")
    access = node_steps.access_for(settings, request["environment"])
    return str(node_steps.fetch_kubeconfig(settings, request["environment"], server, access))


def _selected(request: dict[str, Any], wave: list[str]) -> list[str]:
    """The wave's components that this run installs (the request's selection and its needs)."""
    return [name for name in wave if name in request["components"]]


def deploy_wave(request: dict[str, Any], wave: list[str]) -> list[dict[str, Any]]:
    from adplatform.provisioning.releases import deploy

    manifest = load_manifest(with_values=False)
    return [
        asdict(
            deploy(
                get_settings(), manifest, request["environment"], name, dry_run=request["dry_run"]
            )
        )
        for name in _selected(request, wave)
    ]


def gate_wave(request: dict[str, Any], wave: list[str]) -> list[dict[str, Any]]:
    """A wave's health gate; a dry run lists what it would check (nothing was installed)."""
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
    if unhealthy := [r for r in reports if not r["healthy"]]:
        raise ToolError(f"wave {', '.join(names)} is not healthy: {unhealthy}")
    return reports


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
    from adplatform.provisioning.releases import deployed
    from adplatform.provisioning.upgrade import preflight

    settings, manifest = get_settings(), load_manifest()
    manifest.environment(environment)
    checks = preflight(settings, manifest, environment, component, target)
    current = None if dry_run else deployed(settings, environment, manifest.component(component))
    return checks | {
        "environment": environment,
        "dry_run": dry_run,
        "previous_revision": current.revision if current else None,
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


def upgrade_release(checks: dict[str, Any]) -> str:
    from adplatform.provisioning.commands import Command, helm_upgrade
    from adplatform.provisioning.releases import helm_env

    component = load_manifest(with_values=False).component(checks["component"])
    command = helm_upgrade(component, checks["environment"], version=checks["to_version"])
    if not checks["dry_run"]:
        Command(command.argv, env=helm_env(get_settings(), checks["environment"])).run(
            timeout=component.health.timeout_seconds + 300
        )
    return str(command)


def upgrade_gate(checks: dict[str, Any]) -> dict[str, Any]:
    """The health gate after the upgrade; it looks at the live release, in a dry run too."""
    from adplatform.provisioning.releases import health_gate

    [report] = health_gate(
        get_settings(),
        load_manifest(with_values=False),
        checks["environment"],
        [checks["component"]],
    )
    return report


def upgrade_rollback(checks: dict[str, Any]) -> str:
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
    checks: dict[str, Any], gate: dict[str, Any] | None, rolled_back: str | None, run_id: str
) -> dict[str, Any]:
    from adplatform.provisioning.upgrade import record

    outcome = (
        "rolled back" if rolled_back else ("upgraded" if gate and gate["healthy"] else "failed")
    )
    return record(
        get_settings(),
        checks["environment"],
        {
            "run_id": run_id,
            "component": checks["component"],
            "from_version": checks["from_version"],
            "to_version": checks["to_version"],
            "dry_run": checks["dry_run"],
            "outcome": outcome,
            "health": gate,
            "rollback": rolled_back,
        },
    )


# --- platform_drift_check ------------------------------------------------------------------------


def drift_report(environment: str) -> dict[str, Any]:
    """Terraform plan -detailed-exitcode and release drift for one provisioned environment."""
    from adplatform.provisioning.infrastructure import Workspace
    from adplatform.provisioning.releases import release_drift

    settings = get_settings()
    home = settings.provisioning_dir / environment
    report: dict[str, Any] = {"environment": environment, "servers": [], "releases": []}
    clouds = [path.stem for path in sorted(home.glob("*.tfstate"))]
    for cloud in clouds:
        summary, code = Workspace(settings, environment, cloud).plan(detailed_exitcode=True)
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
