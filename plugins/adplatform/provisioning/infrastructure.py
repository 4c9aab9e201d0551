"""Servers: a saved Terraform/OpenTofu plan with a readable summary, its apply, drift checks,
and the node inventory the later steps (SSH, Ansible, K3s) work on."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from adplatform.provisioning import commands
from adplatform.provisioning.commands import Command, ToolError
from adplatform.settings import Settings


@dataclass(frozen=True)
class Node:
    name: str
    role: str  # "server" or "agent"
    host: str
    port: int = 22
    private_ip: str = ""
    user: str = "root"  # the login its image grants the provisioning key (Debian's AMIs: admin)


@dataclass(frozen=True)
class PlanSummary:
    environment: str
    cloud: str
    plan_file: str
    create: list[str]
    update: list[str]
    delete: list[str]
    plan_sha256: str = ""  # what the approval records, and apply checks
    shown: str = ""  # `tofu show` of the plan: every attribute that changes, old -> new

    @property
    def changes(self) -> bool:
        return bool(self.create or self.update or self.delete)

    def text(self) -> str:
        if self.cloud == "existing":
            return f"{self.environment}: existing servers, no infrastructure to change."
        if not self.changes:
            return f"{self.environment} on {self.cloud}: no changes; the servers match the code."
        lines = [
            f"{self.environment} on {self.cloud}: {len(self.create)} to create, "
            f"{len(self.update)} to change, {len(self.delete)} to destroy."
        ]
        for verb, addresses in (("+", self.create), ("~", self.update), ("-", self.delete)):
            lines += [f"  {verb} {address}" for address in addresses]
        return "\n".join([*lines, "", self.shown.strip()])


class Workspace:
    """One environment on one cloud: its state and credentials. Each caller plans into a file of
    its own (a provision run's, under its run id; the drift check's, temporary), so an approved
    plan is never overwritten by another plan."""

    def __init__(self, settings: Settings, environment: str, cloud: str) -> None:
        self.settings, self.environment, self.cloud = settings, environment, cloud
        self.home = settings.provisioning_dir / environment
        self.state_file = self.home / f"{cloud}.tfstate"

    def _env(self) -> dict[str, str]:
        env = {
            "TF_CLI_CONFIG_FILE": str(commands.TOFU_CLI_CONFIG),
            "TF_DATA_DIR": str(self.home / f".terraform-{self.cloud}"),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
        }
        return env | cloud_credentials(self.cloud)

    def _run(self, command: Command, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return Command(command.argv, env=self._env()).run(**kwargs)

    def variables(self) -> dict[str, str]:
        cidrs = [c.strip() for c in self.settings.platform_admin_cidrs.split(",") if c.strip()]
        return {
            "admin_cidrs": json.dumps(cidrs),
            "ssh_public_key": provisioning_key(self.settings, self.environment)
            .with_suffix(".pub")
            .read_text()
            .strip(),
        }

    def plan(self, plan_file: Path, *, detailed_exitcode: bool = False) -> tuple[PlanSummary, int]:
        """Init and plan into a saved plan file; returns the summary and plan's exit code."""
        from adplatform.provisioning.approval import file_sha256

        plan_file = plan_file.resolve()
        plan_file.parent.mkdir(parents=True, exist_ok=True)
        self._run(commands.terraform_init(self.cloud, self.state_file.resolve()))
        result = self._run(
            commands.terraform_plan(
                self.environment,
                self.cloud,
                plan_file,
                self.variables(),
                detailed_exitcode=detailed_exitcode,
            ),
            ok_codes=(0, 2) if detailed_exitcode else (0,),
        )
        plan = json.loads(self._run(commands.terraform_show(self.cloud, plan_file)).stdout)
        shown = self._run(commands.terraform_show(self.cloud, plan_file, as_json=False)).stdout
        summary = summarize_plan(plan, self, plan_file)
        return replace(summary, plan_sha256=file_sha256(plan_file), shown=shown), result.returncode

    def apply(self, plan_file: Path) -> list[Node]:
        """Apply a saved plan; the caller has checked it is the approved one."""
        self._run(commands.terraform_apply(self.cloud, plan_file))
        return self.nodes()

    def nodes(self) -> list[Node]:
        raw = json.loads(self._run(commands.terraform_output(self.cloud)).stdout)
        return [
            Node(n["name"], n["role"], n["public_ipv4"], 22, n["private_ipv4"], n["ssh_user"])
            for n in raw
        ]


def summarize_plan(plan: dict[str, Any], workspace: Workspace, plan_file: Path) -> PlanSummary:
    """The resource changes of `tofu show -json`, grouped as a person reads a plan."""
    groups: dict[str, list[str]] = {"create": [], "update": [], "delete": []}
    for change in plan.get("resource_changes", []):
        actions = change["change"]["actions"]
        if actions == ["no-op"] or actions == ["read"]:
            continue
        if "delete" in actions and "create" in actions:  # replace
            groups["delete"].append(change["address"])
            groups["create"].append(change["address"])
        else:
            for action in actions:
                groups[action].append(change["address"])
    return PlanSummary(
        workspace.environment,
        workspace.cloud,
        str(plan_file),
        create=sorted(groups["create"]),
        update=sorted(groups["update"]),
        delete=sorted(groups["delete"]),
    )


def cloud_credentials(cloud: str) -> dict[str, str]:
    """The cloud's credentials as the provider's environment variables, from its connection;
    refused, naming the connection, when one is missing or empty."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    fields = {
        "hcloud": {"HCLOUD_TOKEN": "password"},
        "aws": {"AWS_ACCESS_KEY_ID": "login", "AWS_SECRET_ACCESS_KEY": "password"},
    }.get(cloud, {})
    if not fields:
        return {}
    try:
        conn = BaseHook.get_connection(f"{cloud}_default")
    except AirflowNotFoundException:
        conn = None
    credentials = {variable: getattr(conn, field, None) or "" for variable, field in fields.items()}
    empty = sorted(fields[variable] for variable, value in credentials.items() if not value)
    if empty:
        raise ToolError(
            f"the {cloud}_default connection has no {' and no '.join(empty)}: set the "
            f"{cloud} API credentials there (Airflow's connections or the secrets backend), "
            "then re-run"
        )
    return credentials


# The cloud credentials the cluster itself needs: Hetzner's CSI driver reads its API token from
# this Secret (helm_values/hcloud-csi). It is the one secret needed before Vault can run (Vault's
# volumes come from that driver), so it comes from the cloud's connection, as Terraform's does.
# AWS's EBS driver uses the nodes' instance profile instead (infra/terraform/modules/aws).
CLUSTER_SECRETS = {"hcloud": ("kube-system", "hcloud", {"token": "HCLOUD_TOKEN"})}


def store_cloud_secret(environment: str, cloud: str) -> str:
    """Create or update the cloud's Secret in the environment's cluster; say what was done."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client import V1ObjectMeta, V1Secret
    from kubernetes.client.exceptions import ApiException

    if cloud not in CLUSTER_SECRETS:
        return f"{environment} on {cloud}: the cluster needs no cloud credentials"
    namespace, name, keys = CLUSTER_SECRETS[cloud]
    credentials = cloud_credentials(cloud)
    secret = V1Secret(
        metadata=V1ObjectMeta(
            name=name, namespace=namespace, labels={"app.kubernetes.io/managed-by": "adplatform"}
        ),
        string_data={key: credentials[variable] for key, variable in keys.items()},
    )
    api = KubernetesHook(conn_id=f"kubernetes_{environment}").core_v1_client
    try:
        api.replace_namespaced_secret(name, namespace, secret)
    except ApiException as error:
        if error.status != 404:
            raise
        api.create_namespaced_secret(namespace, secret)
    return f"Secret {namespace}/{name} holds the {cloud}_default connection's credentials"


def provisioning_key(settings: Settings, environment: str) -> Path:
    """The environment's SSH key: ADP_SSH_KEY_FILE if set, else one generated once per
    environment under the data root (its public half is what Terraform installs)."""
    if settings.ssh_key_file:
        return settings.ssh_key_file
    key = settings.provisioning_dir / environment / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"adplatform-{environment}",
                "-f",
                str(key),
            ],
            check=True,
        )
    return key


def existing_nodes(settings: Settings) -> list[Node]:
    """The environment of existing servers: the host the ssh_default connection names."""
    return [
        Node(
            "local-1",
            "server",
            settings.ssh_host,
            settings.ssh_port,
            settings.ssh_host,
            settings.ssh_user,
        )
    ]


def plan_infrastructure(
    settings: Settings, environment: str, cloud: str, plan_file: Path
) -> dict[str, Any]:
    if cloud == "existing":
        return asdict(PlanSummary(environment, cloud, "", [], [], []))
    try:
        summary, _ = Workspace(settings, environment, cloud).plan(plan_file)
    except ToolError as error:
        raise ToolError(f"terraform plan for {environment} on {cloud} failed: {error}") from None
    return asdict(summary)
