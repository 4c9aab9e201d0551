"""The values check against the real upstream charts (ADPLATFORM_TEST_CHARTS, by default
../shared/charts beside the repository): every component in every environment, and
that it refuses an unknown key, a schema violation, a chart version the mirror lacks and a
monitor installed before its CRD, naming file, key and fix."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adplatform.orchestration import CLICKHOUSE_POOL, SPARK_POOL
from adplatform.provisioning import flow
from adplatform.provisioning.charts import (
    ChartError,
    _commented_keys,
    chart_archive,
    check_before_apply,
    check_charts,
    render,
)
from adplatform.provisioning.commands import helm_upgrade
from adplatform.provisioning.manifest import load_manifest
from adplatform.settings import get_settings, load_settings
from tests.provisioning.conftest import UPSTREAM_CHARTS, repackage

ENVIRONMENTS = ["local", "staging", "production"]


@pytest.fixture(scope="session")
def mirror() -> str:
    """The upstream charts as released, never the session's test mirror (which the stack's
    ADP_HELM_CHART_MIRROR names, and which holds versions built for the failure tests)."""
    assert UPSTREAM_CHARTS.is_dir(), (
        f"chart mirror {UPSTREAM_CHARTS} missing: set ADPLATFORM_TEST_CHARTS to its directory"
    )
    return str(UPSTREAM_CHARTS)


@pytest.fixture(scope="session")
def chart_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Charts extracted once per session, shared by every test."""
    return tmp_path_factory.mktemp("chart-cache")


def edit_values(root: Path, file: str, change) -> None:
    path = root / "helm_values" / file
    values = yaml.safe_load(path.read_text()) or {}
    change(values)
    path.write_text(yaml.safe_dump(values))


def check_cilium(root: Path, mirror: str, cache: Path, environment: str = "local") -> list[str]:
    """The check of Cilium (and the CRDs it depends on) in a scratch copy; its problems."""
    manifest = load_manifest(root / "infra" / "platform.yaml", root, with_values=False)
    try:
        check_charts(manifest, [environment], mirror, cache, components=["cilium"])
    except ChartError as error:
        return error.problems
    return []


def test_every_component_and_environment_passes(mirror, chart_cache):
    manifest = load_manifest()
    check_charts(manifest, ENVIRONMENTS, mirror, chart_cache)  # raises, listing every problem


def test_the_scratch_copy_passes_before_it_is_broken(scratch_repo, mirror, chart_cache):
    assert check_cilium(scratch_repo, mirror, chart_cache) == []


def test_an_unknown_key_names_file_key_and_the_nearest_known_key(scratch_repo, mirror, chart_cache):
    def change(values):
        values["operator"]["replicaz"] = 1  # a typo Helm would ignore
        values["podAnnotations"] = {"example.com/anything": "x"}  # free-form: any key

    edit_values(scratch_repo, "cilium/local.yaml", change)
    assert check_cilium(scratch_repo, mirror, chart_cache) == [
        "helm_values/cilium/local.yaml: operator.replicaz: chart cilium 1.18.4 has no such key; "
        "did you mean operator.replicas?"
    ]


def test_a_schema_violation_names_the_key(scratch_repo, mirror, chart_cache):
    edit_values(scratch_repo, "cilium/local.yaml", lambda v: v["operator"].update(replicas="two"))
    problems = check_cilium(scratch_repo, mirror, chart_cache)
    where = "helm_values/cilium/values.yaml + helm_values/cilium/local.yaml"
    assert (
        f"{where}: operator.replicas: 'two' is not of type 'integer' (schema of chart cilium 1.18.4)"
        in problems
    )
    assert any(p.startswith(f"{where}: helm template fails:") for p in problems)


def test_a_chart_version_the_mirror_lacks_is_refused_before_anything_is_applied(
    scratch_repo, mirror, tmp_path
):
    path = scratch_repo / "infra" / "platform.yaml"
    path.write_text(path.read_text().replace("version: 1.18.4", "version: 1.18.99"))
    manifest = load_manifest(path, scratch_repo, with_values=False)
    settings = load_settings(data_root=tmp_path, helm_chart_mirror=mirror)
    with pytest.raises(ChartError) as error:
        check_before_apply(settings, manifest, "local", ["cilium"])
    assert error.value.problems == [
        f"infra/platform.yaml: components.cilium.version: chart cilium 1.18.99 is not in the "
        f"chart mirror {mirror}; re-pin to one it has (1.18.4)"
    ]


def test_a_monitor_before_its_crd_is_refused_even_when_the_chart_is_told_to_trust_it(
    scratch_repo, mirror, chart_cache
):
    manifest = scratch_repo / "infra" / "platform.yaml"
    manifest.write_text(
        manifest.read_text().replace("    depends_on: [prometheus-operator-crds]\n", "")
    )
    edit_values(
        scratch_repo,
        "cilium/staging.yaml",
        lambda v: v.update(prometheus={"serviceMonitor": {"trustCRDsExist": True}}),
    )
    problems = check_cilium(scratch_repo, mirror, chart_cache, "staging")
    assert problems
    assert all(
        "no component it depends on installs the CRD of ServiceMonitor (monitoring.coreos.com/v1)"
        in p
        for p in problems
    ), problems


@pytest.fixture
def chart_mirror_setting(monkeypatch):
    """Sets ADP_HELM_CHART_MIRROR for one test (the process-wide settings are read again)."""

    def use(value: str) -> None:
        monkeypatch.setenv("ADP_HELM_CHART_MIRROR", value)
        get_settings.cache_clear()

    yield use
    monkeypatch.undo()
    get_settings.cache_clear()


def test_with_a_mirror_helm_installs_from_it(chart_mirror_setting, mirror):
    component = load_manifest(with_values=False).component("cilium")
    chart_mirror_setting(mirror)
    argv = helm_upgrade(component, "local").argv
    assert argv[3:6] == ("cilium", f"{mirror}/cilium-1.18.4.tgz", "--version")
    chart_mirror_setting("http://127.0.0.1:8879/charts")
    argv = helm_upgrade(component, "local").argv
    assert argv[3:7] == ("cilium", "cilium", "--repo", "http://127.0.0.1:8879/charts")


def test_keys_a_chart_documents_commented_out_are_known():
    text = "global:\n  psql:\n    # host: db.example\n    # password:\n    #   secret: s\n  x: 1\n"
    assert _commented_keys(text) == {
        ("global", "psql", "host"),
        ("global", "psql", "password"),
        ("global", "psql", "password", "secret"),
    }


@pytest.fixture
def strict_cilium_mirror(tmp_path) -> Path:
    """The upstream charts, but Cilium 1.18.4 and an upgrade to 1.18.5 whose schema wants at
    least two operator replicas (the local overlay sets one)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for archive in UPSTREAM_CHARTS.glob("*.tgz"):
        if archive.name != "cilium-1.18.4.tgz":
            (mirror / archive.name).symlink_to(archive)

    def two_operators_at_least(chart: Path) -> None:
        path = chart / "values.schema.json"
        schema = json.loads(path.read_text())
        schema["properties"]["operator"]["properties"]["replicas"]["minimum"] = 2
        path.write_text(json.dumps(schema))

    for version in ("1.18.4", "1.18.5"):
        repackage(UPSTREAM_CHARTS / "cilium-1.18.4.tgz", version, mirror, two_operators_at_least)
    return mirror


REJECTED = (
    "helm_values/cilium/values.yaml + helm_values/cilium/local.yaml: operator.replicas: "
    "1 is less than the minimum of 2 (schema of chart cilium {version})"
)


def test_provisioning_refuses_values_the_chart_rejects_before_anything_is_applied(
    strict_cilium_mirror, chart_mirror_setting, monkeypatch, tmp_path
):
    """Refused in validation (a real run: before it even asks for the cluster, which does not
    exist), naming the files, the key and the rule."""
    monkeypatch.setenv("ADP_DATA_ROOT", str(tmp_path / "data"))
    chart_mirror_setting(str(strict_cilium_mirror))
    with pytest.raises(ChartError) as refused:
        flow.validate_request("local", "existing", ["cilium"], dry_run=False)
    assert REJECTED.format(version="1.18.4") in refused.value.problems


def test_an_upgrade_is_refused_when_the_target_chart_rejects_the_values(
    strict_cilium_mirror, tmp_path
):
    from adplatform.provisioning.upgrade import preflight

    settings = load_settings(
        data_root=tmp_path / "data", helm_chart_mirror=str(strict_cilium_mirror)
    )
    with pytest.raises(ChartError) as refused:
        preflight(settings, load_manifest(), "local", "cilium", "1.18.5")
    assert REJECTED.format(version="1.18.5") in refused.value.problems


def rendered_pools(environment: str, mirror: str, cache: Path) -> tuple[dict[str, str], str]:
    """The Airflow chart's migration Job as rendered for the environment: its variables and
    the script it runs."""
    manifest = load_manifest(with_values=False)
    airflow = manifest.component("airflow")
    archive = chart_archive(airflow, mirror, cache, "infra/platform.yaml")
    kube_version = manifest.environment(environment).k3s_version.split("+")[0]
    rendered = render(airflow, archive, airflow.values_files(environment), kube_version, ())
    assert not rendered.problems, rendered.problems
    [job] = [
        o
        for o in rendered.objects
        if o["kind"] == "Job" and o["metadata"]["name"].endswith("-run-airflow-migrations")
    ]
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["bash", "-c"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}, container["args"][2]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_airflow_chart_creates_the_pools_the_lakehouse_dags_use(
    environment, mirror, chart_cache
):
    variables, script = rendered_pools(environment, mirror, chart_cache)
    pools = dict(re.findall(r'airflow pools set (\S+) "\$(\w+)"', script))
    assert set(pools) == {SPARK_POOL, CLICKHOUSE_POOL}, script
    assert all(int(variables[variable]) >= 1 for variable in pools.values()), variables


@pytest.mark.slow  # three Airflow commands, one a database migration
def test_the_migration_jobs_script_creates_the_pools_in_a_real_airflow(
    mirror, chart_cache, tmp_path
):
    """The rendered script, run as the Job runs it (its variables, bash -c), against an Airflow
    metadata database of its own."""
    variables, script = rendered_pools("local", mirror, chart_cache)
    airflow_env = {
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env = {**os.environ, **airflow_env, **variables}
    subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True)
    listed = subprocess.run(
        ["airflow", "pools", "list", "-o", "json"], env=env, check=True, capture_output=True
    )
    slots = {pool["pool"]: pool["slots"] for pool in json.loads(listed.stdout)}
    assert int(slots[SPARK_POOL]) == int(variables["SPARK_POOL_SLOTS"])
    assert int(slots[CLICKHOUSE_POOL]) == int(variables["CLICKHOUSE_POOL_SLOTS"])
