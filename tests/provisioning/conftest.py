"""Fixtures of the provisioning tests: a real sshd on loopback with generated keys, and the
repository's manifest copied into a scratch tree that a test may break on purpose."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adplatform.settings import REPO_ROOT
from tests.conftest import free_port


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshTarget]:
    """OpenSSH's sshd on a free loopback port, accepting only a key generated for this session."""
    home = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)], check=True
        )
    (home / "authorized_keys").write_text((home / "client_key.pub").read_text())
    (home / "authorized_keys").chmod(0o600)
    port = free_port()
    (home / "sshd_config").write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {home / "host_key"}
PidFile {home / "sshd.pid"}
AuthorizedKeysFile {home / "authorized_keys"}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
"""
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    process = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(home / "sshd_config")],
        stderr=(home / "sshd.log").open("wb"),
    )
    deadline = time.monotonic() + 20
    while subprocess.run(
        ["ssh-keyscan", "-p", str(port), "127.0.0.1"], capture_output=True
    ).returncode:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not start: {(home / 'sshd.log').read_text()}")
        time.sleep(0.2)
    yield SshTarget("127.0.0.1", port, "root", home / "client_key", home / "known_hosts")
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def scratch_repo(tmp_path: Path) -> Path:
    """infra/platform.yaml and helm_values/ copied, for tests that break them."""
    (tmp_path / "infra").mkdir()
    shutil.copy(REPO_ROOT / "infra" / "platform.yaml", tmp_path / "infra" / "platform.yaml")
    shutil.copytree(REPO_ROOT / "helm_values", tmp_path / "helm_values")
    return tmp_path
