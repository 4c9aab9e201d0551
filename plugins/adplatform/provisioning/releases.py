"""Helm releases: install or upgrade wave by wave (skipping a release already at the wanted chart
version and values, so a re-run changes nothing), health gates that read the release's own objects
through the Kubernetes API, rollback to a recorded revision, and drift between the manifest, the
releases and the live objects."""

from __future__ import annotations

import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adplatform.provisioning import commands
from adplatform.provisioning.commands import RELEASE_DESCRIPTION, Command, ToolError
from adplatform.provisioning.manifest import (
    Component,
    Manifest,
    ManifestError,
    load_manifest,
    merge_values,
)
from adplatform.settings import Settings

# Pods in these states will not heal by waiting: the gate fails at once.
_BROKEN = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"}
# What a dry-run rollback shows when the revision before the upgrade was not read (dry runs do not
# read the cluster before the health gate).
UNKNOWN_REVISION = "<revision before the upgrade>"
# The API path of each kind the health gate reads, by kind.
_PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments",
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets",
    "DaemonSet": "/apis/apps/v1/namespaces/{namespace}/daemonsets",
    "Job": "/apis/batch/v1/namespaces/{namespace}/jobs",
    "CustomResourceDefinition": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


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


def wait_seconds(settings: Settings, component: Component) -> int:
    """How long helm --wait and the health gate wait: the component's timeout, capped by
    ADP_HELM_WAIT_CAP_SECONDS when set."""
    timeout = component.health.timeout_seconds
    return (
        min(timeout, settings.helm_wait_cap_seconds) if settings.helm_wait_cap_seconds else timeout
    )


def host_values_file(settings: Settings, environment: str, name: str) -> Path:
    """Values of a release that only the running cluster knows: the addresses of the local
    cluster's host stand-ins (cluster.py writes them on `cluster up`), given to helm after the
    values files. Only the local environment has such a file."""
    return settings.provisioning_dir / environment / "host-workloads" / f"{name}.yaml"


def extra_values(settings: Settings, environment: str, component: Component) -> list[Path]:
    path = host_values_file(settings, environment, component.name)
    return [path] if path.exists() else []


def desired_values(settings: Settings, component: Component, environment: str) -> dict[str, Any]:
    import yaml

    files = [*component.values_files(environment), *extra_values(settings, environment, component)]
    return merge_values([yaml.safe_load(path.read_text()) or {} for path in files])


def check_in_mirror(settings: Settings, component: Component, version: str) -> str:
    """Refuse a chart version the site's chart mirror does not serve (no mirror: nothing to
    check here; the upgrade pre-flight asks the upstream repository)."""
    mirror = settings.helm_chart_mirror
    if component.in_repository:
        return f"{component.in_repository} (in this repository)"
    if component.kustomize:
        from adplatform.provisioning import kustomize

        if not mirror:
            return f"{component.repository} at {version} (no chart mirror set)"
        pinned = component.model_copy(update={"version": version})
        names = kustomize.archives(pinned)
        for name in names:  # a missing archive is refused naming it
            kustomize.mirror_archive(pinned, name, mirror, settings.provisioning_dir / "charts")
        return f"{mirror} has {', '.join(names)}"
    if not mirror:
        return f"{component.repository} (no chart mirror set)"
    if mirror.startswith(("http://", "https://")):
        show = ("helm", "show", "chart", component.chart, "--repo", mirror, "--version", version)
        try:
            Command(show).run(timeout=120)
        except ToolError:
            raise ManifestError(
                [
                    f"{component.name}: chart {component.chart} {version} is not in the chart "
                    f"mirror {mirror} (ADP_HELM_CHART_MIRROR): add it there, or pick a version "
                    "it serves"
                ]
            ) from None
        return f"{mirror} serves {component.chart} {version}"
    archive = Path(mirror) / f"{component.chart}-{version}.tgz"
    if not archive.is_file():
        have = sorted(p.name for p in Path(mirror).glob(f"{component.chart}-*.tgz"))
        raise ManifestError(
            [
                f"{component.name}: chart {component.chart} {version} is not in the chart mirror "
                f"{mirror} (ADP_HELM_CHART_MIRROR; it has {', '.join(have) or 'no version'}): "
                f"add {archive.name} there, or pick a version it has"
            ]
        )
    return f"{mirror} has {archive.name}"


@dataclass
class Deployed:
    revision: int
    chart_version: str
    status: str
    description: str


def deployed(settings: Settings, environment: str, component: Component) -> Deployed | None:
    """The release's current revision, or None when it is not installed."""
    if component.kustomize:
        from adplatform.provisioning import kustomize

        return kustomize.deployed(settings, environment, component)
    command = commands.helm_history(component)
    try:
        result = Command(command.argv, env=helm_env(settings, environment)).run()
    except ToolError as error:
        if "not found" in str(error):
            return None
        raise
    latest = json.loads(result.stdout)[-1]
    return Deployed(
        int(latest["revision"]),
        latest["chart"].rsplit("-", 1)[-1],
        latest["status"],
        latest.get("description", ""),
    )


def made_by_airflow(current: Deployed) -> bool:
    """The revision carries the description every Airflow upgrade sets, or is a rollback (the
    DAGs' own, or one done by hand as the runbook says). Any other was made outside Airflow:
    drift, which the next provision run applies over."""
    return current.description == RELEASE_DESCRIPTION or current.description.startswith(
        "Rollback to "
    )


@dataclass
class ReleaseStep:
    component: str
    command: str
    action: str  # install, upgrade, unchanged, rendered, failed
    dry_run: bool
    previous_revision: int | None = None  # the revision before this step (None: not installed)
    error: str = ""


def deploy(
    settings: Settings, manifest: Manifest, environment: str, name: str, *, dry_run: bool
) -> ReleaseStep:
    """Install or upgrade one release; nothing happens when chart and values already match and
    the revision was Airflow's. A failed helm command is reported in the step (action "failed"),
    for the caller to roll back."""
    component = manifest.component(name)
    if component.kustomize:
        from adplatform.provisioning import kustomize

        return kustomize.deploy(settings, environment, component, dry_run=dry_run)
    command = commands.helm_upgrade(
        component,
        environment,
        wait_seconds=wait_seconds(settings, component),
        extra_values=extra_values(settings, environment, component),
    )
    if dry_run:
        return ReleaseStep(name, str(command), "rendered", True)
    env = helm_env(settings, environment)
    current = deployed(settings, environment, component)
    previous = current.revision if current else None
    if (
        current
        and current.status == "deployed"
        and current.chart_version == component.version
        and made_by_airflow(current)
    ):
        live = json.loads(Command(commands.helm_get_values(component).argv, env=env).run().stdout)
        if live == desired_values(settings, component, environment):
            return ReleaseStep(name, str(command), "unchanged", False, previous)
    try:
        Command(command.argv, env=env).run(timeout=wait_seconds(settings, component) + 300)
    except ToolError as error:
        return ReleaseStep(name, str(command), "failed", False, previous, str(error)[-2000:])
    return ReleaseStep(name, str(command), "upgrade" if current else "install", False, previous)


# An approval shows each diff up to this many lines (the planning task's log has all of it).
DIFF_LINES_SHOWN = 400


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    """`diff -u` of two texts, as `helm diff` shows a release."""
    import difflib

    return "\n".join(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), old_name, new_name, lineterm="", n=2
        )
    )


def shortened(diff: str) -> str:
    """A diff cut after DIFF_LINES_SHOWN lines, saying where the rest is."""
    lines = diff.splitlines()
    if len(lines) <= DIFF_LINES_SHOWN:
        return diff
    rest = len(lines) - DIFF_LINES_SHOWN
    return "\n".join([*lines[:DIFF_LINES_SHOWN], f"... {rest} more lines in the task's log"])


def values_diff(settings: Settings, environment: str, component: Component) -> str:
    """What installing the release changes: its chart version and the diff of its user-supplied
    values, from the installed release's (`helm get values`) to the values files'. An
    environment without a kubeconfig has no cluster yet: everything is new."""
    import yaml

    if component.kustomize:
        from adplatform.provisioning import kustomize

        return kustomize.plan_diff(settings, environment, component)
    new = yaml.safe_dump(desired_values(settings, component, environment), sort_keys=True)
    current = None
    if (settings.provisioning_dir / environment / "kubeconfig").exists():
        try:
            current = deployed(settings, environment, component)
        except ToolError as error:
            first = str(error).splitlines()[-1][:300]
            return f"{component.name}: the installed release could not be read ({first})"
    if current is None:
        old, was = "", "not installed"
    else:
        env = helm_env(settings, environment)
        live = json.loads(Command(commands.helm_get_values(component).argv, env=env).run().stdout)
        old, was = yaml.safe_dump(live or {}, sort_keys=True), current.chart_version
    if current is not None and old == new and was == component.version:
        return f"{component.name} {was}: no change"
    diff = unified_diff(
        old, new, f"{component.name} {was} values", f"{component.name} {component.version} values"
    )
    return f"{component.name}: {was} -> {component.version}\n{diff or '(values unchanged)'}"


def template_diff(
    settings: Settings, environment: str, component: Component, old: str, new: str
) -> str:
    """`helm diff`-style: the manifests chart version ``new`` renders against those ``old``
    renders, with the environment's values (what an upgrade applies)."""
    rendered = [
        Command(
            commands.helm_template(
                component, environment, version, extra_values(settings, environment, component)
            ).argv,
            env=helm_env(settings, environment),  # helm's caches under the data root
        ).run(timeout=600)
        for version in (old, new)
    ]
    diff = unified_diff(
        rendered[0].stdout,
        rendered[1].stdout,
        f"{component.name} {old} (helm template)",
        f"{component.name} {new} (helm template)",
    )
    return f"{component.name}: {old} -> {new}\n{diff or '(the rendered manifests are the same)'}"


@dataclass
class Health:
    component: str
    healthy: bool
    details: list[str] = field(default_factory=list)
    broken: bool = False  # a state that waiting will not heal: the gate fails at once


def applied_manifest(settings: Settings, environment: str, component: Component) -> str:
    """The manifests last applied: the release's stored manifest (hooks excluded), or a
    kustomize component's latest revision; empty when not installed."""
    if component.kustomize:
        from adplatform.provisioning import kustomize

        current = kustomize.latest(settings, environment, component)
        stages = current.rendered(component).stages if current else ()
        return "\n---\n".join(text for _, text in stages)
    result = Command(
        commands.helm_get_manifest(component).argv, env=helm_env(settings, environment)
    ).run(ok_codes=(0, 1))
    return "" if result.returncode else result.stdout


def release_objects(
    settings: Settings, environment: str, component: Component
) -> list[dict[str, Any]]:
    """The objects the last apply made (see applied_manifest)."""
    import yaml

    text = applied_manifest(settings, environment, component)
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def check_health(settings: Settings, environment: str, component: Component) -> Health:
    """One look at the release's own objects (from its Helm manifest) and at the workloads the
    manifest's selector names: Deployments, StatefulSets and DaemonSets rolled out (the current
    generation observed, every replica updated and ready), Jobs complete, CRDs Established, no pod
    broken; the custom resources ``health.ready`` names with their condition True. A Kubernetes
    API that does not answer is unhealthy (worth another look).

    On the local cluster kwok simulates the operators' pods, so nothing reconciles their custom
    resources: one without a status yet passes there (the API server accepted it), while a
    condition it has is checked as anywhere."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    selector, namespace = component.health.selector, component.namespace
    unreconciled_passes = (
        bool(component.health.ready)
        and load_manifest(with_values=False).environment(environment).cluster == "local"
    )
    try:
        client = KubernetesHook(conn_id=f"kubernetes_{environment}").api_client
        objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        custom: list[tuple[str, dict[str, Any]]] = []
        for kind in WORKLOAD_KINDS:
            path = _PATHS[kind].format(namespace=namespace)
            for item in _get(client, path, selector)["items"]:
                objects[(kind, namespace, item["metadata"]["name"])] = item
        selected = len(objects)
        for obj in release_objects(settings, environment, component):
            kind, meta = str(obj.get("kind")), obj.get("metadata") or {}
            if kind in component.health.ready:
                path = _custom_path(client, obj["apiVersion"], kind, namespace, meta["name"])
                custom.append((kind, _get(client, path)))
            if kind not in _PATHS:
                continue
            where = "" if kind == "CustomResourceDefinition" else meta.get("namespace", namespace)
            key = (kind, where, meta["name"])
            if key not in objects:
                path = _PATHS[kind].format(namespace=where) + f"/{meta['name']}"
                objects[key] = _get(client, path)
        pods = _get(client, f"/api/v1/namespaces/{namespace}/pods", selector)["items"]
    except (HTTPError, ApiException) as error:
        cause = getattr(error, "reason", None) or error
        return Health(
            component.name, False, [f"the Kubernetes API of {environment} did not answer: {cause}"]
        )
    details, broken = [], False
    for (kind, where, name), item in sorted(objects.items()):
        problem, fatal = _object_problem(kind, item)
        if problem:
            details.append(f"{kind} {where + '/' if where else ''}{name}: {problem}")
            broken = broken or fatal
    # A kind the release does not hold (a typo in health.ready) would otherwise check nothing.
    for kind in sorted(set(component.health.ready) - {kind for kind, _ in custom}):
        details.append(f"health.ready names {kind}, but the release holds no {kind}")
    for kind, item in custom:
        if unreconciled_passes and not item.get("status"):
            continue
        if problem := _condition_problem(item, component.health.ready[kind]):
            details.append(f"{kind} {namespace}/{item['metadata']['name']}: {problem}")
    # A broken pod says waiting is futile, but only while something is not ready: a stray failed
    # pod beside a fully rolled-out workload (an old eviction) is no reason to fail.
    for pod in pods if details else []:
        problem = _pod_problem(pod)
        if problem:
            details.append(f"pod {namespace}/{pod['metadata']['name']}: {problem}")
            broken = True
    if selected + sum(k in WORKLOAD_KINDS for k, _, _ in objects) < component.health.min_workloads:
        details.append(f"no workload matches {selector} in namespace {namespace}")
    return Health(component.name, not details, details, broken)


def _object_problem(kind: str, item: dict[str, Any]) -> tuple[str, bool]:
    """What keeps one object from being healthy ("" when it is), and whether waiting is futile."""
    spec, status = item.get("spec") or {}, item.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    if kind == "CustomResourceDefinition":
        established = conditions.get("Established", {}).get("status") == "True"
        return ("" if established else "not Established", False)
    if kind == "Job":
        if conditions.get("Failed", {}).get("status") == "True":
            return f"failed: {conditions['Failed'].get('reason', '')}", True
        complete = conditions.get("Complete", {}).get("status") == "True"
        return ("" if complete else "not complete", False)
    generation = (item.get("metadata") or {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return "the current generation is not observed yet", False
    if kind == "DaemonSet":
        want = status.get("desiredNumberScheduled", 0)
        updated, ready = status.get("updatedNumberScheduled", 0), status.get("numberReady", 0)
    else:
        want = spec.get("replicas", 1)
        updated, ready = status.get("updatedReplicas", 0), status.get("readyReplicas", 0)
    progressing = conditions.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return f"rollout stuck: {progressing.get('message', '')}", True
    if updated < want or ready < want:
        return f"{ready}/{want} ready, {updated}/{want} updated", False
    return "", False


def _condition_problem(item: dict[str, Any], condition: str) -> str:
    """Why a custom resource's ``condition`` is not True yet ("" when it is)."""
    conditions = {c["type"]: c for c in (item.get("status") or {}).get("conditions") or []}
    if condition not in conditions:
        return f"no {condition} condition yet"
    found = conditions[condition]
    if found.get("status") != "True":
        return (
            f"{condition} is {found.get('status')}: {found.get('message') or found.get('reason')}"
        )
    return ""


def _custom_path(client: Any, api_version: str, kind: str, namespace: str, name: str) -> str:
    """The API path of a namespaced custom resource (its plural from the API's discovery)."""
    resources = _get(client, f"/apis/{api_version}")["resources"]
    [plural] = [r["name"] for r in resources if r["kind"] == kind and "/" not in r["name"]]
    return f"/apis/{api_version}/namespaces/{namespace}/{plural}/{name}"


def _pod_problem(pod: dict[str, Any]) -> str:
    """A pod of a long-running workload that failed, or a container that cannot start."""
    status = pod.get("status") or {}
    owners = {o.get("kind") for o in (pod.get("metadata") or {}).get("ownerReferences") or []}
    if status.get("phase") == "Failed" and "Job" not in owners:
        return f"failed: {status.get('reason') or _terminated_reason(status) or 'exited'}"
    for container in status.get("containerStatuses") or []:
        reason = ((container.get("state") or {}).get("waiting") or {}).get("reason")
        if reason in _BROKEN:
            return str(reason)
    return ""


def _terminated_reason(status: dict[str, Any]) -> str:
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return f"container {container['name']} {terminated.get('reason', 'terminated')}"
    return ""


def _get(client: Any, path: str, selector: str | None = None) -> dict[str, Any]:
    response = client.call_api(
        path,
        "GET",
        query_params=[("labelSelector", selector)] if selector else [],
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    return dict(json.loads(response.data))


def health_gate(
    settings: Settings,
    manifest: Manifest,
    environment: str,
    names: list[str],
    *,
    timeout: float | None = None,
) -> list[dict[str, Any]]:
    """Wait until every component is healthy; fail at once on a broken object, or at the timeout
    (the component's own, capped by the settings, unless given; 0 takes a single look)."""
    reports = []
    for name in names:
        component = manifest.component(name)
        wait = wait_seconds(settings, component) if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            health = check_health(settings, environment, component)
            if health.healthy or health.broken or time.monotonic() >= deadline:
                break
            time.sleep(2)
        reports.append(asdict(health))
    return reports


def rollback(
    settings: Settings,
    environment: str,
    component: Component,
    revision: int | None,
    *,
    dry_run: bool,
) -> dict[str, Any]:
    """Roll the release back to ``revision``; returns the command and the revision it left. A
    kustomize component re-applies that revision, or (None) deletes a first install."""
    if component.kustomize:
        from adplatform.provisioning import kustomize

        return kustomize.rollback(settings, environment, component, revision, dry_run=dry_run)
    command = commands.helm_rollback(
        component,
        UNKNOWN_REVISION if revision is None else revision,
        wait_seconds=wait_seconds(settings, component),
    )
    if dry_run:
        return {"command": str(command), "failed_revision": None, "restored_revision": revision}
    if revision is None:
        raise ToolError(f"{component.name}: no previous revision recorded; roll back by hand")
    current = deployed(settings, environment, component)
    Command(command.argv, env=helm_env(settings, environment)).run(
        timeout=wait_seconds(settings, component) + 300
    )
    return {
        "command": str(command),
        "failed_revision": current.revision if current else None,
        "restored_revision": revision,
    }


def release_drift(settings: Settings, manifest: Manifest, environment: str) -> list[dict[str, Any]]:
    """What differs between the manifest and the releases deployed in the environment: chart
    version, values, revisions made outside Airflow, and objects changed out of band."""
    drift = []
    env = helm_env(settings, environment)
    clouds = manifest.environment(environment).clouds
    for name, component in manifest.components.items():
        if not component.runs_on(clouds):
            continue
        current = deployed(settings, environment, component)
        if current is None:
            # A cloud's own component (its CSI driver) is missing on the environment's other cloud.
            if not component.clouds:
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
        if not made_by_airflow(current):
            drift.append(
                {
                    "component": name,
                    "drift": f"revision {current.revision} was made outside Airflow "
                    f"(helm history says {current.description!r})",
                }
            )
        if component.kustomize:
            from adplatform.provisioning import kustomize

            if kustomize.latest(settings, environment, component).digest != (  # type: ignore[union-attr]
                kustomize.render_for(settings, environment, component).digest
            ):
                drift.append(
                    {"component": name, "drift": "the overlays render other manifests than "
                     f"revision {current.revision} applied"}
                )  # fmt: skip
        else:
            live = json.loads(
                Command(commands.helm_get_values(component).argv, env=env).run().stdout
            )
            changed = _diff_keys(desired_values(settings, component, environment), live or {})
            if changed:
                drift.append(
                    {"component": name, "drift": f"values differ at {', '.join(changed[:10])}"}
                )
        drift += [
            {"component": name, "drift": f"{obj} changed out of band: {change}"}
            for obj, change in object_drift(settings, environment, component)
        ]
    return drift


def object_drift(
    settings: Settings, environment: str, component: Component
) -> list[tuple[str, str]]:
    """Live objects that differ from what the release applied: `kubectl diff --server-side` of
    the release's manifest (the API server merges and defaults, so only real changes show).
    The replica count of a workload a HorizontalPodAutoscaler scales is the HPA's to set, not
    drift. Returns (object, changed lines) per object."""
    import yaml

    env = helm_env(settings, environment)
    manifest = applied_manifest(settings, environment, component)
    scaled = autoscaled(env)
    with tempfile.TemporaryDirectory() as tmp:
        # Objects without a namespace are in the release's, as for helm: the context's default.
        config = yaml.safe_load(Path(env["KUBECONFIG"]).read_text())
        for context in config.get("contexts") or []:
            context["context"]["namespace"] = component.namespace
        kubeconfig, objects = Path(tmp) / "kubeconfig", Path(tmp) / "manifest.yaml"
        kubeconfig.write_text(json.dumps(config))
        objects.write_text(manifest)
        diff = Command(
            ("kubectl", "diff", "--server-side", "--force-conflicts", "-f", str(objects)),
            env=env | {"KUBECONFIG": str(kubeconfig)},
        ).run(ok_codes=(0, 1))
    found: list[tuple[str, str]] = []
    hpa_only: set[str] = set()  # objects whose only change is the replicas their HPA set
    for line in diff.stdout.splitlines():
        if line.startswith("diff "):
            found.append((line.rsplit("/", 1)[-1], ""))
        elif found and line[:1] in "+-" and not line.startswith(("+++", "---")):
            obj, change = found[-1]
            if obj in scaled and re.fullmatch(r"[+-]  replicas: \d+", line):
                hpa_only.add(obj)
            elif "generation:" not in line and len(change) < 300:
                found[-1] = (obj, f"{change}; {line.strip()}" if change else line.strip())
    return [(obj, change) for obj, change in found if change or obj not in hpa_only]


def autoscaled(env: dict[str, str]) -> set[str]:
    """The workloads the cluster's HorizontalPodAutoscalers scale, named as `kubectl diff` names
    their files (group.version.Kind.namespace.name)."""
    hpas = Command(("kubectl", "get", "hpa", "--all-namespaces", "-o", "json"), env=env).run()
    return {
        "{}.{}.{}.{}".format(
            target["apiVersion"].replace("/", "."),
            target["kind"],
            hpa["metadata"]["namespace"],
            target["name"],
        )
        for hpa in json.loads(hpas.stdout)["items"]
        for target in [hpa["spec"]["scaleTargetRef"]]
    }


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
