"""Rendered command lines against golden files (regenerate on purpose with UPDATE_GOLDEN=1), and
the Kubernetes objects the project renders itself against Kubernetes' JSON schemas, offline."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from adplatform.provisioning import commands, kustomize
from adplatform.provisioning.manifest import load_manifest
from adplatform.provisioning.upgrade import backup_job
from adplatform.settings import get_settings

GOLDEN = Path(__file__).parent / "golden"
ENVIRONMENTS = ["local", "staging", "production"]


def render(environment: str) -> str:
    manifest = load_manifest(with_values=False)
    lines = [f"# {environment}: helm (and kubectl for kustomize components), wave by wave"]
    clouds = manifest.environment(environment).clouds
    for wave, names in enumerate(manifest.waves(clouds=clouds)):
        lines += [f"# wave {wave}"]
        for name in names:
            component = manifest.component(name)
            if component.kustomize:  # kubectl's server-side apply of a recorded revision
                revision = Path(f"/state/{environment}/kustomize/{name}/<revision>")
                wait = component.health.timeout_seconds
                lines += map(str, kustomize.apply_commands(component, revision, wait))
            else:
                lines.append(str(commands.helm_upgrade(component, environment)))
    for cloud in clouds:
        if cloud == "existing":
            continue
        state, plan = (
            Path(f"/state/{environment}/{cloud}.tfstate"),
            Path(f"/state/{environment}/{cloud}.tfplan"),
        )
        variables = {"admin_cidrs": '["192.0.2.0/24"]', "ssh_public_key": "ssh-ed25519 KEY"}
        lines += [
            f"# {environment} on {cloud}: tofu",
            str(commands.terraform_init(cloud, state)),
            str(commands.terraform_plan(environment, cloud, plan, variables)),
            str(commands.terraform_apply(cloud, plan)),
            str(
                commands.terraform_plan(environment, cloud, plan, variables, detailed_exitcode=True)
            ),
        ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_command_lines_match_the_golden_file(environment, monkeypatch):
    monkeypatch.delenv("ADP_HELM_CHART_MIRROR", raising=False)  # the upstream repositories
    get_settings.cache_clear()
    golden = GOLDEN / f"commands-{environment}.txt"
    rendered = render(environment)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(rendered)
    assert golden.exists(), f"{golden} missing: run with UPDATE_GOLDEN=1 and review the diff"
    assert rendered == golden.read_text(), f"{golden} differs: review, then UPDATE_GOLDEN=1"


def test_every_values_file_a_command_names_exists():
    for environment in ENVIRONMENTS:
        for line in render(environment).splitlines():
            args = line.split()
            for flag, value in itertools.pairwise(args):
                if flag == "--values":
                    assert (commands.REPO_ROOT / value).is_file(), value


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_backup_jobs_are_valid_kubernetes_objects(environment):
    import kubernetes_validate

    manifest = load_manifest(with_values=False)
    stateful = [c for c in manifest.components.values() if c.backup]
    assert {c.name for c in stateful} == {"clickhouse", "postgresql", "redpanda"}
    for component in stateful:
        job = backup_job(component, environment, "20261127t050000")
        kubernetes_validate.validate(job, "1.34", strict=True)
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert "{backup_id}" not in " ".join(container["command"])
        assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_schema_check_catches_a_broken_object():
    import kubernetes_validate

    manifest = load_manifest(with_values=False)
    job = backup_job(manifest.component("clickhouse"), "local", "x")
    job["spec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {"memory": "1Gi"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.34", strict=True)
