"""Command lines of the provisioning tools, rendered from the manifest: what runs, and what a
dry run shows. Pure functions (golden-file tested); paths are relative to the repository root,
where every command runs."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adplatform.provisioning.manifest import Component
from adplatform.settings import REPO_ROOT

TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
TOFU_CLI_CONFIG = REPO_ROOT / ".tools" / "tofu.rc"
TERRAFORM_DIR = Path("infra/terraform")
ANSIBLE_DIR = Path("infra/ansible")


class ToolError(RuntimeError):
    """A provisioning tool is missing or failed; the message names the command and its output."""


def tool(name: str) -> str:
    """Absolute path of a tool that `make tools` builds into .tools/bin (or the venv's)."""
    for candidate in (TOOLS_BIN / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    raise ToolError(f"{name} not found in {TOOLS_BIN}: run `make tools` to build it")


@dataclass(frozen=True)
class Command:
    """One tool invocation: argv[0] is the tool's name, resolved to .tools/bin when run."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return shlex.join(self.argv)

    def run(
        self, *, ok_codes: tuple[int, ...] = (0,), timeout: float = 3600
    ) -> subprocess.CompletedProcess[str]:
        """Run in the repository root; raise ToolError naming the command on another exit code."""
        import os

        argv = [tool(self.argv[0]), *self.argv[1:]]
        result = subprocess.run(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode not in ok_codes:
            raise ToolError(
                f"`{self}` exited with {result.returncode}:\n{result.stderr[-4000:] or result.stdout[-4000:]}"
            )
        return result


# --- Helm -------------------------------------------------------------------------------------


# The description every revision Airflow makes carries: drift checks flag the others.
RELEASE_DESCRIPTION = "applied by adplatform"


def chart_reference(component: Component, version: str) -> tuple[str, ...]:
    """The chart argument(s) of a Helm command: the component's repository, or the chart mirror
    (ADP_HELM_CHART_MIRROR) when one is set; a chart of this repository is its folder."""
    from adplatform.settings import get_settings

    if component.in_repository:
        return (str(component.in_repository),)
    mirror = get_settings().helm_chart_mirror
    if mirror and "://" not in mirror:
        return (f"{mirror.rstrip('/')}/{component.chart}-{version}.tgz",)
    if mirror:
        return (component.chart, "--repo", mirror)
    if component.repository.startswith("oci://"):
        return (f"{component.repository.rstrip('/')}/{component.chart}",)
    return (component.chart, "--repo", component.repository)


def helm_upgrade(
    component: Component,
    environment: str,
    *,
    version: str | None = None,
    wait_seconds: int | None = None,
    dry_run: bool = False,
    extra_values: Sequence[Path] = (),
) -> Command:
    """Install or upgrade a release: idempotent, waits for readiness, keeps 10 revisions.
    ``extra_values`` follow the values files (releases.host_values_file)."""
    values = [
        *(v.format(environment=environment) for v in component.values),
        *map(str, extra_values),
    ]
    version = version or component.version
    return Command(
        (
            "helm",
            "upgrade",
            "--install",
            component.release,
            *chart_reference(component, version),
            "--version",
            version,
            "--namespace",
            component.namespace,
            "--create-namespace",
            *(arg for path in values for arg in ("--values", path)),
            "--wait",
            "--timeout",
            f"{wait_seconds or component.health.timeout_seconds}s",
            "--history-max",
            "10",
            "--description",
            RELEASE_DESCRIPTION,
            *(("--dry-run=server",) if dry_run else ()),
        )
    )


def helm_template(
    component: Component, environment: str, version: str, extra_values: Sequence[Path] = ()
) -> Command:
    """The manifests a version of the chart renders with the environment's values (what an
    upgrade will apply; diffed against the current version's for the approval)."""
    values = [
        *(v.format(environment=environment) for v in component.values),
        *map(str, extra_values),
    ]
    return Command(
        (
            "helm",
            "template",
            component.release,
            *chart_reference(component, version),
            "--version",
            version,
            "--namespace",
            component.namespace,
            *(arg for path in values for arg in ("--values", path)),
        )
    )


def helm_rollback(
    component: Component, revision: int | str, *, wait_seconds: int | None = None
) -> Command:
    return Command(
        (
            "helm",
            "rollback",
            component.release,
            str(revision),
            "--namespace",
            component.namespace,
            "--wait",
            "--timeout",
            f"{wait_seconds or component.health.timeout_seconds}s",
        )
    )


def helm_history(component: Component) -> Command:
    return Command(
        ("helm", "history", component.release, "--namespace", component.namespace, "-o", "json")
    )


def helm_get_values(component: Component) -> Command:
    return Command(
        (
            "helm",
            "get",
            "values",
            component.release,
            "--namespace",
            component.namespace,
            "-o",
            "json",
        )
    )


def helm_get_manifest(component: Component) -> Command:
    return Command(
        ("helm", "get", "manifest", component.release, "--namespace", component.namespace)
    )


def helm_show_chart(component: Component, version: str) -> Command:
    return Command(
        ("helm", "show", "chart", *chart_reference(component, version), "--version", version)
    )


# --- Terraform / OpenTofu -------------------------------------------------------------------------


def terraform_root(cloud: str) -> Path:
    return TERRAFORM_DIR / cloud


def terraform_var_file(environment: str, cloud: str) -> str:
    return f"../environments/{environment}/{cloud}.tfvars"


def terraform_init(cloud: str, state_file: Path) -> Command:
    return Command(
        (
            "tofu",
            f"-chdir={terraform_root(cloud)}",
            "init",
            "-input=false",
            "-reconfigure",
            f"-backend-config=path={state_file}",
        )
    )


def terraform_plan(
    environment: str,
    cloud: str,
    plan_file: Path,
    variables: dict[str, str],
    *,
    detailed_exitcode: bool = False,
) -> Command:
    return Command(
        (
            "tofu",
            f"-chdir={terraform_root(cloud)}",
            "plan",
            "-input=false",
            "-lock-timeout=5m",
            f"-var-file={terraform_var_file(environment, cloud)}",
            *(f"-var={name}={value}" for name, value in sorted(variables.items())),
            f"-out={plan_file}",
            *(("-detailed-exitcode",) if detailed_exitcode else ()),
        )
    )


def terraform_show(cloud: str, plan_file: Path, *, as_json: bool = True) -> Command:
    """The saved plan: as JSON (for the summary), or as a person reads it (every attribute that
    changes, old -> new)."""
    form = ("-json",) if as_json else ("-no-color",)
    return Command(("tofu", f"-chdir={terraform_root(cloud)}", "show", *form, str(plan_file)))


def terraform_apply(cloud: str, plan_file: Path) -> Command:
    return Command(
        ("tofu", f"-chdir={terraform_root(cloud)}", "apply", "-input=false", str(plan_file))
    )


def terraform_output(cloud: str) -> Command:
    return Command(("tofu", f"-chdir={terraform_root(cloud)}", "output", "-json", "nodes"))


# --- Ansible ----------------------------------------------------------------------------------


def ansible_playbook(
    playbook: str, inventory: Path, extra_vars_file: Path | None, *, check: bool
) -> Command:
    return Command(
        (
            "ansible-playbook",
            "-i",
            str(inventory),
            str(ANSIBLE_DIR / playbook),
            *(("--extra-vars", f"@{extra_vars_file}") if extra_vars_file else ()),
            *(("--check", "--diff") if check else ()),
        )
    )
