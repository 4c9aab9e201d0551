"""Upgrades of one component: pre-flight (the version exists, the step is allowed), a backup Job
for stateful components, and a record of what happened, appended per environment."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from adplatform.provisioning import commands
from adplatform.provisioning.commands import Command, ToolError
from adplatform.provisioning.manifest import Component, Manifest, ManifestError
from adplatform.provisioning.releases import check_in_mirror, helm_env
from adplatform.settings import Settings

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


def parse_version(version: str, where: str) -> tuple[int, int, int]:
    match = _SEMVER.match(version)
    if not match:
        raise ManifestError([f"{where}: {version!r} is not a version such as 1.2.3"])
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def check_upgrade_path(component: Component, target: str) -> str:
    """Refuse downgrades, re-installs and steps larger than the manifest's upgrade policy."""
    where = f"params.target_version for {component.name}"
    current, wanted = parse_version(component.version, where), parse_version(target, where)
    if wanted <= current:
        raise ManifestError(
            [
                f"{where}: {target} is not newer than the pinned {component.version}; "
                "roll back with platform_upgrade's automatic rollback or helm rollback instead"
            ]
        )
    allowed = {"patch": 2, "minor": 1, "major": 0}[component.upgrade]
    if wanted[:allowed] != current[:allowed]:
        raise ManifestError(
            [
                f"{where}: {component.version} -> {target} is a bigger step than its upgrade "
                f"policy ({component.upgrade}) allows; upgrade through the releases in between"
            ]
        )
    return f"{component.version} -> {target} ({component.upgrade} upgrades allowed)"


def check_version_exists(
    settings: Settings, environment: str, component: Component, target: str
) -> str:
    """The chart repository serves the target version. It is the repository registered under
    the manifest URL's name in the Helm repository configuration (added from the manifest on first
    use); helm's index is refreshed when the repository answers, else the last refresh's is used."""
    if component.in_repository:
        raise ManifestError(
            [
                f"params.component: {component.name} is a chart of this repository "
                f"({component.in_repository}): change it there and run platform_provision"
            ]
        )
    if settings.helm_chart_mirror:
        return check_in_mirror(settings, component, target)
    env = helm_env(settings, environment)
    if component.repository.startswith("oci://"):
        Command(commands.helm_show_chart(component, target).argv, env=env).run(timeout=120)
        return f"{component.repository}/{component.chart}:{target} exists"
    repo = repository_name(component)
    listed = Command(("helm", "repo", "list", "-o", "json"), env=env).run(ok_codes=(0, 1)).stdout
    urls = {r["name"]: r["url"] for r in json.loads(listed or "[]")}
    if repo not in urls:
        Command(("helm", "repo", "add", repo, component.repository), env=env).run(timeout=120)
        urls[repo] = component.repository
    refreshed = Command(("helm", "repo", "update", repo), env=env).run(ok_codes=(0, 1), timeout=120)
    found = json.loads(
        Command(
            (
                "helm",
                "search",
                "repo",
                f"{repo}/{component.chart}",
                "--version",
                target,
                "--versions",
                "-o",
                "json",
            ),
            env=env,
        )
        .run()
        .stdout
    )
    if not any(entry["version"] == target for entry in found):
        raise ManifestError(
            [f"params.target_version: {component.chart} {target} is not in {urls[repo]}"]
        )
    source = (
        "index refreshed" if refreshed.returncode == 0 else "cached index (repository unreachable)"
    )
    return f"{urls[repo]} serves {component.chart} {target} ({source})"


def repository_name(component: Component) -> str:
    host = re.sub(r"^https://", "", component.repository).split("/")[0]
    return re.sub(r"[^a-z0-9]+", "-", host.lower()).strip("-")


def backup_job(component: Component, environment: str, backup_id: str) -> dict[str, Any]:
    """The Kubernetes Job that backs a stateful component up before its upgrade."""
    if component.backup is None:
        raise ToolError(f"{component.name} has no backup in the manifest")
    backup = component.backup
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{component.name}-backup-{backup_id}"[:63].rstrip("-"),
            "namespace": component.namespace,
            "labels": {
                "app.kubernetes.io/name": f"{component.name}-backup",
                "app.kubernetes.io/managed-by": "adplatform",
                "adplatform/environment": environment,
            },
        },
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": 3600,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "fsGroup": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "backup",
                            "image": backup.image,
                            "command": [arg.format(backup_id=backup_id) for arg in backup.command],
                            "envFrom": [{"secretRef": {"name": backup.credentials_secret}}],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "512Mi"},
                                "limits": {"memory": "2Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "backups", "mountPath": "/backups"}],
                        }
                    ],
                    "volumes": [
                        {
                            "name": "backups",
                            "persistentVolumeClaim": {"claimName": "platform-backups"},
                        }
                    ],
                }
            },
        },
    }


BACKUP_CLAIM = "platform-backups"
BACKUP_CLAIM_SIZE = "50Gi"


def ensure_backup_volume(core: Any, namespace: str, timeout: float = 300) -> str:
    """The claim the backup Jobs write to, created on first use (default StorageClass) and
    waited for until Bound, so a Job never starts without its target volume. A class that binds
    on first use (local-path, the CSI drivers' platform-volumes) binds it for the Job's pod:
    waiting before would wait forever."""
    import time

    from kubernetes.client import StorageV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        core.create_namespaced_persistent_volume_claim(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {
                    "name": BACKUP_CLAIM,
                    "labels": {"app.kubernetes.io/managed-by": "adplatform"},
                },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": BACKUP_CLAIM_SIZE}},
                },
            },
        )
    except ApiException as error:
        if error.status != 409:  # 409: it exists already
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        claim = core.read_namespaced_persistent_volume_claim(BACKUP_CLAIM, namespace)
        if claim.status.phase == "Bound":
            return f"{namespace}/{BACKUP_CLAIM} bound to {claim.spec.volume_name}"
        if claim.spec.storage_class_name:
            storage = StorageV1Api(core.api_client)
            mode = storage.read_storage_class(claim.spec.storage_class_name).volume_binding_mode
            if mode == "WaitForFirstConsumer":
                return (
                    f"{namespace}/{BACKUP_CLAIM} ({claim.spec.storage_class_name}: bound for the "
                    "Job's pod)"
                )
        time.sleep(2)
    raise ToolError(
        f"backup volume {namespace}/{BACKUP_CLAIM} is not Bound after {timeout:.0f}s: check the "
        "cluster's default StorageClass (kubectl get storageclass)"
    )


def run_backup(
    settings: Settings, environment: str, job: dict[str, Any], timeout: float = 3600
) -> str:
    """Create the Job (once: a re-run finds it) on its bound volume and wait for it to succeed;
    raise ToolError when it fails."""
    import time

    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client import BatchV1Api, CoreV1Api
    from kubernetes.client.exceptions import ApiException

    client = KubernetesHook(conn_id=f"kubernetes_{environment}").api_client
    batch, core = BatchV1Api(client), CoreV1Api(client)
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    volume = ensure_backup_volume(core, namespace)
    try:
        batch.create_namespaced_job(namespace, job)
    except ApiException as error:
        if error.status != 409:  # 409: a retried task finds the Job it created
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = batch.read_namespaced_job_status(name, namespace).status
        if status.succeeded:
            return f"backup job {namespace}/{name} succeeded (volume {volume})"
        if status.failed:
            raise ToolError(f"backup job {namespace}/{name} failed: see its pod's log")
        time.sleep(2)
    raise ToolError(f"backup job {namespace}/{name} did not finish within {timeout:.0f}s")


def record(settings: Settings, environment: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Append what happened to <provisioning dir>/<environment>/upgrades.jsonl."""
    path = settings.provisioning_dir / environment / "upgrades.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"recorded_at": datetime.now(UTC).isoformat(timespec="seconds"), **entry}
    with path.open("a") as log:
        log.write(json.dumps(entry, sort_keys=True) + "\n")
    return entry


def preflight(
    settings: Settings, manifest: Manifest, environment: str, name: str, target: str
) -> dict[str, Any]:
    """The upgrade is allowed, the target version exists, and the component's values pass the
    values check against the target chart (with its dependencies at their pins)."""
    from adplatform.provisioning.charts import check_before_apply

    component = manifest.component(name)
    if component.kustomize:
        raise ManifestError(
            [
                f"{name}: installed from kustomize manifests, not a Helm release: pin {target} "
                f"in infra/platform.yaml (components.{name}.version) and run platform_provision, "
                "whose plan shows the kubectl diff"
            ]
        )
    checks = {
        "component": name,
        "from_version": component.version,
        "to_version": target,
        "path": check_upgrade_path(component, target),
        "version": check_version_exists(settings, environment, component, target),
        "stateful": component.backup is not None,
    }
    targeted = component.model_copy(update={"version": target})
    check_before_apply(
        settings,
        manifest.model_copy(update={"components": {**manifest.components, name: targeted}}),
        environment,
        [name],
    )
    return checks
