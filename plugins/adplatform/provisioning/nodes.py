"""Nodes over SSH: wait until they answer, prepare them and install K3s with Ansible, and fetch
the cluster's kubeconfig into the file the ``kubernetes_<environment>`` connection reads."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from adplatform.provisioning import commands
from adplatform.provisioning.commands import Command, ToolError
from adplatform.provisioning.infrastructure import Node
from adplatform.settings import Settings

# The default callback's recap ("host : ok=5 changed=0 unreachable=0 failed=0 ...") and the
# role's "not applicable here" reports: a YAML scalar, which a long one continues on lines
# indented below its key.
_RECAP = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.MULTILINE)
_COUNTER = re.compile(r"(\w+)=(\d+)")
_REPORTED = re.compile(r"^( *)msg: (['\"]?not applicable here:.*(?:\n\1 +\S.*)*)", re.MULTILINE)


@dataclass(frozen=True)
class Access:
    """How the provisioning key reaches the nodes of one environment (each as its ``user``)."""

    key_file: Path
    known_hosts: Path


class HostKeyChanged(ToolError):
    """A node answers with another host key than the one pinned at first contact."""


def pinned_host_key(node: Node, access: Access, timeout: int = 10) -> Any:
    """The node's SSH host key as pinned in the environment's known_hosts: learnt at first
    contact (a server Terraform just created has a key nobody has seen yet) and verified at every
    later one. Ansible's ssh reads the same file."""
    import paramiko

    entry = node.host if node.port == 22 else f"[{node.host}]:{node.port}"
    known = paramiko.HostKeys()
    if access.known_hosts.exists():
        known.load(str(access.known_hosts))
    if entry in known:
        return next(iter(known[entry].values()))
    with paramiko.Transport((node.host, node.port)) as transport:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    known.add(entry, key.get_name(), key)
    access.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    known.save(str(access.known_hosts))
    return key


def ssh_hook(node: Node, access: Access, timeout: int = 10) -> Any:
    """An SSHHook that accepts only the node's pinned host key."""
    from airflow.providers.ssh.hooks.ssh import SSHHook

    hook = SSHHook(
        remote_host=node.host,
        port=node.port,
        username=node.user,
        key_file=str(access.key_file),
        conn_timeout=timeout,
        cmd_timeout=60,
        no_host_key_check=False,
    )
    hook.host_key = pinned_host_key(node, access, timeout)  # the hook takes it from a connection
    return hook


def _connect(node: Node, access: Access) -> Any:
    """An SSH client of the node; a host key other than the pinned one is refused for good."""
    import paramiko

    try:
        return ssh_hook(node, access).get_conn()
    except paramiko.BadHostKeyException:
        raise HostKeyChanged(
            f"{node.name} ({node.host}:{node.port}) answers with a host key other than the one "
            f"pinned in {access.known_hosts}: if the server was rebuilt, delete its line there "
            "and re-run; otherwise someone else answers at that address"
        ) from None


def wait_for_ssh(nodes: Iterable[Node], access: Access, timeout: float = 600) -> dict[str, str]:
    """Block until every node runs a command over SSH; return each node's kernel release."""
    kernels: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    for node in nodes:
        while True:
            try:
                with _connect(node, access) as client:
                    _, stdout, _ = client.exec_command("uname -r", timeout=30)
                    kernels[node.name] = stdout.read().decode().strip()
                break
            except HostKeyChanged:
                raise
            except Exception as error:  # the server is still booting; paramiko raises many kinds
                if time.monotonic() > deadline:
                    raise ToolError(
                        f"{node.name} ({node.host}:{node.port}) did not answer over SSH within "
                        f"{timeout:.0f}s: {error}"
                    ) from None
                time.sleep(5)
    return kernels


def write_inventory(nodes: list[Node], access: Access, path: Path) -> Path:
    """An Ansible inventory: every node in k3s_servers or k3s_agents, reached as ``access``."""
    ssh_args = (
        f"-o UserKnownHostsFile={access.known_hosts} -o StrictHostKeyChecking=accept-new "
        "-o IdentitiesOnly=yes"
    )
    groups: dict[str, dict[str, Any]] = {"k3s_servers": {}, "k3s_agents": {}}
    for node in nodes:
        groups[f"k3s_{node.role}s"][node.name] = {
            "ansible_host": node.host,
            "ansible_port": node.port,
            "private_ip": node.private_ip or node.host,
            "ansible_user": node.user,
        }
    inventory = {
        "all": {
            "vars": {
                "ansible_ssh_private_key_file": str(access.key_file),
                "ansible_ssh_common_args": ssh_args,
                # The nodes run Debian: its own Python, never a user's pyenv shim.
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "children": {group: {"hosts": hosts} for group, hosts in groups.items()},
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


@dataclass(frozen=True)
class PlaybookRun:
    playbook: str
    check: bool
    command: str
    changed: dict[str, int]
    failed: dict[str, int]
    messages: list[str]

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())


def run_playbook(
    playbook: str,
    inventory: Path,
    *,
    check: bool,
    extra_vars: dict[str, Any] | None = None,
) -> PlaybookRun:
    """Run a playbook with the JSON callback; raise ToolError naming failed hosts and tasks."""
    with tempfile.TemporaryDirectory(prefix="adplatform-ansible-") as scratch:
        vars_file = None
        if extra_vars:  # secrets (the K3s token) go through a 0600 file, never the command line
            vars_file = Path(scratch) / "vars.json"
            vars_file.touch(mode=0o600)
            vars_file.write_text(json.dumps(extra_vars))
        command = commands.ansible_playbook(playbook, inventory, vars_file, check=check)
        env = {
            "ANSIBLE_CONFIG": str(commands.REPO_ROOT / commands.ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(Path(scratch) / "tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{Path(commands.tool('ansible-playbook')).parent}{os.pathsep}{os.environ['PATH']}",
        }
        result = Command(command.argv, env=env).run(ok_codes=(0, 1, 2, 4))
    recap = {
        host: {key: int(value) for key, value in _COUNTER.findall(counters)}
        for host, counters in _RECAP.findall(result.stdout)
    }
    messages = [
        " ".join(yaml.safe_load(f"msg: {scalar}")["msg"].split())
        for _, scalar in _REPORTED.findall(result.stdout)
    ]
    run = PlaybookRun(
        playbook,
        check,
        str(command),
        {host: counts.get("changed", 0) for host, counts in recap.items()},
        {
            host: counts.get("failed", 0) + counts.get("unreachable", 0)
            for host, counts in recap.items()
        },
        messages,
    )
    if result.returncode != 0 or any(run.failed.values()):
        raise ToolError(f"`{command}` failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    return run


def access_for(settings: Settings, environment: str) -> Access:
    from adplatform.provisioning.infrastructure import provisioning_key

    home = settings.provisioning_dir / environment
    home.mkdir(parents=True, exist_ok=True)
    return Access(provisioning_key(settings, environment), home / "known_hosts")


def fetch_kubeconfig(settings: Settings, environment: str, server: Node, access: Access) -> Path:
    """Copy K3s' admin kubeconfig from the first server, pointed at its public address, into the
    file the ``kubernetes_<environment>`` connection reads (written aside, then renamed; 0600)."""
    with (
        _connect(server, access) as client,
        client.open_sftp() as sftp,
        sftp.open("/etc/rancher/k3s/k3s.yaml") as remote,
    ):
        config = yaml.safe_load(remote.read())
    for cluster in config.get("clusters", []):
        cluster["cluster"]["server"] = f"https://{server.host}:6443"
    target = settings.provisioning_dir / environment / "kubeconfig"
    aside = target.with_suffix(".partial")
    aside.touch(mode=0o600)
    aside.write_text(yaml.safe_dump(config))
    aside.replace(target)
    return target
