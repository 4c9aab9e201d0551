"""The platform manifest (infra/platform.yaml): typed, validated, and ordered into waves.

Every problem is reported with the file and the key it concerns (``infra/platform.yaml:
components.clickhouse.depends_on: unknown component 'minoi'``), and all of them at once, so one
edit fixes a broken manifest. Nothing is installed from a manifest that does not validate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adplatform.settings import PLATFORM_ENVIRONMENTS, REPO_ROOT

MANIFEST_PATH = REPO_ROOT / "infra" / "platform.yaml"
Cloud = Literal["hcloud", "aws", "existing"]
UpgradeStep = Literal["patch", "minor", "major"]
_NAME = r"^[a-z][a-z0-9-]{0,52}$"


class ManifestError(ValueError):
    """The manifest (or a values file it names) is invalid; the message names file and key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Environment(_Strict):
    description: str
    clouds: tuple[Cloud, ...] = Field(min_length=1)
    domain: str
    k3s_version: str = Field(pattern=r"^v\d+\.\d+\.\d+\+k3s\d+$")
    # k3s: servers prepared over SSH and K3s installed by the provision DAG; local: the local
    # cluster that `adplatform cluster up` runs (real control plane, kwok nodes).
    cluster: Literal["k3s", "local"] = "k3s"


class HealthCheck(_Strict):
    """Every Deployment, StatefulSet and DaemonSet matching the selector must be fully ready."""

    selector: str = Field(pattern=r"^[\w./-]+=[\w.-]+$")
    timeout_seconds: int = Field(600, ge=30, le=3600)
    min_workloads: int = Field(1, ge=0)
    # The release's custom resources, by kind, and the status condition each must have True: a
    # cluster an operator runs from pods it makes itself (no workload of the chart's own).
    ready: dict[str, str] = {}


class Backup(_Strict):
    image: str
    command: tuple[str, ...] = Field(min_length=1)
    credentials_secret: str = Field(pattern=_NAME)


class Kustomize(_Strict):
    """A component installed from kustomize manifests instead of a chart (Kubeflow Pipelines has
    none): ``path`` in the repository at the tag ``version``, or the chart mirror's archive of
    that folder (``<chart>-<version>-manifests.tgz``)."""

    path: str
    # Rendered and applied in this order (server-side apply), each one's CRDs Established before
    # the next; the component's overlays (its ``values``) apply to the last.
    entry_points: tuple[str, ...] = Field(min_length=1)
    # Remote bases the manifests name by URL (``<repository>/<folder>?ref=<tag>``), by repository:
    # the mirror's archive of it, whose top folder holds that repository's files at the tag.
    remote_bases: dict[str, str] = {}


class Component(_Strict):
    name: str = ""
    # https:// or oci://: a chart repository; file://<folder>: a chart of this repository; with
    # ``kustomize``, the Git repository of the manifests.
    repository: str = Field(pattern=r"^(https://|oci://|file://)\S+$")
    chart: str
    version: str = Field(pattern=r"^v?\d+\.\d+\.\d+$")
    namespace: str = Field(pattern=_NAME)
    values: tuple[str, ...] = Field(min_length=1)
    depends_on: tuple[str, ...] = ()
    health: HealthCheck
    upgrade: UpgradeStep = "minor"
    backup: Backup | None = None
    policy_exceptions: dict[Literal["root", "no_workloads", "operator_managed_pods"], str] = {}
    # Set: kustomize manifests, applied with kubectl; ``values`` are then kustomize Components
    # (folders), the base first.
    kustomize: Kustomize | None = None
    # Installed only where the cluster runs on one of these clouds (a cloud's CSI driver); empty:
    # everywhere. A dependency on a component another cloud's run leaves out is met by its
    # alternative for this cloud.
    clouds: tuple[Cloud, ...] = ()

    @property
    def release(self) -> str:
        return self.name

    @property
    def in_repository(self) -> Path | None:
        """The chart's folder, relative to the repository root, when this repository holds it."""
        if self.repository.startswith("file://"):
            return Path(self.repository.removeprefix("file://")) / self.chart
        return None

    def runs_on(self, clouds: Iterable[str]) -> bool:
        return not self.clouds or bool(set(self.clouds) & set(clouds))

    def values_files(self, environment: str, root: Path = REPO_ROOT) -> list[Path]:
        return [root / v.format(environment=environment) for v in self.values]


class Manifest(_Strict):
    schema_version: Literal[1]
    environments: dict[str, Environment] = Field(min_length=1)
    components: dict[str, Component] = Field(min_length=1)
    path: Path = MANIFEST_PATH
    root: Path = REPO_ROOT

    def component(self, name: str) -> Component:
        try:
            return self.components[name]
        except KeyError:
            raise ManifestError(
                [
                    f"{self._where('components')}: unknown component {name!r}; "
                    f"choose from {', '.join(sorted(self.components))}"
                ]
            ) from None

    def environment(self, name: str) -> Environment:
        try:
            return self.environments[name]
        except KeyError:
            raise ManifestError(
                [
                    f"{self._where('environments')}: unknown environment {name!r}; "
                    f"choose from {', '.join(self.environments)}"
                ]
            ) from None

    def _where(self, key: str) -> str:
        return f"{_relative(self.path)}: {key}"

    def waves(
        self, selected: list[str] | None = None, clouds: Iterable[str] | None = None
    ) -> list[list[str]]:
        """Components in dependency waves; with ``selected``, those plus everything they need;
        with ``clouds``, only those that run there."""
        needed = self.closure(selected) if selected else set(self.components)
        if clouds is not None:
            clouds = set(clouds)
            needed = {name for name in needed if self.components[name].runs_on(clouds)}
        depth: dict[str, int] = {}

        def wave_of(name: str) -> int:
            if name not in depth:
                deps = self.components[name].depends_on
                depth[name] = 1 + max((wave_of(d) for d in deps), default=-1)
            return depth[name]

        waves: list[list[str]] = []
        for name in sorted(needed, key=lambda n: (wave_of(n), n)):
            while len(waves) <= depth[name]:
                waves.append([])
            waves[depth[name]].append(name)
        return [wave for wave in waves if wave]

    def closure(self, selected: list[str]) -> set[str]:
        """The selected components and, transitively, everything they depend on."""
        needed: set[str] = set()
        stack = [self.component(name).name for name in selected]
        while stack:
            name = stack.pop()
            if name not in needed:
                needed.add(name)
                stack.extend(self.components[name].depends_on)
        return needed


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _dependency_problems(components: dict[str, Component], where: str) -> list[str]:
    problems = [
        f"{where}: components.{name}.depends_on: unknown component {dep!r}"
        for name, component in components.items()
        for dep in component.depends_on
        if dep not in components
    ]
    # Depth-first search; a grey node met again closes a cycle, reported with its path.
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "grey"
        for dep in components[name].depends_on:
            if dep not in components:
                continue
            if state.get(dep) == "grey":
                cycle = [*path[path.index(dep) :], dep]
                problems.append(
                    f"{where}: components.{name}.depends_on: dependency cycle {' -> '.join(cycle)}"
                )
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = "black"

    for name in components:
        if name not in state:
            visit(name, [name])
    return problems


def _load_yaml(path: Path, problems: list[str]) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        problems.append(
            f"{_relative(path)}: file not found in {REPO_ROOT} (the adplatform checkout: set "
            "ADP_REPO_ROOT to it)"
        )
    except yaml.YAMLError as error:
        problems.append(f"{_relative(path)}: not well-formed YAML: {error}")
    return None


def load_manifest(
    path: Path = MANIFEST_PATH, root: Path = REPO_ROOT, *, with_values: bool = True
) -> Manifest:
    """Read and validate the manifest and (``with_values``) every values file it names against
    the policy; raise ManifestError listing every problem."""
    from adplatform.provisioning.policy import check_release, check_values_file

    where = _relative(path)
    problems: list[str] = []
    raw = _load_yaml(path, problems)
    if problems:
        raise ManifestError(problems)
    if not isinstance(raw, dict):
        raise ManifestError([f"{where}: expected a mapping at the top level"])
    for name in raw.get("components") or {}:
        if not re.match(_NAME, str(name)):
            problems.append(f"{where}: components.{name}: names are lower-case, digits and '-'")
    try:
        manifest = Manifest.model_validate(
            {
                **raw,
                "components": {
                    name: {**(spec or {}), "name": name}
                    for name, spec in (raw.get("components") or {}).items()
                },
                "path": path,
                "root": root,
            }
        )
    except ValidationError as error:
        for e in error.errors():
            key = ".".join(str(p) for p in e["loc"])
            problems.append(f"{where}: {key}: {e['msg']}")
        raise ManifestError(problems) from None
    problems += _dependency_problems(manifest.components, where)
    if set(manifest.environments) != set(PLATFORM_ENVIRONMENTS):
        problems.append(
            f"{where}: environments: must be exactly {', '.join(PLATFORM_ENVIRONMENTS)} "
            "(each has a kubernetes_<environment> connection)"
        )
    if with_values:
        for component in manifest.components.values():
            for environment, spec in manifest.environments.items():
                if not component.runs_on(spec.clouds):
                    continue
                if component.kustomize:
                    problems += _overlay_problems(component, environment, root)
                    continue
                layers = []
                for values_file in component.values_files(environment, root):
                    values = _load_yaml(values_file, problems)
                    if values is None:
                        continue
                    if not isinstance(values, dict):
                        problems.append(f"{_relative(values_file)}: expected a mapping")
                        continue
                    problems += check_values_file(values, _relative(values_file))
                    layers.append(values)
                merged_where = " + ".join(
                    _relative(f) for f in component.values_files(environment, root)
                )
                problems += check_release(merge_values(layers), merged_where, component)
    if problems:
        raise ManifestError(sorted(set(problems)))
    return manifest


def _overlay_problems(component: Component, environment: str, root: Path) -> list[str]:
    """A kustomize component's overlays are folders holding a kustomize Component (what the
    rendered objects must satisfy is checked when they are rendered)."""
    problems = []
    for folder in component.values_files(environment, root):
        overlay = _load_yaml(folder / "kustomization.yaml", [])
        if not isinstance(overlay, dict) or overlay.get("kind") != "Component":
            problems.append(
                f"{_relative(folder)}: not a kustomize Component (a kustomization.yaml with "
                "kind: Component, apiVersion: kustomize.config.k8s.io/v1alpha1)"
            )
    return problems


def merge_values(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Helm's merge of several -f files: mappings merge key by key, null deletes a key, anything
    else is replaced."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _merge(merged, layer)
    return merged


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in overlay.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


@cache
def _structure(path: Path, mtime_ns: int) -> Manifest:
    return load_manifest(path, with_values=False)


def manifest_structure(path: Path = MANIFEST_PATH) -> Manifest:
    """The manifest without its values files, re-read only when the file changes: what DAG
    parsing needs (environments, components, waves) at the cost of one small file read."""
    return _structure(path, path.stat().st_mtime_ns if path.exists() else 0)
