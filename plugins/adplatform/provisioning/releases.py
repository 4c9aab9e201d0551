"""Helm releases: install or upgrade wave by wave (skipping a release already at the wanted chart
version and values, so a re-run changes nothing), health gates through the Kubernetes API,
rollback to a recorded revision, and drift between the manifest and what is deployed."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from adplatform.provisioning import commands
from adplatform.provisioning.commands import Command, ToolError
from adplatform.provisioning.manifest import Component, Manifest, merge_values
from adplatform.settings import Settings

WORKLOAD_KINDS = ("deployments", "statefulsets", "daemonsets")
# Pods in these states will not heal by waiting: the gate fails at once.
_BROKEN = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"}


def helm_env(settings: Settings, environment: str) -> dict[str, str]:
    home = settings.provisioning_dir / environment / "helm"
    return {
        "KUBECONFIG": str(settings.provisioning_dir / environment / "kubeconfig"),
        "HELM_REPOSITORY_CONFIG": str(settings.provisioning_dir / "helm" / "repositories.yaml"),
        "HELM_REPOSITORY_CACHE": str(settings.provisioning_dir / "helm" / "repository"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def desired_values(component: Component, environment: str) -> dict[str, Any]:
    import yaml

    return merge_values(
        [yaml.safe_load(path.read_text()) or {} for path in component.values_files(environment)]
    )


@dataclass
class Deployed:
    revision: int
    chart_version: str
    status: str


def deployed(settings: Settings, environment: str, component: Component) -> Deployed | None:
    """The release's current revision, or None when it is not installed."""
    command = commands.helm_history(component)
    try:
        result = Command(command.argv, env=helm_env(settings, environment)).run()
    except ToolError as error:
        if "not found" in str(error):
            return None
        raise
    latest = json.loads(result.stdout)[-1]
    return Deployed(int(latest["revision"]), latest["chart"].rsplit("-", 1)[-1], latest["status"])


@dataclass
class ReleaseStep:
    component: str
    command: str
    action: str  # install, upgrade, unchanged, rendered
    dry_run: bool


def deploy(
    settings: Settings, manifest: Manifest, environment: str, name: str, *, dry_run: bool
) -> ReleaseStep:
    """Install or upgrade one release; nothing happens when chart and values already match."""
    component = manifest.component(name)
    command = commands.helm_upgrade(component, environment)
    if dry_run:
        return ReleaseStep(name, str(command), "rendered", True)
    env = helm_env(settings, environment)
    current = deployed(settings, environment, component)
    if current and current.status == "deployed" and current.chart_version == component.version:
        live = json.loads(Command(commands.helm_get_values(component).argv, env=env).run().stdout)
        if live == desired_values(component, environment):
            return ReleaseStep(name, str(command), "unchanged", False)
    Command(command.argv, env=env).run(timeout=component.health.timeout_seconds + 300)
    return ReleaseStep(name, str(command), "upgrade" if current else "install", False)


@dataclass
class Health:
    component: str
    healthy: bool
    details: list[str] = field(default_factory=list)


def check_health(settings: Settings, environment: str, component: Component) -> Health:
    """One look: every workload matching the selector fully ready, and no pod broken."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    client = KubernetesHook(conn_id=f"kubernetes_{environment}").api_client
    selector, namespace = component.health.selector, component.namespace
    details, workloads = [], 0
    for kind in WORKLOAD_KINDS:
        for item in _list(client, f"/apis/apps/v1/namespaces/{namespace}/{kind}", selector):
            workloads += 1
            name, status = item["metadata"]["name"], item.get("status") or {}
            if kind == "daemonsets":
                want, ready = status.get("desiredNumberScheduled", 0), status.get("numberReady", 0)
            else:
                want = (item.get("spec") or {}).get("replicas", 1)
                ready = status.get("readyReplicas", 0)
            if ready < want:
                details.append(f"{kind[:-1]} {namespace}/{name}: {ready}/{want} ready")
    for pod in _list(client, f"/api/v1/namespaces/{namespace}/pods", selector):
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            reason = ((container.get("state") or {}).get("waiting") or {}).get("reason")
            if reason in _BROKEN:
                details.append(f"pod {namespace}/{pod['metadata']['name']}: {reason}")
    if workloads < component.health.min_workloads:
        details.append(f"no workload matches {selector} in namespace {namespace}")
    return Health(component.name, not details, details)


def _list(client: Any, path: str, selector: str) -> list[dict[str, Any]]:
    response = client.call_api(
        path,
        "GET",
        query_params=[("labelSelector", selector)],
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    return list(json.loads(response.data).get("items", []))


def health_gate(
    settings: Settings,
    manifest: Manifest,
    environment: str,
    names: list[str],
    *,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """Wait until every component is healthy; fail at once on a broken pod, or at the timeout."""
    reports = []
    for name in names:
        component = manifest.component(name)
        deadline = time.monotonic() + (timeout or component.health.timeout_seconds)
        while True:
            health = check_health(settings, environment, component)
            broken = any("pod " in d for d in health.details)
            if health.healthy or broken or time.monotonic() > deadline:
                break
            time.sleep(5)
        reports.append(asdict(health))
    return reports


def rollback(
    settings: Settings,
    environment: str,
    component: Component,
    revision: int | None,
    *,
    dry_run: bool,
) -> str:
    command = commands.helm_rollback(component, revision if revision is not None else "PREVIOUS")
    if not dry_run:
        if revision is None:
            raise ToolError(f"{component.name}: no previous revision recorded; roll back by hand")
        Command(command.argv, env=helm_env(settings, environment)).run(
            timeout=component.health.timeout_seconds + 300
        )
    return str(command)


def release_drift(settings: Settings, manifest: Manifest, environment: str) -> list[dict[str, Any]]:
    """What differs between the manifest and the releases deployed in the environment."""
    drift = []
    env = helm_env(settings, environment)
    for name, component in manifest.components.items():
        current = deployed(settings, environment, component)
        if current is None:
            drift.append({"component": name, "drift": "not installed"})
            continue
        if current.chart_version != component.version:
            drift.append(
                {
                    "component": name,
                    "drift": f"chart {current.chart_version} deployed, "
                    f"{component.version} in the manifest",
                }
            )
        live = json.loads(Command(commands.helm_get_values(component).argv, env=env).run().stdout)
        changed = _diff_keys(desired_values(component, environment), live or {})
        if changed:
            drift.append(
                {"component": name, "drift": f"values differ at {', '.join(changed[:10])}"}
            )
    return drift


def _diff_keys(want: Any, have: Any, path: str = "") -> list[str]:
    if isinstance(want, dict) and isinstance(have, dict):
        return [
            key_path
            for key in sorted(set(want) | set(have))
            for key_path in _diff_keys(
                want.get(key), have.get(key), f"{path}.{key}" if path else key
            )
        ]
    return [] if want == have else [path or "."]
