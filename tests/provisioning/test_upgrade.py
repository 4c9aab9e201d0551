"""The upgrade pre-flight in-process: the manifest's upgrade policy, and the version check against
a real chart repository with the real helm."""

from __future__ import annotations

import pytest

from adplatform.provisioning.manifest import ManifestError, load_manifest
from adplatform.provisioning.releases import check_in_mirror
from adplatform.provisioning.upgrade import check_upgrade_path, check_version_exists
from tests.provisioning.conftest import ChartMirror, ChartRepository

CLICKHOUSE = load_manifest(with_values=False).component("clickhouse")
PINNED = CLICKHOUSE.model_copy(update={"version": "0.3.6", "upgrade": "minor"})


@pytest.mark.parametrize("target", ["0.3.7", "0.4.0", "v0.9.1"])
def test_the_policy_allows_steps_within_the_major_version(target):
    assert check_upgrade_path(PINNED, target).startswith(f"0.3.6 -> {target}")


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("0.3.6", "is not newer than the pinned 0.3.6"),
        ("0.3.5", "is not newer than the pinned 0.3.6"),
        ("1.0.0", "bigger step than its upgrade policy (minor) allows"),
        ("0.3", "is not a version such as 1.2.3"),
    ],
)
def test_the_policy_refuses_downgrades_reinstalls_and_big_steps(target, problem):
    with pytest.raises(ManifestError, match=r"params\.target_version") as refused:
        check_upgrade_path(PINNED, target)
    assert problem in str(refused.value)


@pytest.mark.integration
def test_the_version_must_be_served_by_the_chart_repository(
    chart_repository: ChartRepository, stack_settings
):
    """Without a chart mirror: the component's own repository (here a stand-in on loopback)."""
    stack_settings = stack_settings.model_copy(update={"helm_chart_mirror": ""})
    found = check_version_exists(stack_settings, "local", CLICKHOUSE, chart_repository.newer)
    assert (
        found
        == f"{chart_repository.url} serves clickhouse {chart_repository.newer} (index refreshed)"
    )
    with pytest.raises(ManifestError) as refused:
        check_version_exists(stack_settings, "local", CLICKHOUSE, "0.3.99")
    assert f"clickhouse 0.3.99 is not in {chart_repository.url}" in str(refused.value)


@pytest.mark.integration
def test_the_version_must_be_in_the_chart_mirror_directory(
    chart_mirror: ChartMirror, stack_settings
):
    found = check_version_exists(stack_settings, "local", CLICKHOUSE, chart_mirror.clickhouse_next)
    assert found == f"{chart_mirror.path} has clickhouse-{chart_mirror.clickhouse_next}.tgz"
    with pytest.raises(ManifestError) as refused:
        check_version_exists(stack_settings, "local", CLICKHOUSE, "0.3.99")
    assert str(refused.value).startswith(
        f"clickhouse: chart clickhouse 0.3.99 is not in the chart mirror {chart_mirror.path}"
    )
    assert "add clickhouse-0.3.99.tgz there" in str(refused.value)


@pytest.mark.integration
def test_the_version_must_be_served_by_a_chart_mirror_url(
    upstream_chart_repository, stack_settings
):
    settings = stack_settings.model_copy(update={"helm_chart_mirror": upstream_chart_repository})
    cert_manager = load_manifest(with_values=False).component("cert-manager")
    assert check_in_mirror(settings, cert_manager, "v1.19.1") == (
        f"{upstream_chart_repository} serves cert-manager v1.19.1"
    )
    with pytest.raises(ManifestError, match=r"cert-manager v1\.19\.99 is not in the chart mirror"):
        check_in_mirror(settings, cert_manager, "v1.19.99")
