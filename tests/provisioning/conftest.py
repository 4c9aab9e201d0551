"""Fixtures of the provisioning tests: a real sshd on loopback with generated keys, the local
Kubernetes cluster (real control plane, kwok nodes) started once per session, the chart mirror
of the real upstream charts (plus a few versions built from them for the upgrade tests), the
Airflow clients, and the repository's manifest copied into a scratch tree that a test may break
on purpose."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from airflow_client.client import ConnectionBody, DAGPatchBody
from airflow_client.client.exceptions import ConflictException

from adplatform.airflow_client import AirflowClient
from adplatform.localstack import LocalStack
from adplatform.provisioning.charts import chart_archive, render
from adplatform.provisioning.cluster import CRASH_LOOP_LABEL, FAIL_LABEL, LocalCluster
from adplatform.provisioning.commands import Command
from adplatform.provisioning.manifest import load_manifest
from adplatform.provisioning.releases import helm_env
from adplatform.provisioning.upgrade import parse_version, repository_name
from adplatform.settings import REPO_ROOT, Settings, get_settings
from tests.conftest import free_port

# The air-gapped copy of the real upstream charts (see its README), beside the repository.
UPSTREAM_CHARTS = Path(
    os.environ.get("ADPLATFORM_TEST_CHARTS", REPO_ROOT.parent / "shared" / "charts")
)
PROVISION, UPGRADE, DRIFT = "platform_provision", "platform_upgrade", "platform_drift_check"


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    changes: Path  # the overlay's upper directory: every file the node's root wrote


# The node: its own mount, UTS, IPC, PID and network namespaces, its root an overlay over this
# machine's whose writes land in $UPPER. /proc/sys is read-only but for net/, which belongs to the
# node's network namespace; the kernel-wide settings (vm.*, fs.*) and sysfs cannot be isolated by
# a namespace, so the node sees them read-only, as in a container.
NODE_SETUP = """set -eu
mount -t overlay overlay -o "lowerdir=/,upperdir=$UPPER,workdir=$WORK" "$ROOT"
mount --rbind /dev "$ROOT/dev"
mount -t proc proc "$ROOT/proc"
mount --bind "$ROOT/proc/sys" "$ROOT/proc/sys"
mount -o remount,bind,ro "$ROOT/proc/sys"
mount --bind "$ROOT/proc/sys/net" "$ROOT/proc/sys/net"
mount -o remount,bind,rw "$ROOT/proc/sys/net"
mount -t sysfs -o ro sysfs "$ROOT/sys"
mount --bind "$HOME_DIR" "$ROOT$HOME_DIR"
mkdir -p "$ROOT/run/sshd"  # sshd's privilege-separation directory
hostname node-1
ip link set lo up
exec chroot "$ROOT" /usr/bin/python3 -c "$INETD" "$LISTENER" "$HOME_DIR/sshd_config"
"""
# inetd inside the node: one `sshd -i` per connection accepted on the listening socket (its file
# descriptor in argv[1]), opened on this machine's loopback before the node got its own network.
INETD = """import signal, socket, subprocess, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
listener = socket.socket(fileno=int(sys.argv[1]))
while True:
    connection, _ = listener.accept()
    subprocess.Popen(["/usr/sbin/sshd", "-i", "-e", "-f", sys.argv[2]], stdin=connection,
                     stdout=connection)
    connection.close()
"""


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshTarget]:
    """A node to prepare: OpenSSH's sshd accepting only a key generated for this session, in
    namespaces of its own over an overlay root (NODE_SETUP), so that what a playbook does to it
    leaves this machine unchanged; reached on a loopback port of this machine."""
    home = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)], check=True
        )
    (home / "authorized_keys").write_text((home / "client_key.pub").read_text())
    (home / "authorized_keys").chmod(0o600)
    (home / "sshd_config").write_text(
        f"""HostKey {home / "host_key"}
AuthorizedKeysFile {home / "authorized_keys"}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
"""
    )
    for layer in ("upper", "work", "root"):
        (home / layer).mkdir()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    node = subprocess.Popen(
        ["unshare", "--mount", "--uts", "--ipc", "--pid", "--net", "--fork", "--kill-child",
         "--propagation", "private", "sh", "-c", NODE_SETUP],
        env={**os.environ, "UPPER": str(home / "upper"), "WORK": str(home / "work"),
             "ROOT": str(home / "root"), "HOME_DIR": str(home), "INETD": INETD,
             "LISTENER": str(listener.fileno())},
        pass_fds=(listener.fileno(),),
        stderr=(home / "sshd.log").open("wb"),
    )  # fmt: skip
    listener.close()
    deadline = time.monotonic() + 20
    while subprocess.run(
        ["ssh-keyscan", "-p", str(port), "127.0.0.1"], capture_output=True
    ).returncode:
        if node.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not start: {(home / 'sshd.log').read_text()}")
        time.sleep(0.2)
    yield SshTarget(
        "127.0.0.1", port, "root", home / "client_key", home / "known_hosts", home / "upper"
    )
    node.kill()  # unshare (which ignores SIGTERM) takes its child, PID 1 of the node, with it
    node.wait(timeout=10)


@pytest.fixture
def scratch_repo(tmp_path: Path) -> Path:
    """infra/platform.yaml and helm_values/ copied, for tests that break them."""
    (tmp_path / "infra").mkdir()
    shutil.copy(REPO_ROOT / "infra" / "platform.yaml", tmp_path / "infra" / "platform.yaml")
    shutil.copytree(REPO_ROOT / "helm_values", tmp_path / "helm_values")
    return tmp_path


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """A directory served over HTTP on loopback (a chart repository once it has index.yaml)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the HTTP server did not start on {url}") from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@dataclass(frozen=True)
class ChartRepository:
    component: str
    pinned: str  # the manifest's version
    newer: str  # the next patch release, which the repository also serves
    url: str


@pytest.fixture(scope="session")
def chart_repository(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChartRepository]:
    """A Helm chart repository on loopback (helm package + helm repo index, served over HTTP)
    with the ClickHouse chart at its pinned version and the next patch, registered under the name
    the upgrade pre-flight looks helm.altinity.com up by, in the Helm configuration of the
    session's stack: what the pre-flight uses when no chart mirror is set. helm.altinity.com
    itself is not reachable from CI; everything the pre-flight does against this one (helm repo
    update, helm search) is real."""
    component = load_manifest(with_values=False).component("clickhouse")
    major, minor, patch = parse_version(component.version, "clickhouse")
    newer = f"{major}.{minor}.{patch + 1}"
    home = tmp_path_factory.mktemp("charts")
    Command(("helm", "create", str(home / component.chart))).run()
    for version in (component.version, newer):
        Command(
            ("helm", "package", str(home / component.chart), "--version", version, "-d",
             str(home / "repo"))
        ).run()  # fmt: skip
    Command(("helm", "repo", "index", str(home / "repo"))).run()
    with served(home / "repo") as url:
        env = helm_env(stack_settings, "local")  # the repository configuration is shared
        Command(("helm", "repo", "add", repository_name(component), url), env=env).run()
        yield ChartRepository("clickhouse", component.version, newer, url)


@pytest.fixture(scope="session")
def upstream_chart_repository() -> Iterator[str]:
    """The upstream chart mirror served as a chart repository (its index.yaml has relative
    URLs), for a mirror given by URL."""
    with served(UPSTREAM_CHARTS) as url:
        yield url


@pytest.fixture(scope="session")
def chart_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the pinned upstream charts are unpacked once for the session's renders."""
    return tmp_path_factory.mktemp("chart-cache")


def served_apis(kinds_by_group: dict[str, tuple[str, ...]]) -> list[str]:
    """`helm template --api-versions` for CRDs that earlier waves install: each group and kind."""
    return [
        f"{group}/{kind}" if kind else group
        for group, kinds in kinds_by_group.items()
        for kind in ("", *kinds)
    ]


def rendered_release(
    name: str, environment: str, cache: Path, apis: list[str]
) -> list[dict[str, Any]]:
    """A component's objects as helm installs them: its pinned upstream chart with our values for
    the environment, the CRDs of earlier waves (`apis`) served, and each object in the release's
    namespace unless it names its own."""
    manifest = load_manifest(with_values=False)
    component = manifest.component(name)
    archive = chart_archive(component, str(UPSTREAM_CHARTS), cache, "infra/platform.yaml")
    kube_version = manifest.environment(environment).k3s_version.split("+")[0]
    result = render(component, archive, component.values_files(environment), kube_version, apis)
    assert not result.problems, result.problems
    for obj in result.objects:
        obj["metadata"].setdefault("namespace", component.namespace)
    return result.objects


@dataclass(frozen=True)
class ChartMirror:
    path: Path
    # Versions built from the real charts for the upgrade tests, each a patch above the pin.
    clickhouse_next: str  # clickhouse, unchanged but for its version
    cert_manager_crash_loop: str  # the controller's pods never become ready
    cert_manager_failing_job: str  # helm --wait succeeds, then a Job of the release fails
    # The pinned cilium archive rebuilt with that failing Job: a test serves it in place of the
    # real one (a bad build served under the pinned version).
    broken_cilium: Path


def repackage(
    archive: Path, version: str, into: Path, change: Callable[[Path], None] = lambda _: None
) -> None:
    """A new version of a real chart: unpacked, changed, and packaged again as helm does."""
    into.mkdir(parents=True, exist_ok=True)
    work = into.parent / f".work-{archive.stem}-{version}"
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    [chart] = [p for p in work.iterdir() if p.is_dir()]
    change(chart)
    Command(("helm", "package", str(chart), "--version", version, "-d", str(into))).run()
    shutil.rmtree(work)


def crash_loop(template: str, anchor: str) -> Callable[[Path], None]:
    """A chart change: the pods of one template carry the label kwok keeps in CrashLoopBackOff,
    inserted before ``anchor`` (a line of the pod template's labels, indentation included)."""

    def change(chart: Path) -> None:
        path = chart / "templates" / template
        key, value = CRASH_LOOP_LABEL
        text = path.read_text()
        assert anchor in text, f"{path} changed upstream: update the test's anchor"
        indent = anchor[: len(anchor) - len(anchor.lstrip())]
        path.write_text(text.replace(anchor, f"{indent}{key}: {value}\n{anchor}", 1))

    return change


def failing_job(chart: Path) -> None:
    """A chart change: a Job whose pod kwok fails. Helm's --wait does not wait for Jobs, so only
    the health gate sees it."""
    key, value = FAIL_LABEL
    (chart / "templates" / "adplatform-failing-check.yaml").write_text(
        f"""apiVersion: batch/v1
kind: Job
metadata:
  name: {{{{ .Release.Name }}}}-failing-check
  namespace: {{{{ .Release.Namespace }}}}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels:
        {key}: {value}
    spec:
      restartPolicy: Never
      containers:
        - name: check
          image: busybox:1.37
          command: ["false"]
"""
    )


@pytest.fixture(scope="session")
def chart_mirror(stack_settings: Settings) -> ChartMirror:
    """The session's chart mirror (ADP_HELM_CHART_MIRROR of the stack): every real upstream
    archive, linked, and the few versions the upgrade tests need, built from them."""
    if not UPSTREAM_CHARTS.is_dir():
        raise RuntimeError(
            f"the upstream chart mirror {UPSTREAM_CHARTS} is missing: put it there, or set "
            "ADPLATFORM_TEST_CHARTS to its directory"
        )
    mirror = Path(stack_settings.helm_chart_mirror)
    for archive in UPSTREAM_CHARTS.glob("*.tgz"):
        link = mirror / archive.name
        if not link.exists():
            link.symlink_to(archive)
    broken = mirror.parent / f"{mirror.name}-broken"
    versions = ChartMirror(mirror, "0.3.7", "v1.19.2", "v1.19.3", broken / "cilium-1.18.4.tgz")
    controller = crash_loop("deployment.yaml", "        {{- with .Values.podLabels }}")
    builds = [
        ("clickhouse-0.3.6.tgz", versions.clickhouse_next, mirror, lambda _: None),
        ("cert-manager-v1.19.1.tgz", versions.cert_manager_crash_loop, mirror, controller),
        ("cert-manager-v1.19.1.tgz", versions.cert_manager_failing_job, mirror, failing_job),
        ("cilium-1.18.4.tgz", "1.18.4", broken, failing_job),
    ]
    for source, version, into, change in builds:
        if not (into / f"{source.rsplit('-', 1)[0]}-{version}.tgz").exists():
            repackage(UPSTREAM_CHARTS / source, version, into, change)
    return versions


@pytest.fixture(scope="session")
def local_cluster(stack_settings: Settings) -> Iterator[LocalCluster]:
    """The local Kubernetes cluster under the session's data root, where the stack's Airflow
    reads the `local` environment's kubeconfig; stopped at the end, leaving no process."""
    cluster = LocalCluster(stack_settings)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
    left = [part.name for part in cluster.parts if part.pid() is not None]
    assert not left, f"still running after down: {left}"


@pytest.fixture
def configured(
    monkeypatch: pytest.MonkeyPatch, stack_settings: Settings, chart_mirror: ChartMirror
) -> Iterator[Settings]:
    """The flow's steps read settings and connections from the environment: the session's."""
    for name, value in {
        **stack_settings.environment(),
        **stack_settings.airflow_connections(),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield stack_settings
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def cluster_releases_undone(
    local_cluster: LocalCluster, stack_settings: Settings
) -> Iterator[None]:
    """A test that installs releases on the session's cluster uninstalls them after it: the
    provisioning tests of test_local_cluster_e2e.py expect to make each release's first
    revision, whichever test ran before."""
    env = helm_env(stack_settings, "local")

    def releases() -> set[tuple[str, str]]:
        listed = Command(("helm", "list", "--all-namespaces", "--all", "-o", "json"), env=env)
        return {(r["namespace"], r["name"]) for r in json.loads(listed.run().stdout)}

    before = releases()
    yield
    for namespace, name in sorted(releases() - before):
        Command(("helm", "uninstall", name, "-n", namespace, "--wait"), env=env).run()


@pytest.fixture(scope="module")
def admin(
    airflow_server: Settings, local_stack: LocalStack, chart_mirror: ChartMirror
) -> Iterator[AirflowClient]:
    # The DAGs' tasks read the stack's chart mirror: it must be filled before any run.
    client = local_stack.services["airflow"].client()
    client.wait_for_dags([PROVISION, UPGRADE, DRIFT])
    yield client
    client.close()


@pytest.fixture(scope="module")
def platform_admin(admin: AirflowClient, local_stack: LocalStack) -> Iterator[AirflowClient]:
    """The platform-admin user, with the provisioning DAGs unpaused and a placeholder Hetzner
    token (a plan that only creates servers never sends it)."""
    placeholder = ConnectionBody(
        connection_id="hcloud_default", conn_type="generic", password="0" * 64
    )
    try:
        admin.connections.post_connection(placeholder)
    except ConflictException:  # set by an earlier module of the session
        admin.connections.patch_connection(placeholder.connection_id, placeholder)
    client = local_stack.services["airflow"].client("platform-admin")
    for dag_id in (PROVISION, UPGRADE):
        client.dags.patch_dag(dag_id, DAGPatchBody(is_paused=False))
    yield client
    client.close()


@pytest.fixture(scope="module")
def platform_approver(
    platform_admin: AirflowClient, local_stack: LocalStack
) -> Iterator[AirflowClient]:
    """The second platform admin, who approves the runs platform-admin triggers (nobody approves
    their own)."""
    client = local_stack.services["airflow"].client("platform-approver")
    yield client
    client.close()
