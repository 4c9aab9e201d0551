"""The local platform stack: a Kafka broker (KRaft), an MLflow server and Airflow.

Each service runs as a process group of its own, with its pid file under ``<data_root>/run`` and
its log under ``<data_root>/logs``. ``up`` is idempotent (a healthy service is left alone),
``down`` leaves no process behind, and every failure names the problem and the fix. The test
suite starts the same services, on free ports under a temporary data root.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from adplatform.airflow_client import AirflowClient
from adplatform.clickhouse.client import POOL as CLICKHOUSE_POOL
from adplatform.orchestration import SPARK_POOL, SPARK_POOL_SLOTS, Role
from adplatform.settings import REPO_ROOT, Settings

TOOLS_DIR = REPO_ROOT / ".tools"
KAFKA_POM = REPO_ROOT / "infra" / "local" / "kafka" / "pom.xml"
KAFKA_LIBS = TOOLS_DIR / "kafka" / "libs"
VENV_BIN = Path(sys.executable).parent
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


class StackError(RuntimeError):
    """A service cannot start or stop; the message says why and what to do."""


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_port(span: int = 1) -> int:
    """A loopback port p such that p .. p+span-1 are all free right now (services that take
    several ports, on free ports in tests and benchmarks)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + span < 65535 and all(_is_free(port + offset) for offset in range(1, span)):
            return port


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


def ensure_kafka_jars() -> Path:
    """Resolve the broker's jars from Maven Central into .tools/ (again when the pom changes)."""
    pom_digest = hashlib.sha1(KAFKA_POM.read_bytes()).hexdigest()
    marker = KAFKA_LIBS / ".pom-sha1"
    if marker.exists() and marker.read_text() == pom_digest:
        return KAFKA_LIBS
    if shutil.which("mvn") is None:
        raise StackError(
            "mvn not found: install Maven (apt-get install maven) to fetch the Kafka broker jars"
        )
    staging = KAFKA_LIBS.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
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
    (staging / ".pom-sha1").write_text(pom_digest)
    shutil.rmtree(KAFKA_LIBS, ignore_errors=True)
    staging.rename(KAFKA_LIBS)  # publish only a complete set
    return KAFKA_LIBS


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
        return self.settings.data_root / "run" / f"{self.name}.pid"

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
        self.cluster_home = settings.data_root / "kafka"
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
        self.home = settings.data_root / "mlflow"

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
        self.home = settings.data_root / "airflow"

    def environment(self) -> dict[str, str]:
        return super().environment() | airflow_environment(self.settings)

    def client(self, user: str = "admin") -> AirflowClient:
        """A REST client logged in as one of the local users (AIRFLOW_USERS)."""
        return AirflowClient(self.url, user, password_file(self.home, user).read_text().strip())

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        for user in AIRFLOW_USERS:
            path = password_file(self.home, user)
            if not path.exists():
                path.write_text(secrets.token_urlsafe(12))
                path.chmod(0o600)

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
airflow pools set {CLICKHOUSE_POOL} 1 "ClickHouse tasks: chDB allows one process per data directory"
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


def password_file(airflow_home: Path, user: str) -> Path:
    """Where a local Airflow user's generated password is kept."""
    return airflow_home / f"{user}-password"


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
    home = settings.data_root / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
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
            "airflow": AirflowServices(settings),
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
