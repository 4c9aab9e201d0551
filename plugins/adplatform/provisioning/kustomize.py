"""Components installed from kustomize manifests instead of a Helm chart (Kubeflow Pipelines has
none): rendered with kubectl's built-in kustomize, applied with server-side apply, recorded as
numbered revisions under the environment's provisioning directory.

Where the manifests come from is the chart mirror's setting (ADP_HELM_CHART_MIRROR), as for
charts: empty (production), the upstream repository's folder as a kustomize remote reference at
the pinned tag; a mirror (local, tests, an air-gapped site), its archive of that folder
(``<chart>-<version>-manifests.tgz``) and the archives of the remote bases the manifests name by
URL (``remote_bases``), extracted side by side with those URLs rewritten to relative paths
(kustomize refuses absolute ones). Our overlays per environment (the component's ``values``:
kustomize Components) apply to the last entry point.

Each revision applies the entry points in order (``kubectl apply --server-side``), waiting for
the CustomResourceDefinitions of each to be Established before the next. A rollback re-applies
the previous revision's rendered manifests, or deletes what a first install created.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from adplatform.provisioning.commands import RELEASE_DESCRIPTION, Command, ToolError
from adplatform.provisioning.manifest import Component, ManifestError
from adplatform.settings import REPO_ROOT, Settings

if TYPE_CHECKING:
    from adplatform.provisioning.releases import Deployed, ReleaseStep

FIELD_MANAGER = "adplatform"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
_CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "StorageClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}


class KustomizeError(ManifestError):
    """Manifests that cannot be rendered; each problem is one line naming the file and the fix."""


def archives(component: Component) -> list[str]:
    """The mirror's archives the component needs: its manifests, then each remote base."""
    assert component.kustomize is not None
    return [
        f"{component.chart}-{component.version}-manifests.tgz",
        *component.kustomize.remote_bases.values(),
    ]


def mirror_archive(component: Component, name: str, mirror: str, cache_dir: Path) -> Path:
    """One archive from the mirror: a directory, or a URL (downloaded once into the cache)."""
    upstream = f"unset it to read {component.repository} at {component.version}"
    if "://" in mirror:
        target = cache_dir / "downloads" / name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            try:
                with urllib.request.urlopen(f"{mirror.rstrip('/')}/{name}", timeout=120) as r:
                    partial.write_bytes(r.read())
            except OSError as error:
                raise KustomizeError(
                    [
                        f"{component.name}: {mirror.rstrip('/')}/{name} could not be fetched from "
                        f"the chart mirror ({error}): add it there, or {upstream}"
                    ]
                ) from None
            partial.rename(target)
        return target
    path = Path(mirror) / name
    if not path.is_file():
        raise KustomizeError(
            [
                f"{component.name}: {path} is missing from the chart mirror "
                f"(ADP_HELM_CHART_MIRROR): add {name} there, or {upstream}"
            ]
        )
    return path


def sources(component: Component, mirror: str, cache_dir: Path) -> Path:
    """The mirror's archives extracted side by side (once per content), remote references
    rewritten; returns the folder that holds the entry points."""
    assert component.kustomize is not None
    paths = [mirror_archive(component, name, mirror, cache_dir) for name in archives(component)]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()[:16]
    target = cache_dir / "kustomize" / f"{component.chart}-{component.version}-{digest}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
        tops = {}
        for path in paths:
            try:
                with tarfile.open(path) as tar:
                    tops[path.name] = tar.getnames()[0].split("/")[0]
                    tar.extractall(partial, filter="data")
            except (tarfile.TarError, OSError, IndexError) as error:
                shutil.rmtree(partial)
                raise KustomizeError(
                    [
                        f"{component.name}: {path} is not a readable tar.gz archive ({error}): "
                        "replace it with the archive the mirror's SOURCES.tsv describes"
                    ]
                ) from None
        try:
            _rewrite_remote_references(component, partial, tops)
        except KustomizeError:
            shutil.rmtree(partial)
            raise
        partial.rename(target)  # atomic: a killed extraction leaves only a .extract- folder
    manifests = target / Path(component.kustomize.path).name
    if not manifests.is_dir():
        raise KustomizeError(
            [
                f"{component.name}: {paths[0]} has no top folder {manifests.name}/: replace it "
                f"with the archive of {component.kustomize.path} at {component.version}"
            ]
        )
    return manifests


_REMOTE = re.compile(r"^(\s*-\s*)((?:https?://|github\.com/)\S+)\s*$", re.MULTILINE)


def _rewrite_remote_references(component: Component, root: Path, tops: dict[str, str]) -> None:
    """Point every remote base of every kustomization at its extracted archive (relative paths);
    a URL no archive serves, or an archive of another tag, is refused naming the file."""
    for kustomization in sorted(root.rglob("kustomization.y*ml")):
        text = kustomization.read_text()
        rewritten = _REMOTE.sub(
            lambda match, at=kustomization: (
                match[1]  # type: ignore[misc]
                + _local_path(component, root, tops, at, match[2])
            ),
            text,
        )
        if rewritten != text:
            kustomization.write_text(rewritten)


def _local_path(
    component: Component, root: Path, tops: dict[str, str], kustomization: Path, url: str
) -> str:
    assert component.kustomize is not None
    where = kustomization.relative_to(root)
    for repository, archive in component.kustomize.remote_bases.items():
        found = re.fullmatch(rf"{re.escape(repository)}/([^?]+)\?ref=([^&]+)\S*", url)
        if not found:
            continue
        if found[2] not in archive:
            raise KustomizeError(
                [
                    f"{component.name}: {where} names {url} (ref {found[2]}), but the mirror's "
                    f"archive is {archive}: add the archive of that tag and name it in "
                    f"components.{component.name}.kustomize.remote_bases"
                ]
            )
        return os.path.relpath(root / tops[archive] / found[1], kustomization.parent)
    raise KustomizeError(
        [
            f"{component.name}: {where} names {url}, which no archive of the mirror serves: add "
            f"its archive to components.{component.name}.kustomize.remote_bases in "
            "infra/platform.yaml"
        ]
    )


@dataclass(frozen=True)
class Rendered:
    """The rendered manifests, one YAML stream per entry point, in apply order."""

    stages: tuple[tuple[str, str], ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.stages).encode()).hexdigest()

    def objects(self, stage: int | None = None) -> list[dict[str, Any]]:
        texts = [text for _, text in self.stages] if stage is None else [self.stages[stage][1]]
        return [o for text in texts for o in yaml.safe_load_all(text) if isinstance(o, dict)]


def render(
    component: Component, environment: str, mirror: str, cache_dir: Path, root: Path = REPO_ROOT
) -> Rendered:
    """`kubectl kustomize` of every entry point, the environment's overlays on the last; refused
    (KustomizeError, one line each) when a render fails or the objects break the policy."""
    spec = component.kustomize
    assert spec is not None
    manifests = sources(component, mirror, cache_dir) if mirror else None
    work = cache_dir / "kustomize" / "render" / f"{component.name}-{environment}"
    overlays = component.values_files(environment, root)
    stages = []
    for index, entry in enumerate(spec.entry_points):
        folder = work / f"{index}-{entry.replace('/', '-')}"
        folder.mkdir(parents=True, exist_ok=True)
        last = index == len(spec.entry_points) - 1
        base = (
            os.path.relpath(manifests / entry, folder)
            if manifests
            else f"{component.repository}/{spec.path}/{entry}?ref={component.version}"
        )
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [base],
            "components": [os.path.relpath(o, folder) for o in overlays] if last else [],
        }
        (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        try:
            out = Command(("kubectl", "kustomize", str(folder))).run(timeout=600)
        except ToolError as error:
            cause = " | ".join(str(error).splitlines()[1:]).removeprefix("error: ")[:600]
            named = f" with {', '.join(_relative(o, root) for o in overlays)}" if last else ""
            raise KustomizeError(
                [
                    f"{component.name}: `kubectl kustomize` of {entry}{named} fails: {cause}: "
                    "fix the file it names (an overlay here, or re-fetch the archive)"
                ]
            ) from None
        stages.append((entry, out.stdout))
    rendered = Rendered(tuple(stages))
    where = " + ".join(_relative(o, root) for o in overlays)
    if problems := [f"{where}: {p}" for p in policy_problems(component, rendered)]:
        raise KustomizeError(problems)
    return rendered


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def policy_problems(component: Component, rendered: Rendered) -> list[str]:
    """The values policy on the rendered objects: every namespaced object in the component's
    namespace, every workload container with CPU and memory requests and a memory limit, running
    as non-root without privilege escalation."""
    problems = []
    if not rendered.objects():
        problems.append("renders no objects")
    for obj in rendered.objects():
        kind, meta = obj.get("kind", "?"), obj.get("metadata") or {}
        name = f"{kind} {meta.get('name', '?')}"
        if kind not in _CLUSTER_SCOPED and meta.get("namespace") != component.namespace:
            problems.append(
                f"{name}: in namespace {meta.get('namespace')!r}, not {component.namespace!r} "
                "(the manifest's): set the overlay's namespace"
            )
        if kind not in WORKLOAD_KINDS:
            continue
        pod = obj["spec"]["template"]["spec"]
        for container in pod.get("containers") or []:
            resources = container.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            missing = [f"requests.{r}" for r in ("cpu", "memory") if r not in requests]
            missing += [] if "memory" in limits else ["limits.memory"]
            if missing:
                problems.append(
                    f"{name}: container {container['name']}: missing {', '.join(missing)}"
                )
            context = (pod.get("securityContext") or {}) | (container.get("securityContext") or {})
            if context.get("runAsNonRoot") is not True or context.get("runAsUser") == 0:
                problems.append(f"{name}: container {container['name']}: not runAsNonRoot")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(
                    f"{name}: container {container['name']}: allows privilege escalation"
                )
    return problems


def render_for(settings: Settings, environment: str, component: Component) -> Rendered:
    """The render provisioning applies: the settings' mirror, cached where the values check
    caches charts."""
    return render(
        component,
        environment,
        settings.helm_chart_mirror,
        settings.provisioning_dir / environment / "charts",
    )


# --- Commands -------------------------------------------------------------------------------------


def stage_file(revision_dir: Path, index: int, entry: str) -> Path:
    return revision_dir / f"{index}-{entry.replace('/', '-')}.yaml"


def crds_file(revision_dir: Path, index: int, entry: str) -> Path:
    return revision_dir / f"{index}-{entry.replace('/', '-')}.crds.yaml"


def apply_commands(component: Component, revision_dir: Path, wait_seconds: int) -> list[Command]:
    """What a revision runs: each entry point's server-side apply, and before the next one a wait
    for the CRDs it created to be Established."""
    spec = component.kustomize
    assert spec is not None
    steps = []
    for index, entry in enumerate(spec.entry_points):
        steps.append(
            Command(
                (
                    "kubectl",
                    "apply",
                    "--server-side",
                    f"--field-manager={FIELD_MANAGER}",
                    "--force-conflicts",
                    "-f",
                    str(stage_file(revision_dir, index, entry)),
                )
            )
        )
        if index < len(spec.entry_points) - 1:
            steps.append(
                Command(
                    (
                        "kubectl",
                        "wait",
                        "--for=condition=Established",
                        f"--timeout={wait_seconds}s",
                        "-f",
                        str(crds_file(revision_dir, index, entry)),
                    )
                )
            )
    return steps


def delete_commands(component: Component, revision_dir: Path, wait_seconds: int) -> list[Command]:
    """A first install undone: every entry point's objects deleted, the last entry point first."""
    spec = component.kustomize
    assert spec is not None
    return [
        Command(
            (
                "kubectl",
                "delete",
                "--ignore-not-found",
                f"--timeout={wait_seconds}s",
                "-f",
                str(stage_file(revision_dir, index, entry)),
            )
        )
        for index, entry in reversed(list(enumerate(spec.entry_points)))
    ]


# --- Revisions ------------------------------------------------------------------------------------


def state_dir(settings: Settings, environment: str, component: Component) -> Path:
    return settings.provisioning_dir / environment / "kustomize" / component.name


@dataclass
class Revision:
    revision: int
    version: str
    digest: str
    description: str
    status: str  # applying, deployed, failed
    path: Path

    def rendered(self, component: Component) -> Rendered:
        spec = component.kustomize
        assert spec is not None
        return Rendered(
            tuple(
                (entry, stage_file(self.path, index, entry).read_text())
                for index, entry in enumerate(spec.entry_points)
            )
        )

    def save(self) -> None:
        meta = {k: v for k, v in self.__dict__.items() if k != "path"}
        partial = self.path / "revision.json.partial"
        partial.write_text(json.dumps(meta))
        partial.rename(self.path / "revision.json")


def revisions(settings: Settings, environment: str, component: Component) -> list[Revision]:
    """The recorded revisions, oldest first (a folder without revision.json was never applied)."""
    found = []
    home = state_dir(settings, environment, component)
    for meta in home.glob("*/revision.json") if home.is_dir() else []:
        found.append(Revision(**json.loads(meta.read_text()), path=meta.parent))
    return sorted(found, key=lambda r: r.revision)


def write_revision(
    settings: Settings,
    environment: str,
    component: Component,
    rendered: Rendered,
    number: int,
    description: str,
) -> Revision:
    """The rendered manifests as revision ``number`` (status applying), and the CRDs of each
    entry point in a file of their own for the wait."""
    spec = component.kustomize
    assert spec is not None
    path = state_dir(settings, environment, component) / str(number)
    shutil.rmtree(path, ignore_errors=True)  # a killed earlier attempt at this number
    path.mkdir(parents=True)
    for index, (entry, text) in enumerate(rendered.stages):
        stage_file(path, index, entry).write_text(text)
        crds = [o for o in rendered.objects(index) if o.get("kind") == "CustomResourceDefinition"]
        crds_file(path, index, entry).write_text(yaml.safe_dump_all(crds))
    revision = Revision(number, component.version, rendered.digest, description, "applying", path)
    revision.save()
    return revision


def run_revision(
    settings: Settings, environment: str, component: Component, revision: Revision, wait: int
) -> None:
    """Apply a recorded revision, skipping the wait of an entry point that makes no CRD; its
    status says how it went."""
    from adplatform.provisioning.releases import helm_env

    env = {"KUBECONFIG": helm_env(settings, environment)["KUBECONFIG"]}
    try:
        for command in apply_commands(component, revision.path, wait):
            if command.argv[1] == "wait" and not Path(command.argv[-1]).read_text().strip():
                continue
            Command(command.argv, env=env).run(timeout=wait + 300)
    except ToolError:
        revision.status = "failed"
        revision.save()
        raise
    revision.status = "deployed"
    revision.save()


def live_diff(settings: Settings, environment: str, rendered: Rendered) -> str:
    """`kubectl diff --server-side` of the rendered manifests against the live objects (what an
    apply would change; the API server merges and defaults, so only real changes show)."""
    from adplatform.provisioning.releases import helm_env

    env = {"KUBECONFIG": helm_env(settings, environment)["KUBECONFIG"]}
    diffs = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, (_, text) in enumerate(rendered.stages):
            path = Path(scratch) / f"{index}.yaml"
            path.write_text(text)
            diff = Command(
                (
                    "kubectl",
                    "diff",
                    "--server-side",
                    f"--field-manager={FIELD_MANAGER}",
                    "--force-conflicts",
                    "-f",
                    str(path),
                ),
                env=env,
            ).run(ok_codes=(0, 1))
            diffs.append(diff.stdout)
    return "".join(diffs)


def listing(rendered: Rendered) -> str:
    """The objects a first install creates, one line each, in apply order."""
    return "\n".join(
        f"+ {o['kind']} {o['metadata'].get('namespace', '') + '/' if o['metadata'].get('namespace') else ''}"
        f"{o['metadata']['name']}"
        for o in rendered.objects()
    )


def latest(settings: Settings, environment: str, component: Component) -> Revision | None:
    recorded = revisions(settings, environment, component)
    return recorded[-1] if recorded else None


def deployed(settings: Settings, environment: str, component: Component) -> Deployed | None:
    """The latest revision as Helm's history would show it (None: nothing applied)."""
    current = latest(settings, environment, component)
    return _as_deployed(current) if current else None


def _as_deployed(revision: Revision) -> Deployed:
    from adplatform.provisioning.releases import Deployed

    return Deployed(revision.revision, revision.version, revision.status, revision.description)


def deploy(
    settings: Settings, environment: str, component: Component, *, dry_run: bool
) -> ReleaseStep:
    """Apply the rendered manifests as a new revision; nothing happens when they are those of the
    last deployed revision (made by Airflow) and the live objects match them. A failed apply is
    reported in the step (action "failed"), for the caller to roll back."""
    from adplatform.provisioning.releases import ReleaseStep, made_by_airflow, wait_seconds

    wait = wait_seconds(settings, component)
    home = state_dir(settings, environment, component)
    if dry_run:
        steps = apply_commands(component, home / "<next revision>", wait)
        return ReleaseStep(component.name, "; ".join(map(str, steps)), "rendered", True)
    rendered = render_for(settings, environment, component)
    recorded = revisions(settings, environment, component)
    good = [r for r in recorded if r.status == "deployed"]
    # What a rollback restores: the last revision that applied (none: a first install).
    previous = good[-1].revision if good else None
    current = recorded[-1] if recorded else None
    number = current.revision + 1 if current else 1
    planned = "; ".join(map(str, apply_commands(component, home / str(number), wait)))
    if (
        current is not None
        and current.status == "deployed"
        and current.digest == rendered.digest
        and made_by_airflow(_as_deployed(current))
        and not live_diff(settings, environment, rendered)
    ):
        return ReleaseStep(component.name, planned, "unchanged", False, previous)
    revision = write_revision(
        settings, environment, component, rendered, number, RELEASE_DESCRIPTION
    )
    try:
        run_revision(settings, environment, component, revision, wait)
    except ToolError as error:
        return ReleaseStep(component.name, planned, "failed", False, previous, str(error)[-2000:])
    return ReleaseStep(
        component.name, planned, "upgrade" if previous else "install", False, previous
    )


def rollback(
    settings: Settings,
    environment: str,
    component: Component,
    revision: int | None,
    *,
    dry_run: bool,
) -> dict[str, Any]:
    """Re-apply revision ``revision`` (recorded as a new revision, "Rollback to N"), or, with
    None (a first install), delete what the latest revision applied and its record."""
    from adplatform.provisioning.releases import wait_seconds

    wait = wait_seconds(settings, component)
    home = state_dir(settings, environment, component)
    current = latest(settings, environment, component)
    failed = current.revision if current else None
    if revision is None:
        steps = delete_commands(component, current.path if current else home / "<latest>", wait)
    else:
        steps = apply_commands(component, home / str(revision), wait)
    command = "; ".join(map(str, steps))
    if dry_run:
        return {"command": command, "failed_revision": None, "restored_revision": revision}
    if revision is None:
        from adplatform.provisioning.releases import helm_env

        env = {"KUBECONFIG": helm_env(settings, environment)["KUBECONFIG"]}
        for step in steps if current else []:
            Command(step.argv, env=env).run(timeout=wait + 300)
        shutil.rmtree(home, ignore_errors=True)
        return {"command": command, "failed_revision": failed, "restored_revision": None}
    source = next(
        (r for r in revisions(settings, environment, component) if r.revision == revision), None
    )
    if source is None or current is None:
        raise ToolError(f"{component.name}: revision {revision} is not recorded in {home}")
    restored = write_revision(
        settings,
        environment,
        component,
        source.rendered(component),
        current.revision + 1,
        f"Rollback to {revision}",
    )
    run_revision(settings, environment, component, restored, wait)
    return {"command": command, "failed_revision": failed, "restored_revision": revision}


def plan_diff(settings: Settings, environment: str, component: Component) -> str:
    """What applying changes, for the approval: every object a first install creates, or
    `kubectl diff --server-side` of the new render against the live objects."""
    rendered = render_for(settings, environment, component)
    current = latest(settings, environment, component)
    kubeconfig = settings.provisioning_dir / environment / "kubeconfig"
    if current is None or not kubeconfig.exists():
        count = len(rendered.objects())
        return (
            f"{component.name}: not installed -> {component.version} "
            f"(kustomize, {count} objects)\n{listing(rendered)}"
        )
    try:
        diff = live_diff(settings, environment, rendered)
    except ToolError as error:
        first = str(error).splitlines()[-1][:300]
        return f"{component.name}: the live objects could not be diffed ({first})"
    if not diff and current.digest == rendered.digest:
        return f"{component.name} {current.version}: no change"
    return (
        f"{component.name}: {current.version} -> {component.version}\n"
        f"{diff or '(the live objects already match the new render)'}"
    )
