"""The values check against the real charts: what Helm would do with our values, before it does.

Helm ignores a values key the chart does not know, so a typo is configuration that silently does
nothing. For every component and environment this check reads the pinned chart (from the chart
mirror, ADP_HELM_CHART_MIRROR, or the upstream repository) and refuses the values when:

- a key path is in neither the chart's default values, its ``values.schema.json``, the keys its
  values.yaml documents commented out nor those its templates read (subcharts under their
  alias, ``global`` anywhere), except inside maps the chart leaves free-form (an empty default,
  a schema without properties, annotations, labels, config blocks) and inside Kubernetes-typed
  blocks (resources, affinity, security contexts, ...), whose contents the rendered objects
  are validated for instead (lists: by the chart's schema and the rendered objects only);
- the merged values break the chart's (or a subchart's) ``values.schema.json``;
- ``helm template`` or ``helm lint --strict`` fails with the base file plus the overlay;
- a rendered object is not a valid Kubernetes object of the environment's version, or is of a
  custom kind whose CustomResourceDefinition neither the chart nor a component it depends on
  installs (a wave that would fail with "no matches for kind").

Every problem names the values file (or the manifest key), the key, and the fix (for an unknown
key, the nearest key the chart knows).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from adplatform.provisioning import kustomize
from adplatform.provisioning.commands import Command, ToolError
from adplatform.provisioning.manifest import Component, Manifest, ManifestError, merge_values
from adplatform.settings import REPO_ROOT, Settings

# Kubernetes-typed blocks: their keys are Kubernetes' own, checked on the rendered objects
# against Kubernetes' schema (a chart's default there is an example, not the list of keys).
_KUBERNETES_TYPED = re.compile(
    r"^(.*securitycontext|resources|affinity|tolerations|nodeselector|topologyspreadconstraints|"
    r"(liveness|readiness|startup)probe|.*volumes|.*volumemounts|.*env|env.*|extraenvvars|"
    r"lifecycle|.*initcontainers|.*sidecars|.*containers|.*ports|imagepullsecrets|dnsconfig|"
    r"hostaliases|updatestrategy|strategy|persistentvolumeclaimretentionpolicy)$",
    re.IGNORECASE,
)
# Maps charts document as free-form: names, labels, extra configuration passed through.
_FREE_FORM = re.compile(
    r"^(.*annotations|.*labels|.*config|.*configuration|config.*|.*settings|extra.*|.*args|"
    r".*selector|.*matchlabels|.*\.ini)$",
    re.IGNORECASE,
)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML as Kubernetes reads it: a bare ``=`` (YAML 1.1's value tag) is the string "="."""


_Loader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


class ChartError(ManifestError):
    """Values the chart would not accept; each problem names the file, the key and the fix."""


@dataclass
class Chart:
    """One chart (or subchart) as extracted: its defaults, schema and subcharts by values key."""

    name: str
    version: str
    path: Path
    defaults: dict[str, Any]
    schema: dict[str, Any] | None
    subcharts: dict[str, Chart] = field(default_factory=dict)
    conditions: dict[str, str] = field(default_factory=dict)  # subchart key -> values path
    # Key paths without a default that the chart still knows: commented out in values.yaml, or
    # read by its templates (``.Values.clickhouse.resources``).
    documented: frozenset[tuple[str, ...]] = frozenset()

    def globals(self) -> dict[str, Any]:
        merged = dict(self.defaults.get("global") or {})
        for sub in self.subcharts.values():
            merged = merge_values([sub.globals(), merged])
        return merged


# --- Finding and reading charts -----------------------------------------------------------------


def chart_archive(
    component: Component, mirror: str, cache_dir: Path, where: str, root: Path = REPO_ROOT
) -> Path:
    """The packaged chart at the pinned version, from the mirror (a directory or a repository
    URL) or the component's own repository, or packaged from this repository's folder (under
    ``root``); ChartError names the manifest key when it is not there."""
    key = f"{where}: components.{component.name}.version"
    if component.in_repository:
        folder = root / component.in_repository
        meta = yaml.safe_load((folder / "Chart.yaml").read_text())
        if str(meta["version"]) != component.version:
            raise ChartError(
                [
                    f"{key}: {component.version}, but {component.in_repository}/Chart.yaml says "
                    f"{meta['version']}: pin the chart's version"
                ]
            )
        target = cache_dir / "packaged"
        Command(("helm", "package", str(folder), "-d", str(target))).run(timeout=120)
        return target / f"{component.chart}-{component.version}.tgz"
    if mirror and "://" not in mirror:
        archive = Path(mirror) / f"{component.chart}-{component.version}.tgz"
        if archive.is_file():
            return archive
        have = sorted(
            p.name.removeprefix(f"{component.chart}-").removesuffix(".tgz")
            for p in Path(mirror).glob(f"{component.chart}-*.tgz")
            if re.fullmatch(rf"{re.escape(component.chart)}-v?\d[\w.+-]*\.tgz", p.name)
        )
        raise ChartError(
            [
                f"{key}: chart {component.chart} {component.version} is not in the chart mirror "
                f"{mirror}; re-pin to one it has ({', '.join(have) or 'none'})"
            ]
        )
    target = cache_dir / "pulled" / f"{component.chart}-{component.version}"
    archive = target / f"{component.chart}-{component.version}.tgz"
    if not archive.is_file():
        repository = mirror or component.repository
        reference = (
            (f"{repository.rstrip('/')}/{component.chart}",)
            if repository.startswith("oci://")
            else (component.chart, "--repo", repository)
        )
        try:
            Command(
                ("helm", "pull", *reference, "--version", component.version, "-d", str(target))
            ).run(timeout=600)
        except ToolError as error:
            raise ChartError(
                [
                    f"{key}: chart {component.chart} {component.version} not found in {repository}:"
                    f" re-pin to a version it serves ({str(error).splitlines()[-1]})"
                ]
            ) from None
    return archive


def load_chart(archive: Path, cache_dir: Path) -> Chart:
    """Extract the archive once (keyed by its content) and read the chart tree."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    target = cache_dir / "charts" / f"{archive.stem}-{digest}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
        partial.rename(target)  # atomic: a killed extraction leaves only a .extract- directory
    (top,) = [p for p in target.iterdir() if (p / "Chart.yaml").is_file()]
    return _read_chart(top)


@cache
def _read_chart(path: Path) -> Chart:
    meta = yaml.safe_load((path / "Chart.yaml").read_text())
    values_file, schema_file = path / "values.yaml", path / "values.schema.json"
    defaults = (yaml.safe_load(values_file.read_text()) if values_file.is_file() else None) or {}
    schema = json.loads(schema_file.read_text()) if schema_file.is_file() else None
    documented = _commented_keys(values_file.read_text()) if values_file.is_file() else set()
    for template in (path / "templates").rglob("*"):
        if template.is_file():
            for match in _VALUES_REFERENCE.finditer(template.read_text(errors="replace")):
                parts = tuple(match[1].split(".")[1:])
                documented |= {parts[: i + 1] for i in range(len(parts))}
    chart = Chart(meta["name"], str(meta["version"]), path, defaults, schema)
    chart.documented = frozenset(documented)
    dependencies = {d["name"]: d for d in meta.get("dependencies") or []}
    if (path / "requirements.yaml").is_file():  # apiVersion v1 charts
        requirements = yaml.safe_load((path / "requirements.yaml").read_text()) or {}
        dependencies |= {d["name"]: d for d in requirements.get("dependencies") or []}
    for sub_path in sorted((path / "charts").glob("*/Chart.yaml")):
        sub = _read_chart(sub_path.parent)
        dependency = dependencies.get(sub.name, {})
        key = dependency.get("alias") or sub.name
        chart.subcharts[key] = sub
        if dependency.get("condition"):
            chart.conditions[key] = dependency["condition"]
    return chart


_KEY_LINE = re.compile(
    r"^(?P<indent> *)(?P<comment># ?(?P<inner> *))?(?P<key>[A-Za-z_][\w.-]*):( |$)"
)


_VALUES_REFERENCE = re.compile(r"\.Values((?:\.[A-Za-z_]\w*)+)")


def _commented_keys(text: str) -> set[tuple[str, ...]]:
    """Key paths a chart documents in values.yaml but leaves commented out (``# host: ...``
    under ``psql:``): known keys without a default."""
    found: set[tuple[str, ...]] = set()
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if not match:
            continue
        indent = len(match["indent"]) + len(match["inner"] or "")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(key for _, key in stack), match["key"])
        if match["comment"] is not None:
            found.add(path)
        stack.append((indent, match["key"]))
    return found


# --- Key paths ------------------------------------------------------------------------------------


def _schema_properties(schema: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """(properties, closed): the properties a schema node names (through allOf/anyOf/oneOf) and
    whether it names any at all."""
    if not isinstance(schema, dict):
        return {}, False
    properties = dict(schema.get("properties") or {})
    for combinator in ("allOf", "anyOf", "oneOf"):
        for option in schema.get(combinator) or []:
            properties |= _schema_properties(option)[0]
    patterns = schema.get("patternProperties")
    return properties, bool(properties) and not patterns


def unknown_keys(
    values: dict[str, Any],
    chart: Chart,
    defaults: Any,
    schema: dict[str, Any] | None,
    known_globals: dict[str, Any],
    path: tuple[str, ...] = (),
    prefix: str = "",
) -> Iterator[tuple[str, list[str]]]:
    """Every (key path, keys the chart knows there) in ``values`` that the chart does not know;
    ``path`` is the position inside ``chart``, ``prefix`` the dotted position in our values."""
    defaults = defaults if isinstance(defaults, dict) else {}
    subcharts = chart.subcharts if not path else {}
    properties, closed = _schema_properties(schema)
    documented = {p[-1] for p in chart.documented if p[:-1] == path}
    known = set(defaults) | set(properties) | set(subcharts) | documented | {"global"}
    structured = bool(defaults) or closed or bool(subcharts)
    for key, value in values.items():
        child = f"{prefix}{key}"
        if key == "global" and not path:
            if isinstance(value, dict):
                yield from unknown_keys(
                    value, chart, known_globals, None, known_globals, ("global",), f"{child}."
                )
            continue
        if structured and key not in known:
            yield child, sorted(str(k) for k in known - {"global"})
            continue
        if not isinstance(value, dict) or (
            _KUBERNETES_TYPED.match(str(key)) or _FREE_FORM.match(str(key))
        ):
            continue
        if key in subcharts:
            sub = subcharts[key]
            yield from unknown_keys(
                value,
                sub,
                merge_values([sub.defaults, defaults.get(key) or {}]),
                sub.schema,
                known_globals,
                (),
                f"{child}.",
            )
        else:
            yield from unknown_keys(
                value,
                chart,
                defaults.get(key),
                properties.get(key),
                known_globals,
                (*path, str(key)),
                f"{child}.",
            )


def _nearest(key: str, known: list[str]) -> str:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1, cutoff=0.5)
    if close:
        return f"did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}?"
    return f"the chart knows {', '.join(known[:12])}{', ...' if len(known) > 12 else ''} here"


# --- Schema ---------------------------------------------------------------------------------------


def schema_problems(chart: Chart, values: dict[str, Any], path: str = "") -> Iterator[str]:
    """Violations of the chart's and its enabled subcharts' schemas by the coalesced values
    (chart defaults, then ours), as ``key: message``."""
    import jsonschema

    coalesced = merge_values([chart.defaults, values])
    if chart.schema:
        validator = jsonschema.validators.validator_for(chart.schema)(
            chart.schema, registry=_offline_registry()
        )
        for error in validator.iter_errors(coalesced):
            key = ".".join(str(p) for p in error.absolute_path)
            yield f"{path}{key or '(top level)'}: {error.message[:300]}"
    for key, sub in chart.subcharts.items():
        inner = coalesced.get(key)
        if isinstance(inner, dict) and _enabled(coalesced, chart.conditions.get(key)):
            yield from schema_problems(sub, inner, f"{path}{key}.")


def _enabled(values: dict[str, Any], condition: str | None) -> bool:
    """Helm's dependency condition: the first of its comma-separated paths that is a boolean."""
    for candidate in (condition or "").split(","):
        node: Any = values
        for part in candidate.strip().split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, bool):
            return node
    return True


@cache
def _offline_registry() -> Any:
    """Schema references resolved offline: Kubernetes' definitions (yannh/kubernetes-json-schema,
    which kubernetes-validate ships) from the local copy; anything else is refused by name."""
    from referencing import Registry, Resource
    from referencing.exceptions import NoSuchResource

    def retrieve(uri: str) -> Resource[Any]:
        found = re.search(r"kubernetes-json-schema/master/v(\d+\.\d+)\.\d+/_definitions\.json", uri)
        if not found:
            raise NoSuchResource(uri)
        return _kubernetes_definitions(found.group(1), strict=False)

    return Registry(retrieve=retrieve)  # type: ignore[call-arg]


# --- Rendering ----------------------------------------------------------------------------------


@dataclass
class Rendered:
    objects: list[dict[str, Any]]
    problems: list[str]

    def crds(self) -> set[tuple[str, str]]:
        """(group/version, kind) of every CustomResourceDefinition rendered."""
        return {
            (f"{o['spec']['group']}/{v['name']}", o["spec"]["names"]["kind"])
            for o in self.objects
            if o.get("kind") == "CustomResourceDefinition"
            for v in o["spec"].get("versions") or []
        }


def render(
    component: Component,
    archive: Path,
    values_files: list[Path],
    kube_version: str,
    api_versions: Iterable[str],
) -> Rendered:
    """helm template (with CRDs) and helm lint --strict of the chart with these values."""
    values_args = tuple(arg for f in values_files for arg in ("--values", str(f)))
    common = ("--namespace", component.namespace, "--kube-version", kube_version, *values_args)
    apis = tuple(arg for api in sorted(api_versions) for arg in ("--api-versions", api))
    problems = []
    objects: list[dict[str, Any]] = []
    try:
        out = Command(
            (
                "helm",
                "template",
                component.release,
                str(archive),
                "--include-crds",
                "--skip-tests",  # test hooks are not installed; `helm test` runs them
                *common,
                *apis,
            )
        ).run(timeout=600)
        objects = [o for o in yaml.load_all(out.stdout, Loader=_Loader) if isinstance(o, dict)]
    except ToolError as error:
        problems.append(f"helm template fails: {_helm_error(error)}")
    lint = Command(("helm", "lint", "--strict", str(archive), *common)).run(
        ok_codes=(0, 1), timeout=600
    )
    if lint.returncode:
        findings = [line.strip() for line in lint.stdout.splitlines() if "[INFO]" not in line]
        problems.append(f"helm lint --strict fails: {' | '.join(filter(None, findings))[:1200]}")
    return Rendered(objects, problems)


def _helm_error(error: ToolError) -> str:
    lines = [
        line.strip()
        for line in str(error).splitlines()[1:]
        if line.strip()
        and not line.startswith(("Use --debug", "coalesce.go"))
        and "[INFO]" not in line
    ]
    return " | ".join(lines)[:1200]


@cache
def _kubernetes_validator(version: str, api: str, kind: str) -> Any:
    """A strict validator of Kubernetes' own schema for one kind (None: not a built-in kind);
    the schema files ship with kubernetes-validate, read once per kind instead of per object."""
    import importlib.resources

    import jsonschema
    from referencing import Registry, Resource

    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    schema_dir = root / f"v{version}.0-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api)
    schema_file = schema_dir / f"{kind.lower()}-{group}.json"
    if not schema_file.is_file():
        return None
    schema = json.loads(schema_file.read_text())
    definitions = _kubernetes_definitions(version, strict=True)
    registry: Registry[Any] = Resource.from_contents(schema) @ (definitions @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@cache
def _is_builtin_kind(version: str, kind: str) -> bool:
    import importlib.resources

    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    prefix = f"{kind.lower()}-"
    return any(f.name.startswith(prefix) for f in (root / f"v{version}.0-local-strict").iterdir())


@cache
def _kubernetes_definitions(version: str, *, strict: bool) -> Any:
    import importlib.resources

    from referencing import Resource

    root = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    path = root / f"v{version}.0-local{'-strict' if strict else ''}" / "_definitions.json"
    return Resource.from_contents(json.loads(path.read_text()))


def object_problems(
    objects: list[dict[str, Any]], available: set[tuple[str, str]], kube_version: str
) -> Iterator[str]:
    """Rendered objects that Kubernetes would refuse: invalid built-in objects, and custom
    kinds whose CRD is not installed by the release or one it depends on."""
    version = ".".join(kube_version.lstrip("v").split(".")[:2])
    for obj in objects:
        kind, api = str(obj.get("kind", "?")), str(obj.get("apiVersion", "?"))
        name = f"{kind} {(obj.get('metadata') or {}).get('name', '?')}"
        validator = _kubernetes_validator(version, api, kind)
        if validator is None:
            if (api, kind) in available:
                continue
            if _is_builtin_kind(version, kind):
                yield f"{name}: Kubernetes {version} does not serve {kind} as {api}"
            else:
                yield (
                    f"{name}: no component it depends on installs the CRD of {kind} ({api}); "
                    "make it depend on the component that does, or disable the object"
                )
            continue
        error = next(iter(validator.iter_errors(obj)), None)
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path)
            yield f"{name}: not a valid {api} {kind} at {where}: {error.message[:200]}"


# --- The check ------------------------------------------------------------------------------------


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def values_problems(
    manifest: Manifest, component: Component, environment: str, chart: Chart
) -> list[str]:
    """Unknown keys (per file) and schema violations (of the merged values) of one release."""
    problems = []
    files = component.values_files(environment, manifest.root)
    layers = []
    for path in files:
        values = yaml.safe_load(path.read_text()) or {}
        layers.append(values)
        for key, known in unknown_keys(
            values, chart, chart.defaults, chart.schema, chart.globals()
        ):
            problems.append(
                f"{_relative(path, manifest.root)}: {key}: chart {chart.name} {chart.version} "
                f"has no such key; {_nearest(key, known)}"
            )
    merged_where = " + ".join(_relative(f, manifest.root) for f in files)
    problems += [
        f"{merged_where}: {problem} (schema of chart {chart.name} {chart.version})"
        for problem in schema_problems(chart, merge_values(layers))
    ]
    return problems


def check_charts(
    manifest: Manifest,
    environments: Iterable[str],
    mirror: str,
    cache_dir: Path,
    *,
    components: Iterable[str] | None = None,
    workers: int = 2,
) -> None:
    """Run the whole values check; raise ChartError listing every problem (none: return)."""
    where = _relative(manifest.path, manifest.root)
    cache_dir.mkdir(parents=True, exist_ok=True)
    environments = list(environments)
    clouds = {c for e in environments for c in manifest.environment(e).clouds}
    waves = manifest.waves(list(components) if components else None, clouds)
    names = sorted(name for wave in waves for name in wave)
    problems: list[str] = []
    # Kustomize components have no chart: their check is that they render (and the rendered
    # objects pass the policy) in each environment.
    kustomized = [name for name in names if manifest.components[name].kustomize]
    names = [name for name in names if name not in kustomized]
    for name, environment in ((n, e) for n in kustomized for e in environments):
        try:
            kustomize.render(
                manifest.components[name], environment, mirror, cache_dir, manifest.root
            )
        except kustomize.KustomizeError as error:
            problems += error.problems
    archives: dict[str, Path] = {}
    for name in names:
        try:
            archives[name] = chart_archive(
                manifest.components[name], mirror, cache_dir, where, manifest.root
            )
        except ChartError as error:
            problems += error.problems
    if problems:
        raise ChartError(problems)
    charts = {name: load_chart(archive, cache_dir) for name, archive in archives.items()}
    with ThreadPoolExecutor(max_workers=workers) as render_pool, ThreadPoolExecutor() as env_pool:
        for found in env_pool.map(
            lambda environment: _environment_problems(
                manifest, environment, names, archives, charts, render_pool
            ),
            environments,
        ):
            problems += found
    if problems:
        raise ChartError(sorted(set(problems)))


def _environment_problems(
    manifest: Manifest,
    environment: str,
    names: list[str],
    archives: dict[str, Path],
    charts: dict[str, Chart],
    render_pool: ThreadPoolExecutor,
) -> list[str]:
    """One environment, wave by wave: a wave renders with the API versions of the CRDs its
    dependencies installed, as the cluster would serve them then."""
    spec = manifest.environment(environment)
    kube_version = spec.k3s_version.split("+")[0]
    crds: dict[str, set[tuple[str, str]]] = {}
    problems: list[str] = []
    for wave in manifest.waves(names, spec.clouds):
        futures = {}
        for name in wave:
            needs = manifest.closure([name]) - {name}
            before = set().union(*(crds.get(dep, set()) for dep in needs))
            api_versions = {form for api, kind in before for form in (api, f"{api}/{kind}")}
            component = manifest.components[name]
            files = component.values_files(environment, manifest.root)
            futures[name] = (
                render_pool.submit(
                    render, component, archives[name], files, kube_version, api_versions
                ),
                before,
            )
        for name, (future, before) in futures.items():
            component, rendered = manifest.components[name], future.result()
            where = " + ".join(
                _relative(f, manifest.root)
                for f in component.values_files(environment, manifest.root)
            )
            crds[name] = rendered.crds()
            available = crds[name] | before
            problems += values_problems(manifest, component, environment, charts[name])
            problems += [f"{where}: {p}" for p in rendered.problems]
            problems += [
                f"{where}: {p}" for p in object_problems(rendered.objects, available, kube_version)
            ]
    return problems


def check_before_apply(
    settings: Settings, manifest: Manifest, environment: str, components: list[str] | None = None
) -> None:
    """The values check of one environment as provisioning runs it, before anything is applied:
    charts from the mirror (ADP_HELM_CHART_MIRROR) or the upstream repositories, extracted
    under the environment's provisioning directory."""
    check_charts(
        manifest,
        [environment],
        settings.helm_chart_mirror,
        settings.provisioning_dir / environment / "charts",
        components=components,
    )
