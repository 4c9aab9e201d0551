"""The local Kubernetes cluster: a real control plane on loopback, a simulated data plane.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built by `make tools` from the
Go module proxy) run as processes under ``<data_root>/cluster``; kwok simulates the nodes and the
pod lifecycle (pods are scheduled, become Running and Ready, Jobs complete, claims of the
default ``local-path`` class bind for their first pod, as local-path-provisioner binds them), so
no container ever runs. Everything else is the real thing: API,
admission, RBAC, controllers, scheduling, CRDs, Helm's three-way merge and hooks.

Workloads of the charts that the cluster must really reach or that must really act (cert-manager's
webhook, which the API server calls, and its controllers) run as host stand-ins: their upstream
binaries as host processes, parts of the cluster like the control plane's, talking to the API
server with the cluster's kubeconfig; the chart still installs their Deployments, whose kwok pods
stay the cluster's view of them (see `HostWorkload`).

The admin kubeconfig is written where the ``kubernetes_local`` connection reads it
(``<data_root>/provisioning/local/kubeconfig``), so the provisioning DAGs' ``local`` environment
targets this cluster. ``up`` is idempotent, ``down`` leaves no process behind; the state (etcd,
certificates) stays under the data root, so the next ``up`` finds the same cluster.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adplatform.localstack import TOOLS_DIR, Service, StackError, _port_open
from adplatform.provisioning.commands import tool
from adplatform.provisioning.manifest import merge_values
from adplatform.provisioning.releases import host_values_file
from adplatform.provisioning.vault import local_config, local_listener_certificate
from adplatform.settings import REPO_ROOT, Settings

KWOK_STAGES = TOOLS_DIR / "kwok-stages"  # kwok's own, copied from its module by `make tools`
LOCAL_STAGES = REPO_ROOT / "infra" / "local" / "kwok"  # the project's, for failure tests
SERVICE_CIDR = "10.96.0.0/16"
# The cluster CA's certificate as a Secret (namespace, name): what clients inside the cluster
# trust to reach a host stand-in whose certificate that CA signed (Vault's).
CA_SECRET = ("kube-system", "local-cluster-ca")
# The cluster's ports: cluster_api_port and the next ones (the API server, etcd's client and peer
# ports, the controller-manager, the scheduler, kwok, then the host stand-ins from
# STAND_IN_PORTS on). Tests reserve the whole block with free_port(span=PORT_SPAN).
PORT_SPAN = 16
STAND_IN_PORTS = 6
POD_CIDR = "10.244.0.0/16"
# The simulated nodes, shaped like the servers and agents of a K3s environment.
NODES = {
    "local-server-1": {
        "node-role.kubernetes.io/control-plane": "true",
        "adplatform.io/pool": "server",
    },
    "local-agent-1": {"adplatform.io/pool": "agent"},
    "local-agent-2": {"adplatform.io/pool": "agent"},
}
NODE_CAPACITY = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "200Gi"}
# Labels the failure tests set on a release's pods, for the project's kwok stages
# (infra/local/kwok/): the first keeps them in CrashLoopBackOff, the second fails them (exit 1).
CRASH_LOOP_LABEL = ("adplatform.io/simulate", "crash-loop")
FAIL_LABEL = ("adplatform.io/simulate", "fail")


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def tokens(self) -> Path:
        return self.pki / "tokens.csv"

    @property
    def kubeconfig(self) -> Path:
        """The controllers' kubeconfig (the admin's is written for the local environment)."""
        return self.root / "admin.kubeconfig"

    @property
    def kwok_config(self) -> Path:
        return self.root / "kwok.yaml"


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode:
        raise StackError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def ensure_pki(paths: Paths) -> str:
    """A CA, the API server's serving certificate signed by it, the service-account key pair and
    an admin token in system:masters; generated once, kept across restarts. Returns the token."""
    pki = paths.pki
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    if not (pki / "ca.crt").exists():
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                 "-subj", "/CN=adplatform-local-ca", "-keyout", str(pki / "ca.key"),
                 "-out", str(pki / "ca.crt.partial"))  # fmt: skip
        (pki / "ca.crt.partial").rename(pki / "ca.crt")
    if not (pki / "apiserver.crt").exists():
        names = "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        names += "DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
        (pki / "apiserver.ext").write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
                 "-keyout", str(pki / "apiserver.key"), "-out", str(pki / "apiserver.csr"))  # fmt: skip
        _openssl("x509", "-req", "-in", str(pki / "apiserver.csr"), "-CA", str(pki / "ca.crt"),
                 "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "3650",
                 "-extfile", str(pki / "apiserver.ext"), "-out", str(pki / "apiserver.crt.partial"))  # fmt: skip
        (pki / "apiserver.crt.partial").rename(pki / "apiserver.crt")
    if not (pki / "sa.pub").exists():
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", str(pki / "sa.key"))  # fmt: skip
        _openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    if not paths.tokens.exists():
        token = secrets.token_urlsafe(32)
        partial = paths.tokens.with_suffix(".partial")
        partial.write_text(f'{token},admin,admin,"system:masters"\n')
        partial.chmod(0o600)
        partial.rename(paths.tokens)
    return paths.tokens.read_text().split(",", 1)[0]


def kubeconfig(server: str, ca_file: Path, token: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": server, "certificate-authority": str(ca_file)},
                }
            ],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        },
        indent=2,
    )


class _Part(Service):
    """One process of the control plane: alive with its port listening counts as healthy; the
    cluster as a whole is judged by the API server's /readyz and the nodes' Ready condition."""

    def __init__(self, name: str, settings: Settings, port: int, paths: Paths) -> None:
        super().__init__(name, settings, port, start_timeout=180.0)
        self.paths = paths
        self.port_setting = "ADP_CLUSTER_API_PORT"

    @property
    def log_file(self) -> Path:
        return self.settings.logs_dir / f"cluster-{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.settings.data_root / "run" / f"cluster-{self.name}.pid"

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        return self.pid() is not None and _port_open(self.port)


class Etcd(_Part):
    def command(self) -> list[str]:
        return [
            tool("etcd"),
            f"--data-dir={self.paths.etcd_data}",
            f"--listen-client-url=http://127.0.0.1:{self.port}",
            f"--listen-peer-url=http://127.0.0.1:{self.port + 1}",
        ]


class ApiServer(_Part):
    def command(self) -> list[str]:
        pki = self.paths.pki
        return [
            tool("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.settings.cluster_api_port + 1}",
            "--bind-address=127.0.0.1",
            # Loopback only: nothing outside this machine may reach it, and no endpoint of the
            # `kubernetes` Service points at it (no pod runs to use one).
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--secure-port={self.port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={self.paths.tokens}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
        ]

    def healthy(self) -> bool:
        return self.pid() is not None and self.ready()

    def ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.paths.pki / "ca.crt"))
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{self.port}/readyz", timeout=3, context=context
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False


class ControllerManager(_Part):
    def command(self) -> list[str]:
        return [
            tool("kube-controller-manager"),
            f"--kubeconfig={self.paths.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--service-account-private-key-file={self.paths.pki / 'sa.key'}",
            f"--root-ca-file={self.paths.pki / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
        ]


class Scheduler(_Part):
    def command(self) -> list[str]:
        return [
            tool("kube-scheduler"),
            f"--kubeconfig={self.paths.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port}",
            "--profiling=false",
        ]


class Kwok(_Part):
    def prepare(self) -> None:
        stages = sorted(KWOK_STAGES.glob("*.yaml")) + sorted(LOCAL_STAGES.glob("*.yaml"))
        if not list(KWOK_STAGES.glob("*.yaml")):
            raise StackError(f"no kwok stages in {KWOK_STAGES}: run `make tools` to build kwok")
        self.paths.kwok_config.write_text(
            "\n---\n".join(stage.read_text().strip() for stage in stages) + "\n"
        )

    def command(self) -> list[str]:
        return [
            tool("kwok"),
            f"--kubeconfig={self.paths.kubeconfig}",
            f"--config={self.paths.kwok_config}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--cidr={POD_CIDR}",
            f"--server-address=127.0.0.1:{self.port}",
        ]


class HostWorkload(_Part):
    """A chart's workload as a host stand-in: its real upstream binary (built by `make tools`)
    as a host process that talks to the API server with the cluster's kubeconfig, where kwok's
    pod cannot answer (a webhook the API server calls) or act (a controller). The chart still
    installs everything else, its Deployment's kwok pods included; ``chart_values`` are the values
    the local environment's release needs to reach the process (see host_values_file).

    Supervised as a pod with restartPolicy Always is: started with the cluster, before the chart
    may be installed, and restarted whenever it exits, so a process that gives up while the
    release's namespace, CRDs or RBAC do not exist yet (or after the release was uninstalled)
    comes back once they do. Simpler and more robust than starting it from the provisioning flow,
    which would have to track every install, uninstall and rollback."""

    RESTART_DELAY_SECONDS = 5

    def __init__(
        self, name: str, settings: Settings, port: int, paths: Paths, component: str
    ) -> None:
        super().__init__(name, settings, port, paths)
        self.component = component

    def workload(self) -> list[str]:
        """The stand-in's own command line."""
        raise NotImplementedError

    def chart_values(self) -> dict[str, object]:
        return {}

    def serving(self) -> bool:
        """Whether it does its job for the cluster now (the local health gate waits for it)."""
        return self.healthy()

    def command(self) -> list[str]:
        loop = (
            'while :; do "$@"; echo "$0 exited with status $?; restarting in '
            f'{self.RESTART_DELAY_SECONDS}s"; sleep {self.RESTART_DELAY_SECONDS}; done'
        )
        return ["sh", "-c", loop, self.name, *self.workload()]


class CertManagerController(HostWorkload):
    def workload(self) -> list[str]:
        return [
            tool("cert-manager-controller"),
            f"--kubeconfig={self.paths.kubeconfig}",
            "--cluster-resource-namespace=cert-manager",
            f"--healthz-listen-address=127.0.0.1:{self.port}",
        ]


class CertManagerWebhook(HostWorkload):
    """Serves on ``port`` with a certificate from its dynamic CA (the Secret the chart's webhook
    configurations name for cainjector), for the name the API server calls: localhost."""

    def workload(self) -> list[str]:
        return [
            tool("cert-manager-webhook"),
            f"--kubeconfig={self.paths.kubeconfig}",
            f"--secure-port={self.port}",
            f"--healthz-port={self.port + 1}",
            "--metrics-listen-address=0",  # as the chart's; 9402 on the host is anyone's
            "--dynamic-serving-ca-secret-namespace=cert-manager",
            "--dynamic-serving-ca-secret-name=cert-manager-webhook-ca",
            "--dynamic-serving-dns-names=localhost",
        ]

    def chart_values(self) -> dict[str, object]:
        return {"webhook": {"url": {"host": f"localhost:{self.port}"}}}

    def serving(self) -> bool:
        """It completes a TLS handshake (it makes its CA, then its certificate, only once the
        chart's namespace exists, retrying every 10 s) and cainjector has given the webhook
        configurations that CA: only then does the API server's call succeed."""
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            with context.wrap_socket(socket.create_connection(("127.0.0.1", self.port), 3)):
                pass
        except OSError:
            return False
        bundles = subprocess.run(
            [tool("kubectl"), f"--kubeconfig={self.paths.kubeconfig}", "get",
             "validatingwebhookconfiguration,mutatingwebhookconfiguration",
             "-l", "app.kubernetes.io/instance=cert-manager",
             "-o", "jsonpath={range .items[*]}{.webhooks[0].clientConfig.caBundle}{'\\n'}{end}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        lines = bundles.stdout.splitlines()
        return bundles.returncode == 0 and len(lines) == 2 and all(lines)


class CertManagerCAInjector(HostWorkload):
    def workload(self) -> list[str]:
        return [
            tool("cert-manager-cainjector"),
            f"--kubeconfig={self.paths.kubeconfig}",
            f"--health-probe-bind-address=127.0.0.1:{self.port}",
        ]


class VaultServer(HostWorkload):
    """A real `vault server` (not dev mode: init and unseal are real) with file storage under
    the cluster's directory and a TLS listener; provisioning/vault.py bootstraps it. Its
    component is the release that must reach it: platform-secrets' ClusterSecretStore."""

    @property
    def home(self) -> Path:
        return self.paths.root / "vault"

    def prepare(self) -> None:
        cert, key, _ = local_listener_certificate(self.paths.pki, self.home / "tls")
        (self.home / "vault.hcl").write_text(local_config(self.home, self.port, cert, key))

    def workload(self) -> list[str]:
        return [tool("vault"), "server", f"-config={self.home / 'vault.hcl'}"]

    def chart_values(self) -> dict[str, object]:
        # Its certificate is signed by the cluster's CA (vault.local_listener_certificate), so
        # the ClusterSecretStore trusts that CA, which the cluster publishes (CA_SECRET).
        return {
            "vault": {
                "server": f"https://localhost:{self.port}",
                "caSecret": {"name": CA_SECRET[1], "namespace": CA_SECRET[0]},
            }
        }


class ExternalSecretsController(HostWorkload):
    """External Secrets Operator's controller, with only the reconcilers platform-secrets uses
    (the others watch kinds this release's CRDs do not serve at its API versions)."""

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "KUBECONFIG": str(self.paths.kubeconfig)}

    def healthy(self) -> bool:
        """Supervised: it exits (and is restarted) until the external-secrets release's CRDs
        exist, and opens its metrics port only then; a cluster without them is healthy too."""
        if self.pid() is None:
            return False
        return _port_open(self.port) or self._crds_absent()

    def _crds_absent(self) -> bool:
        result = subprocess.run(
            [tool("kubectl"), f"--kubeconfig={self.paths.kubeconfig}", "get", "crd",
             "externalsecrets.external-secrets.io", "--ignore-not-found", "-o", "name"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return result.returncode == 0 and not result.stdout.strip()

    def workload(self) -> list[str]:
        return [
            tool("external-secrets"),
            f"--metrics-addr=127.0.0.1:{self.port}",
            "--enable-cluster-external-secret-reconciler=false",
            "--enable-push-secret-reconciler=false",
            "--enable-cluster-push-secret-reconciler=false",
        ]


class LocalCluster:
    """The control plane's processes, started in dependency order and stopped in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = Paths(settings.data_root / "cluster")
        port = settings.cluster_api_port
        self.parts: list[_Part] = [
            Etcd("etcd", settings, port + 1, self.paths),
            ApiServer("kube-apiserver", settings, port, self.paths),
            ControllerManager("kube-controller-manager", settings, port + 3, self.paths),
            Scheduler("kube-scheduler", settings, port + 4, self.paths),
            Kwok("kwok", settings, port + 5, self.paths),
        ]
        # The stand-ins' ports: the webhook's two (TLS, healthz), then one each for the
        # controller's and cainjector's health, Vault's two (settings.vault_port: API, cluster)
        # and External Secrets' metrics; first + 7 .. PORT_SPAN - 1 are free for more.
        first = port + STAND_IN_PORTS
        self.stand_ins: list[HostWorkload] = [
            CertManagerWebhook("cert-manager-webhook", settings, first, self.paths, "cert-manager"),
            CertManagerController(
                "cert-manager-controller", settings, first + 2, self.paths, "cert-manager"
            ),
            CertManagerCAInjector(
                "cert-manager-cainjector", settings, first + 3, self.paths, "cert-manager"
            ),
        ]
        self.stand_ins += [
            VaultServer("vault", settings, settings.vault_port, self.paths, "platform-secrets"),
            ExternalSecretsController(
                "external-secrets", settings, first + 6, self.paths, "external-secrets"
            ),
        ]
        self.parts += self.stand_ins

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.settings.cluster_api_port}"

    @property
    def admin_kubeconfig(self) -> Path:
        """Where the `kubernetes_local` connection and helm of the `local` environment read it."""
        return self.settings.provisioning_dir / "local" / "kubeconfig"

    def up(self, progress: Callable[[str], None] = lambda _: None) -> dict[str, str]:
        for binary in [part.name for part in self.parts] + ["kubectl"]:
            tool(binary)  # all built, or nothing starts (a stand-in's part is named as its binary)
        self.paths.root.mkdir(parents=True, exist_ok=True)
        token = ensure_pki(self.paths)
        config = kubeconfig(self.server, self.paths.pki / "ca.crt", token)
        for path in (self.paths.kubeconfig, self.admin_kubeconfig):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(config)
            path.chmod(0o600)
        self._write_chart_values()
        results = {}
        for part in self.parts:
            progress(f"starting {part.name}")
            results[part.name] = part.start()
        progress("registering the simulated nodes")
        self._apply(self._objects())
        progress("waiting for the nodes to be Ready")
        self.wait_until_ready()
        return results

    def _write_chart_values(self) -> None:
        """The values each component's release needs for its stand-ins, where the provisioning
        flow of the local environment adds them (host_values_file)."""
        components = {s.component for s in self.stand_ins}
        for component in components:
            values: dict[str, object] = merge_values(
                [s.chart_values() for s in self.stand_ins if s.component == component]
            )
            path = host_values_file(self.settings, "local", component)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=2) + "\n")

    def not_serving(self, components: list[str], timeout: float = 120.0) -> list[str]:
        """The stand-ins of ``components`` still not serving after ``timeout`` (none: all are)."""
        deadline = time.monotonic() + timeout
        while waiting := [
            s.name for s in self.stand_ins if s.component in components and not s.serving()
        ]:
            if time.monotonic() >= deadline:
                break
            time.sleep(2)
        return waiting

    def down(self) -> dict[str, str]:
        return {part.name: part.stop() for part in reversed(self.parts)}

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool("kubectl"), f"--kubeconfig={self.paths.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def _apply(self, objects: list[dict[str, object]]) -> None:
        result = self.kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )
        if result.returncode:
            raise StackError(
                f"kubectl apply of the cluster's objects failed: {result.stderr.strip()}"
            )

    def _objects(self) -> list[dict[str, object]]:
        nodes: list[dict[str, object]] = [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        **labels,
                    },
                },
                "status": {"capacity": NODE_CAPACITY, "allocatable": NODE_CAPACITY},
            }
            for name, labels in NODES.items()
        ]
        # kwok's own class (its stage binds claims that name it at once). Not the default: that
        # is local-path, from the local-path-provisioner component, as on a K3s environment;
        # applying it without the annotation takes the default away from clusters made before.
        storage_class: dict[str, object] = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": "kwok-volume"},
            "provisioner": "kwok.x-k8s.io/volume",
            "volumeBindingMode": "Immediate",
            "reclaimPolicy": "Delete",
        }
        ca_secret: dict[str, object] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"namespace": CA_SECRET[0], "name": CA_SECRET[1]},
            "stringData": {"ca.crt": (self.paths.pki / "ca.crt").read_text()},
        }
        return [*nodes, storage_class, ca_secret]

    def nodes_ready(self) -> tuple[int, int]:
        result = self.kubectl("get", "nodes", "-o", "json")
        if result.returncode:
            return 0, len(NODES)
        items = json.loads(result.stdout)["items"]
        ready = sum(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (n.get("status") or {}).get("conditions") or []
            )
            for n in items
        )
        return ready, len(NODES)

    def wait_until_ready(self, timeout: float = 180.0) -> None:
        """The API ready, every node Ready and the default ServiceAccount made (the controllers
        run): pods can then be created and scheduled."""
        api = self.parts[1]
        assert isinstance(api, ApiServer)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, total = self.nodes_ready()
            if (
                api.ready()
                and ready == total
                and not self.kubectl("get", "serviceaccount", "default").returncode
            ):
                return
            time.sleep(1)
        raise StackError(
            f"the local cluster is not ready after {timeout:.0f}s ({self.nodes_ready()[0]}/"
            f"{len(NODES)} nodes Ready); see the logs in {self.settings.logs_dir}/cluster-*.log"
        )

    def status(self) -> list[tuple[str, str, int | None, str, Path]]:
        rows = []
        for part in self.parts:
            pid = part.pid()
            state = "healthy" if part.healthy() else ("starting/unhealthy" if pid else "down")
            rows.append((part.name, state, pid, part.url, part.log_file))
        return rows
