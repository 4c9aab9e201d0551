"""OpenTofu modules: formatting, validation and plan-only tests with mocked providers, using the
engine and provider plugins `make tools` builds from the Go module proxy."""

from __future__ import annotations

import os
import subprocess

import pytest

from adplatform.provisioning.commands import TERRAFORM_DIR, TOFU_CLI_CONFIG, tool
from adplatform.settings import REPO_ROOT

pytestmark = pytest.mark.integration

# Modules whose provider `make tools` builds. The AWS provider (hashicorp/aws) is left out: the
# Go module proxy here serves no release of it that OpenTofu can load (infra/README.md has the
# evidence); its module is format-checked only.
BUILT = ["modules/hcloud", "hcloud"]


def tofu(directory: str, *args: str, tmp_path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(TOFU_CLI_CONFIG),
        "TF_DATA_DIR": str(tmp_path / ".terraform"),
        "TF_IN_AUTOMATION": "1",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [tool("tofu"), f"-chdir={REPO_ROOT / TERRAFORM_DIR / directory}", *args, "-no-color"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_every_file_is_formatted(tmp_path):
    result = tofu(".", "fmt", "-check", "-recursive", "-diff", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("directory", BUILT)
def test_the_module_validates(directory, tmp_path):
    init = tofu(directory, "init", "-backend=false", "-input=false", tmp_path=tmp_path)
    assert init.returncode == 0, init.stderr
    result = tofu(directory, "validate", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr


def test_the_hcloud_module_plans_as_its_tests_expect(tmp_path):
    assert tofu("modules/hcloud", "init", "-backend=false", tmp_path=tmp_path).returncode == 0
    result = tofu("modules/hcloud", "test", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed, 0 failed" in result.stdout


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_the_environment_plans_offline(environment, tmp_path):
    """The root with the environment's tfvars: a real provider, a saved plan, no API call (only
    creations are planned, so the placeholder token is never sent)."""
    assert (
        tofu(
            "hcloud", "init", f"-backend-config=path={tmp_path}/state", tmp_path=tmp_path
        ).returncode
        == 0
    )
    os.environ["HCLOUD_TOKEN"] = "0" * 64
    try:
        result = tofu(
            "hcloud",
            "plan",
            f"-var-file=../environments/{environment}/hcloud.tfvars",
            '-var=admin_cidrs=["192.0.2.0/24"]',
            "-var=ssh_public_key=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlanOnly test",
            f"-out={tmp_path}/plan",
            tmp_path=tmp_path,
        )
    finally:
        del os.environ["HCLOUD_TOKEN"]
    assert result.returncode == 0, result.stderr
    assert f"{environment}-server-1" in result.stdout
