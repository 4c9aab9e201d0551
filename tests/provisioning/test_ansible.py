"""Ansible over SSH against a real sshd on loopback: syntax, a real node-preparation run that a
second run leaves unchanged, and the SSHHook/SSHOperator path the DAGs use."""

from __future__ import annotations

import base64
import subprocess

import pytest
import yaml

from adplatform.provisioning import commands
from adplatform.provisioning.infrastructure import Node
from adplatform.provisioning.nodes import (
    Access,
    HostKeyChanged,
    run_playbook,
    wait_for_ssh,
    write_inventory,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def target(sshd, tmp_path_factory):
    access = Access(sshd.key_file, sshd.known_hosts)
    node = Node("node-1", "server", sshd.host, sshd.port, user=sshd.user)
    inventory = write_inventory(
        [node], access, tmp_path_factory.mktemp("ansible") / "inventory.yaml"
    )
    return node, access, inventory


@pytest.mark.parametrize("playbook", ["node_prepare.yml", "k3s.yml"])
def test_playbooks_pass_the_syntax_check(target, playbook):
    _, _, inventory = target
    command = commands.ansible_playbook(playbook, inventory, None, check=False)
    commands.Command((*command.argv, "--syntax-check")).run()


def test_the_sshhook_reaches_the_node(target):
    node, access, _ = target
    assert wait_for_ssh([node], access, timeout=30)["node-1"]


def test_the_host_key_is_pinned_at_first_contact_and_verified_after(sshd, tmp_path):
    access = Access(sshd.key_file, tmp_path / "known_hosts")
    node = Node("node-1", "server", sshd.host, sshd.port, user=sshd.user)
    wait_for_ssh([node], access, timeout=30)
    _, served_key = (sshd.key_file.parent / "host_key.pub").read_text().split()[:2]
    [pinned] = access.known_hosts.read_text().splitlines()
    assert pinned.split() == [f"[{sshd.host}]:{sshd.port}", "ssh-ed25519", served_key]
    wait_for_ssh([node], access, timeout=30)  # verified against the pin
    # The pinned key is another one (the server was rebuilt, or someone else answers there).
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "other"], check=True
    )
    other = (tmp_path / "other.pub").read_text().split()[1]
    access.known_hosts.write_text(pinned.replace(served_key, other) + "\n")
    with pytest.raises(HostKeyChanged, match=r"node-1 .* pinned in .*known_hosts: if the server"):
        wait_for_ssh([node], access, timeout=600)  # refused at once, never retried


def test_the_sshoperator_runs_a_command_on_the_node(target):
    from airflow.providers.ssh.operators.ssh import SSHOperator

    from adplatform.provisioning.nodes import ssh_hook

    node, access, _ = target
    probe = SSHOperator(task_id="probe", ssh_hook=ssh_hook(node, access), command="id -un")
    output = probe.execute(context={})  # base64, as it is pushed to XCom
    assert base64.b64decode(output).decode().strip() == "root"


def test_node_preparation_is_applied_then_idempotent(target):
    _node, _access, inventory = target
    first = run_playbook("node_prepare.yml", inventory, check=False)
    second = run_playbook("node_prepare.yml", inventory, check=False)
    assert first.failed == {"node-1": 0}
    assert second.changed == {"node-1": 0}, second.messages
    # This machine has no cpufreq: the play says so instead of failing.
    assert any("CPU governor" in message for message in second.messages)


def test_the_inventory_logs_each_node_in_as_its_image_expects(tmp_path):
    nodes = [
        Node("hetzner-1", "server", "192.0.2.10", private_ip="10.10.1.10", user="root"),
        Node("aws-1", "agent", "192.0.2.20", private_ip="10.20.1.100", user="admin"),
    ]
    access = Access(tmp_path / "id_ed25519", tmp_path / "known_hosts")
    inventory = yaml.safe_load(
        write_inventory(nodes, access, tmp_path / "inventory.yaml").read_text()
    )
    groups = inventory["all"]["children"]
    assert groups["k3s_servers"]["hosts"]["hetzner-1"]["ansible_user"] == "root"
    assert groups["k3s_agents"]["hosts"]["aws-1"]["ansible_user"] == "admin"
    assert "ansible_user" not in inventory["all"]["vars"]  # no shared login to override a node's
