"""The local platform stack: a Kafka broker (KRaft), an MLflow server, a Spark Connect server,
Airflow and JupyterHub.

Each service runs as a process group of its own, with its pid file under ``<data_root>/run`` and
its log under ``<data_root>/logs``. ``up`` is idempotent (a healthy service is left alone),
``down`` leaves no process behind, and every failure names the problem and the fix. The test
suite starts the same services, on free ports under a temporary data root.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adplatform.orchestration import (
    CLICKHOUSE_POOL,
    CLICKHOUSE_POOL_SLOTS,
    SPARK_POOL,
    SPARK_POOL_SLOTS,
    Role,
)
from adplatform.settings import REPO_ROOT, Settings, repo_path

if TYPE_CHECKING:
    from adplatform.airflow_client import AirflowClient

TOOLS_DIR = REPO_ROOT / ".tools"
KAFKA_POM = REPO_ROOT / "infra" / "local" / "kafka" / "pom.xml"
KAFKA_LIBS = TOOLS_DIR / "kafka" / "libs"
HTTP_PROXY_PACKAGE = REPO_ROOT / "infra" / "local" / "http-proxy"
HTTP_PROXY_DIR = TOOLS_DIR / "http-proxy"
HTTP_PROXY = HTTP_PROXY_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
NOTEBOOKS = REPO_ROOT / "ml" / "notebooks"
LAB_SETTINGS = Path(".jupyter/lab/user-settings/@jupyterlab/apputils-extension")
VENV_BIN = Path(sys.executable).parent
# pyspark's own Spark distribution: bin/, sbin/ (start-connect-server.sh, spark-daemon.sh), jars/.
SPARK_LOG_CONFIG = REPO_ROOT / "infra" / "local" / "spark" / "log4j2.properties"
SPARK_HOME = Path(importlib.util.find_spec("pyspark").origin).parent  # type: ignore[union-attr,arg-type]
# FAB roles that the DAGs' access_control names (by tag, adplatform.orchestration.ROLES_BY_TAG),
# and one local user per role besides admin; see create_airflow_access. A second platform admin,
# because nobody approves a provisioning run they triggered.
AIRFLOW_ROLES = tuple(role.value for role in Role)
AIRFLOW_USERS = {
    "admin": "Admin",
    **{role: role for role in AIRFLOW_ROLES},
    "platform-approver": Role.PLATFORM_ADMIN.value,
}
APPROVERS_FILE = "platform-approvers"  # see create_airflow_access
# JupyterHub's one local user. The hub's SharedPasswordAuthenticator lets every allowed user in
# with one password: a second person needs a per-user authenticator (NativeAuthenticator, OAuth).
JUPYTERHUB_USER = "data-scientist"


class StackError(RuntimeError):
    """A service cannot start or stop; the message says why and what to do."""


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_port(span: int = 1) -> int:
    """A loopback port p such that p .. p+span-1 are all free right now (services that take
    several ports, on free ports in tests and benchmarks).

    Chosen below the kernel's ephemeral range: a port from inside it can be taken by any
    outgoing connection (a Kafka client, the API server's own etcd connections) between this
    choice and the service's bind, which tests that start a service late in a run did see.
    """
    low = _ephemeral_range_start()
    while True:
        port = secrets.choice(range(_FIRST_CHOSEN_PORT, low - span))
        block = range(port, port + span)
        if not _handed_out.intersection(block) and all(_is_free(p) for p in block):
            _handed_out.update(block)
            return port


_FIRST_CHOSEN_PORT = 10000  # above the well-known and most registered services' ports
_handed_out: set[int] = set()  # this process never hands the same port out twice


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _install_once(target: Path, source: Path, fill: Callable[[Path], None]) -> Path:
    """Fill ``target`` with ``fill(staging dir)`` unless it was filled from this very ``source``
    file (again when the file changes); publish only a complete result."""
    digest = hashlib.sha1(source.read_bytes()).hexdigest()
    marker = target / f".{source.stem}-sha1"
    if marker.exists() and marker.read_text() == digest:
        return target
    staging = target.with_name(f"{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    fill(staging)
    (staging / marker.name).write_text(digest)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def ensure_kafka_jars() -> Path:
    """Resolve the broker's jars from Maven Central into .tools/ (again when the pom changes)."""
    if shutil.which("mvn") is None:
        raise StackError(
            "mvn not found: install Maven (apt-get install maven) to fetch the Kafka broker jars"
        )

    def copy_dependencies(staging: Path) -> None:
        result = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(KAFKA_POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"fetching Kafka jars failed: {result.stdout[-2000:]}{result.stderr}")

    return _install_once(KAFKA_LIBS, KAFKA_POM, copy_dependencies)


def ensure_http_proxy() -> Path:
    """Install JupyterHub's proxy, configurable-http-proxy, from npm into .tools/ at the
    versions of infra/local/http-proxy/package-lock.json (again when that file changes)."""
    if shutil.which("npm") is None:
        raise StackError(
            "npm not found: install Node.js 20 or later with npm (apt-get install nodejs npm) "
            "for JupyterHub's proxy"
        )

    def npm_ci(staging: Path) -> None:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(HTTP_PROXY_PACKAGE / name, staging / name)
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--omit=dev", "--loglevel=error"],
            cwd=staging,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"installing configurable-http-proxy failed: {result.stderr[-2000:]}")

    _install_once(HTTP_PROXY_DIR, HTTP_PROXY_PACKAGE / "package-lock.json", npm_ci)
    return HTTP_PROXY


@dataclass
class Service:
    """A long-running local process with a health check."""

    name: str
    settings: Settings
    port: int
    start_timeout: float = 120.0
    port_setting: str = ""  # the ADP_* variable that moves the port, when not ADP_<NAME>_PORT

    @property
    def pid_file(self) -> Path:
        return self.settings.pid_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.settings.logs_dir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.settings.environment(),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def prepare(self) -> None:
        """One-time set-up before the first start (idempotent)."""

    def healthy(self) -> bool:
        raise NotImplementedError

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        # A child of this process that exited is a zombie until reaped: it is not running.
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return None
        return pid

    def start(self) -> str:
        return self.wait_until_healthy(self.launch())

    def launch(self) -> str:
        """Start the process unless it runs; "already running" if it is healthy, else ""."""
        if self.healthy():
            return "already running"
        if self.pid() is None:
            if _port_open(self.port):
                raise StackError(
                    f"{self.name}: port {self.port} is in use by another program; stop it or "
                    f"set {self.port_setting or f'ADP_{self.name.upper()}_PORT'} to a free port"
                )
            self.prepare()
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("ab") as log:
                process = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.environment(),
                    start_new_session=True,
                    cwd=self.settings.data_root,
                )
            self.pid_file.write_text(str(process.pid))
        return ""

    def wait_until_healthy(self, launched: str) -> str:
        if launched:
            return launched
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return "started"
            if self.pid() is None:
                raise StackError(
                    f"{self.name} exited during start-up; last log lines:\n"
                    f"{self.log_tail()}\n(full log: {self.log_file})"
                )
            time.sleep(1)
        raise StackError(
            f"{self.name} not healthy after {self.start_timeout:.0f}s; see "
            f"{self.log_file}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 30.0) -> str:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "not running"
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self._group_alive(pid):
                time.sleep(0.2)
            if not self._group_alive(pid):
                break
        self.pid_file.unlink(missing_ok=True)
        return "stopped"

    def kill(self) -> None:
        """SIGKILL the service's process group, as a crash or the OOM killer would."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while self._group_alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        # A zombie leader still counts for killpg; reap it if it is our child.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
        return True

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def new_kafka_cluster_id() -> str:
    """A random cluster id in Kafka's format. Like Kafka's own Uuid.randomUuid it never starts
    with '-', which kafka-storage's command line would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker(Service):
    """One node of the local Apache Kafka 4 cluster in KRaft mode (broker and controller in one).

    With ``kafka_brokers=1`` (the default) it is the whole cluster; with 3 the nodes form a
    three-voter controller quorum, and topics are created with replication factor 3 and
    ``min.insync.replicas=2``, so producing with ``acks=all`` survives losing any one node.
    """

    def __init__(self, settings: Settings, node_id: int = 1) -> None:
        name = "kafka" if node_id == 1 else f"kafka-{node_id}"
        super().__init__(name, settings, settings.kafka_port + node_id - 1, start_timeout=120)
        self.node_id = node_id
        self.nodes = settings.kafka_brokers
        self.controller_port = settings.kafka_controller_port + node_id - 1
        self.cluster_home = settings.kafka_dir
        self.home = self.cluster_home if node_id == 1 else self.cluster_home / f"node-{node_id}"

    def _cluster_id(self) -> str:
        """One id for every node of the cluster, made by whichever node formats first."""
        path = self.cluster_home / "cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_kafka_cluster_id())
        return path.read_text().strip()

    def prepare(self) -> None:
        if shutil.which("java") is None:
            raise StackError(
                "java not found: install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
            )
        ensure_kafka_jars()
        if _port_open(self.controller_port):
            raise StackError(
                f"{self.name}: controller port {self.controller_port} is in use; set "
                "ADP_KAFKA_CONTROLLER_PORT to a free port (node i uses it + i - 1)"
            )
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        host = "127.0.0.1"
        replication = min(3, self.nodes)
        voters = ",".join(
            f"{node}@{host}:{self.settings.kafka_controller_port + node - 1}"
            for node in range(1, self.nodes + 1)
        )
        quorum = (
            f"controller.quorum.bootstrap.servers={host}:{self.controller_port}"
            if self.nodes == 1
            else f"controller.quorum.voters={voters}"
        )
        (self.home / "server.properties").write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node_id}",
                    quorum,
                    f"listeners=PLAINTEXT://{host}:{self.port},"
                    f"CONTROLLER://{host}:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://{host}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    f"default.replication.factor={replication}",
                    f"min.insync.replicas={min(2, replication)}",
                    f"offsets.topic.replication.factor={replication}",
                    f"transaction.state.log.replication.factor={replication}",
                    f"transaction.state.log.min.isr={min(2, replication)}",
                    f"share.coordinator.state.topic.replication.factor={replication}",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "",
                ]
            )
        )
        if not (data / "meta.properties").exists():
            result = subprocess.run(
                [
                    "java",
                    "-cp",
                    f"{KAFKA_LIBS}/*",
                    "kafka.tools.StorageTool",
                    "format",
                    "--cluster-id",
                    self._cluster_id(),
                    "--config",
                    str(self.home / "server.properties"),
                    *(["--standalone"] if self.nodes == 1 else []),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise StackError(f"formatting Kafka storage failed: {result.stderr[-2000:]}")

    def command(self) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx1g",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={KAFKA_POM.with_name('log4j2.yaml')}",
            "-cp",
            f"{KAFKA_LIBS}/*",
            "kafka.Kafka",
            str(self.home / "server.properties"),
        ]

    def healthy(self) -> bool:
        if not _port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.port}"})
            return self.node_id in admin.list_topics(timeout=3).brokers
        except Exception:  # the broker is still starting
            return False


class MlflowServer(Service):
    """MLflow tracking server: SQLite backend store, artifacts proxied under the data root."""

    def __init__(self, settings: Settings) -> None:
        # A ceiling, not an expectation: next to a running Airflow on a loaded 2-core machine,
        # MLflow's server took over two minutes to answer its first health check.
        super().__init__("mlflow", settings, settings.mlflow_port, start_timeout=240)
        self.home = settings.mlflow_dir

    def prepare(self) -> None:
        (self.home / "artifacts").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(VENV_BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.home / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.home / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def healthy(self) -> bool:
        return _http_ok(f"{self.url}/health")


class SparkConnectServer(Service):
    """The one long-lived Spark of the local stack: a Spark Connect server (pyspark's own
    ``sbin/start-connect-server.sh``, in the foreground) on ``spark_master`` with the
    transform's Spark configuration. The transform's jobs are its clients, so no task starts a
    JVM; ``spark_master`` moves it onto a cluster (e.g. ``spark://host:7077``) unchanged.
    """

    def __init__(self, settings: Settings) -> None:
        # About 20 s on a quiet machine (a JVM, a SparkContext, the gRPC service).
        super().__init__(
            "spark-connect",
            settings,
            settings.spark_connect_port,
            start_timeout=240,
            port_setting="ADP_SPARK_CONNECT_PORT",
        )

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        if shutil.which("java") is None:
            raise StackError(
                "java not found: install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
            )

    def environment(self) -> dict[str, str]:
        return super().environment() | {
            "SPARK_HOME": str(SPARK_HOME),
            # spark-daemon.sh's own files: under the data root, not in the virtual environment.
            "SPARK_LOG_DIR": str(self.settings.logs_dir),
            "SPARK_PID_DIR": str(self.pid_file.parent),
        }

    def command(self) -> list[str]:
        from adplatform.transform.spark import spark_conf

        conf = {
            **spark_conf(self.settings),
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
        }
        return [
            str(SPARK_HOME / "sbin" / "start-connect-server.sh"),
            "--wait",  # in the foreground, in this service's process group
            "--master",
            self.settings.spark_master,
            "--driver-java-options",
            f"-Dlog4j2.configurationFile={SPARK_LOG_CONFIG}",
            *[arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")],
        ]

    def healthy(self) -> bool:
        """The server answers a Spark Connect call (its Spark version), not just its port."""
        if not _port_open(self.port):
            return False
        import grpc
        from pyspark.sql.connect.proto import base_pb2, base_pb2_grpc

        session = base_pb2.UserContext(user_id="adplatform-health-check")
        session_id = str(uuid.uuid4())
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = base_pb2_grpc.SparkConnectServiceStub(channel)
            try:
                stub.AnalyzePlan(
                    base_pb2.AnalyzePlanRequest(
                        session_id=session_id,
                        user_context=session,
                        spark_version=base_pb2.AnalyzePlanRequest.SparkVersion(),
                    ),
                    timeout=10,
                )
                stub.ReleaseSession(
                    base_pb2.ReleaseSessionRequest(session_id=session_id, user_context=session),
                    timeout=10,
                )
            except grpc.RpcError:
                return False
        return True


class AirflowServices(Service):
    """Airflow 3: api-server, scheduler, dag-processor and triggerer on our dags/ and plugins/.

    Not `airflow standalone`, which forces the simple auth manager: the platform needs FAB's
    roles and per-DAG access control. The four components share one process group, each with
    its own log. Each local user's password is generated on first start and kept under the data
    root, in ``<data root>/airflow/<user>-password``.
    """

    def __init__(self, settings: Settings) -> None:
        # Its four components start in about a minute, and in several on a loaded 2-core machine.
        super().__init__("airflow", settings, settings.airflow_port, start_timeout=600)
        self.home = settings.airflow_dir

    def environment(self) -> dict[str, str]:
        return super().environment() | airflow_environment(self.settings)

    def client(self, user: str = "admin") -> AirflowClient:
        """A REST client logged in as one of the local users (AIRFLOW_USERS)."""
        from adplatform.airflow_client import AirflowClient  # seconds to import: only when used

        return AirflowClient(self.url, user, password_file(self.home, user).read_text().strip())

    def prepare(self) -> None:
        generate_passwords(self.home, AIRFLOW_USERS)

    def command(self) -> list[str]:
        logs = self.settings.logs_dir
        components = " & ".join(
            f"airflow {c} >> {logs}/airflow-{c}.log 2>&1"
            for c in ("api-server", "scheduler", "dag-processor", "triggerer")
        )
        # The roles must exist before the dag-processor syncs the DAGs' access_control.
        access = "from adplatform.localstack import create_airflow_access as create; " + (
            f"create({str(self.home)!r})"
        )
        # The platform-admin users it lists are the plan approvers, unless configured.
        approvers = shlex.quote(str(self.home / APPROVERS_FILE))
        script = f"""set -e
airflow db migrate
{shlex.quote(sys.executable)} -c {shlex.quote(access)}
export ADP_PLATFORM_APPROVERS="${{ADP_PLATFORM_APPROVERS:-$(cat {approvers})}}"
airflow pools set {CLICKHOUSE_POOL} {CLICKHOUSE_POOL_SLOTS} "ClickHouse tasks: chDB allows one process per data directory"
airflow pools set {SPARK_POOL} {SPARK_POOL_SLOTS} "Spark jobs; they share the local cores"
{components} &
wait"""
        return ["bash", "-c", script]

    def healthy(self) -> bool:
        import json

        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=3) as response:
                health = json.load(response)
        except (OSError, ValueError):
            return False
        parts = [part for part in health.values() if isinstance(part, dict)]
        return len(parts) >= 4 and all(part.get("status") == "healthy" for part in parts)


class JupyterHubServer(Service):
    """JupyterHub, the data scientists' front door: its proxy (configurable-http-proxy), the hub
    and, once a user starts a server, JupyterLab as that user's single-user server.

    Everything runs as the current user on loopback; the user logs in as ``data-scientist``
    with the password generated in ``<data root>/jupyterhub/data-scientist-password``. The
    single-user server and its kernels run on this project's virtual environment with the
    ADP_* settings of the stack, so ``import adplatform, ml`` and the MLflow and ClickHouse
    settings work in a notebook as they do in the DAGs. The user's home, with a copy of
    ml/notebooks/ made on first start, is ``<data root>/jupyterhub/users/<user>``.
    """

    def __init__(self, settings: Settings) -> None:
        # Starts in seconds; the ceiling is for a loaded 2-core machine.
        super().__init__("jupyterhub", settings, settings.jupyterhub_port, start_timeout=180)
        self.home = settings.jupyterhub_dir
        self.config_file = self.home / "jupyterhub_config.json"

    def user_home(self, user: str = JUPYTERHUB_USER) -> Path:
        return self.home / "users" / user

    def password(self, user: str = JUPYTERHUB_USER) -> str:
        return password_file(self.home, user).read_text().strip()

    def prepare(self) -> None:
        busy = [port for port in (self.port + 1, self.port + 2) if _port_open(port)]
        if busy:
            raise StackError(
                f"jupyterhub: port {busy[0]} (its proxy's API or the hub) is in use; set "
                "ADP_JUPYTERHUB_PORT to a port p with p, p+1 and p+2 free"
            )
        proxy = ensure_http_proxy()
        generate_passwords(self.home, [JUPYTERHUB_USER])
        # Loopback only: JupyterLab neither asks to fetch news nor checks for updates on the web
        # (the user's own settings, which they may change).
        notification = self.user_home() / LAB_SETTINGS / "notification.jupyterlab-settings"
        if not notification.exists():
            notification.parent.mkdir(parents=True, exist_ok=True)
            notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        notebooks = self.user_home() / "notebooks"
        notebooks.mkdir(parents=True, exist_ok=True)
        for notebook in NOTEBOOKS.glob("*.ipynb"):
            # A copy, not a link: what the user runs and saves stays theirs, out of the repo.
            if not (notebooks / notebook.name).exists():
                shutil.copyfile(notebook, notebooks / notebook.name)
        self.config_file.write_text(json.dumps(self.config(proxy), indent=2))
        self.config_file.chmod(0o600)  # it holds the password

    def config(self, proxy: Path) -> dict[str, dict[str, object]]:
        """The hub's configuration (traitlets' JSON form), on this service's three ports."""
        loopback = "http://127.0.0.1"
        return {
            "JupyterHub": {
                "bind_url": self.url,
                "hub_bind_url": f"{loopback}:{self.port + 2}",
                "db_url": f"sqlite:///{self.home / 'jupyterhub.sqlite'}",
                "cookie_secret_file": str(self.home / "cookie_secret"),
                "authenticator_class": "shared-password",
                "spawner_class": "simple",
            },
            "ConfigurableHTTPProxy": {
                "command": [str(proxy)],
                "api_url": f"{loopback}:{self.port + 1}",
                "pid_file": str(self.home / "proxy.pid"),
            },
            "SharedPasswordAuthenticator": {
                "user_password": self.password(),
                "allowed_users": [JUPYTERHUB_USER],
            },
            "Spawner": {
                "cmd": [str(VENV_BIN / "jupyterhub-singleuser")],
                "args": [
                    "--allow-root",  # CI and the development machines run as root
                    "--LabApp.extension_manager=readonly",  # no extension index from the web
                ],
                "default_url": "/lab",
                "ip": "127.0.0.1",
                # The hub passes on only the variables it is told to: the stack's settings, and
                # the OpenBLAS ones that some processors need for numpy to compute correctly.
                "env_keep": [
                    "PATH",
                    "LANG",
                    "LC_ALL",
                    "OPENBLAS_CORETYPE",
                    "OPENBLAS_L2_SIZE",
                    *self.settings.environment(),
                ],
                # In the hub's process group, so that stopping the hub stops them too.
                "popen_kwargs": {"start_new_session": False},
                "start_timeout": 300,
                "http_timeout": 300,
            },
            "SimpleLocalProcessSpawner": {
                "home_dir_template": str(self.home / "users" / "{username}"),
            },
        }

    def command(self) -> list[str]:
        return [str(VENV_BIN / "jupyterhub"), "-f", str(self.config_file)]

    def healthy(self) -> bool:
        return _http_ok(f"{self.url}/hub/health")


def password_file(home: Path, user: str) -> Path:
    """Where a local user's generated password is kept, in the service's home (Airflow's,
    JupyterHub's)."""
    return home / f"{user}-password"


def generate_passwords(home: Path, users: Iterable[str]) -> None:
    """A random password for each user who has none yet, readable only by the owner."""
    home.mkdir(parents=True, exist_ok=True)
    for user in users:
        path = password_file(home, user)
        if not path.exists():
            path.write_text(secrets.token_urlsafe(12))
            path.chmod(0o600)


def create_airflow_access(home: str) -> None:
    """Create the FAB roles and the local users (idempotent); run inside the Airflow environment.
    Lists the users of the platform-admin role as `name=id,...` (ADP_PLATFORM_APPROVERS' form)
    in ``<home>/platform-approvers``.

    Each role gets FAB's Viewer and User permissions except their global grants on DAGs: what
    working with a DAG needs (runs, task instances, logs, XComs, approvals), but only on the DAGs
    whose access_control opens them to the role. Permissions are added, never removed, so a
    grant made in the UI survives a restart.
    """
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
    from airflow.providers.fab.auth_manager.security_manager.override import (
        FabAirflowSecurityManagerOverride as Fab,
    )

    dag_work = [
        (action, resource)
        for action, resource in Fab.VIEWER_PERMISSIONS + Fab.USER_PERMISSIONS
        if resource != "DAGs" or action == "can_access_menu"
    ]
    with get_application_builder() as appbuilder:
        security = appbuilder.sm
        security.bulk_sync_roles({"role": role, "perms": dag_work} for role in AIRFLOW_ROLES)
        for user, role in AIRFLOW_USERS.items():
            if security.find_user(username=user) is None:
                security.add_user(
                    username=user,
                    first_name=user,
                    last_name="(local)",
                    email=f"{user}@adplatform.local",
                    role=security.find_role(role),
                    password=password_file(Path(home), user).read_text().strip(),
                )
        (Path(home) / APPROVERS_FILE).write_text(
            ",".join(
                f"{user.username}={user.id}"
                for user in security.get_all_users()
                if Role.PLATFORM_ADMIN.value in {role.name for role in user.roles}
            )
        )


def airflow_environment(settings: Settings) -> dict[str, str]:
    """What every Airflow process of the local profile needs: home, folders, connections."""
    home = settings.airflow_dir
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo_path("dags")),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # FAB's auth manager: roles with per-DAG access control (platform-admin, analyst).
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{settings.airflow_port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        # Log servers next to the API port, so stacks on other ports (tests) never collide.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_port + 1),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_port + 2),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{settings.airflow_port}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # A task parses its DAG file before it runs. On a loaded 2-core machine that has passed
        # the 30 s default, and Airflow then reschedules the task a minute or more later.
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        **settings.airflow_connections(),
    }


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        brokers = [KafkaBroker(settings, node) for node in range(1, settings.kafka_brokers + 1)]
        self.services: dict[str, Service] = {
            **{broker.name: broker for broker in brokers},
            "mlflow": MlflowServer(settings),
            "spark-connect": SparkConnectServer(settings),
            "airflow": AirflowServices(settings),
            "jupyterhub": JupyterHubServer(settings),
        }
        # "kafka" names the whole cluster: its nodes only start (and stop) together.
        self._groups = {"kafka": [broker.name for broker in brokers]}

    def _select(self, names: Iterable[str] | None) -> list[Service]:
        names = list(names or self.services)
        known = [*self._groups, *self.services]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise StackError(
                f"unknown service {', '.join(unknown)}: choose from {', '.join(dict.fromkeys(known))}"
            )
        expanded = [member for n in names for member in self._groups.get(n, [n])]
        return [self.services[n] for n in dict.fromkeys(expanded)]

    def up(self, names: Iterable[str] | None = None) -> dict[str, str]:
        # Launch all, then wait: a cluster's nodes cannot be healthy before a quorum runs.
        services = self._select(names)
        launched = [service.launch() for service in services]
        return {
            s.name: s.wait_until_healthy(result)
            for s, result in zip(services, launched, strict=True)
        }

    def down(self, names: Iterable[str] | None = None) -> dict[str, str]:
        return {s.name: s.stop() for s in reversed(self._select(names))}

    def status(self) -> list[tuple[str, str, int | None, str, Path]]:
        rows = []
        for service in self.services.values():
            pid = service.pid()
            state = "healthy" if service.healthy() else ("starting/unhealthy" if pid else "down")
            rows.append((service.name, state, pid, service.url, service.log_file))
        return rows
