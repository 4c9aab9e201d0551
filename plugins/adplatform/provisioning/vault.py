"""Vault's bootstrap: what the provision DAG does once Vault's wave is healthy and before
platform-secrets (whose ExternalSecrets read Vault) is installed.

Each step looks before it writes, so a re-run changes nothing and a run killed between two steps
is finished by the next: initialise (if not initialised), unseal (if sealed), a KV v2 engine at
the path platform-secrets' values name, the read-only policy External Secrets reads with, the
Kubernetes auth method and its role bound to External Secrets' service account, and every
Secret the platform-secrets values list seeded with generated values (a value already in Vault is
never overwritten). The report says what was created and what was found; it never holds a key
or a token.

Where the unseal keys and the root token live, per environment:

- ``local``: a 0600 file each under ``<data root>/provisioning/local`` (a 0700 directory). The
  local cluster is one developer's, throwaway, on one machine: its keys beside its kubeconfig
  are no weaker than the kubeconfig itself, and a re-run (or a restarted, sealed Vault) needs
  them without anybody at hand.
- ``staging``/``production``: never on this machine. Their Vault is initialised once by the
  operators with ``vault operator init -pgp-keys=...`` (each share encrypted to one named
  operator's PGP key, the root token to the first) and unsealed by them; the bootstrap refuses
  to initialise or unseal those, and configures with the token of the ``vault_<environment>``
  connection (the secrets backend's), which the operators revoke after the run.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from adplatform.provisioning.manifest import Manifest, merge_values
from adplatform.settings import Settings

if TYPE_CHECKING:
    import hvac

COMPONENT = "platform-secrets"
KEY_SHARES, KEY_THRESHOLD = 5, 3
POLICY = "external-secrets-read"
AUTH_PATH = "kubernetes"  # the mount path the ClusterSecretStore logs in at (platform-secrets)
# A Vault key path: lowercase segments of a-z, 0-9, '-' and '_', separated by single '/'.
_KEY_PATH = re.compile(r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*$")
_FIELD = re.compile(r"^[-._a-zA-Z0-9]+$")  # a Secret's data key
# How the bootstrap makes a field's first value, by the kind platform-secrets' values give it.
# `manual` is a value only its owner can give (an OAuth client GitLab issues, a connection URI
# naming a database's user): never generated, reported as awaiting until an operator writes it.
GENERATORS: dict[str, Callable[[], str] | None] = {
    "password": lambda: secrets.token_urlsafe(32),
    "fernet": lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    "hex": lambda: secrets.token_hex(32),
    "manual": None,
}
# The local stand-in's server token for Vault's TokenReview calls (a TokenRequest of the vault
# chart's service account, which its ClusterRoleBinding to system:auth-delegator allows).
REVIEWER_TOKEN_SECONDS = 365 * 24 * 3600


class BootstrapError(RuntimeError):
    """Bad input or a state the bootstrap must not change; the message says what and how to fix."""


@dataclass(frozen=True)
class SeededSecret:
    name: str
    namespace: str
    vault_key: str
    fields: dict[str, str]  # the Secret's key -> its kind (GENERATORS)


@dataclass(frozen=True)
class Plan:
    """What the bootstrap makes, read from the platform-secrets values of one environment."""

    mount: str  # the KV v2 engine's path
    role: str
    service_account: str
    service_account_namespace: str
    secrets: tuple[SeededSecret, ...]


def _fields_problems(kinds: object, at: str) -> list[str]:
    """``fields`` maps a kind (GENERATORS) to the Secret's keys made that way."""
    if not isinstance(kinds, dict) or not kinds:
        return [f"{at}.fields: map a kind ({', '.join(GENERATORS)}) to the Secret's keys"]
    problems, seen = [], set()
    for kind, names in kinds.items():
        if kind not in GENERATORS:
            problems.append(f"{at}.fields.{kind}: not a kind: use one of {', '.join(GENERATORS)}")
        for name in names if isinstance(names, list) else [names]:
            if not isinstance(name, str) or not _FIELD.match(name) or name in seen:
                problems.append(
                    f"{at}.fields.{kind}: {name!r} is not a Secret key of its own (letters, "
                    "digits, - . _; each key under one kind)"
                )
            seen.add(name)
    return problems


def load_plan(manifest: Manifest, environment: str) -> Plan:
    """The platform-secrets values merged as helm merges them (the chart's defaults first);
    every entry checked before anything changes, the error naming the file and the key."""
    component = manifest.component(COMPONENT)
    chart = manifest.root / component.repository.removeprefix("file://") / component.chart
    files = component.values_files(environment, manifest.root)
    layers = [(f, yaml.safe_load(f.read_text()) or {}) for f in [chart / "values.yaml", *files]]
    values = merge_values([layer for _, layer in layers])
    where = next(
        (f for f, layer in reversed(layers) if "externalSecrets" in layer), files[0]
    ).relative_to(manifest.root)
    problems, seeded, keys = [], [], set()
    for i, entry in enumerate(values.get("externalSecrets") or []):
        key, kinds = entry.get("vaultKey", ""), entry.get("fields") or {}
        at = f"{where}: externalSecrets[{i}]"
        if not _KEY_PATH.match(key):
            problems.append(
                f"{at}.vaultKey {key!r} is not a Vault key path: use lowercase segments of "
                "a-z 0-9 - _ separated by single '/'"
            )
        elif key in keys:
            problems.append(f"{at}.vaultKey {key!r} is listed twice: one entry per key")
        keys.add(key)
        wrong = _fields_problems(kinds, at)
        problems += wrong
        fields = {} if wrong else {f: kind for kind, names in kinds.items() for f in names}
        seeded.append(SeededSecret(entry.get("name", ""), entry.get("namespace", ""), key, fields))
    if problems:
        raise BootstrapError("\n".join(problems))
    vault = values["vault"]
    return Plan(
        mount=vault["path"],
        role=vault["role"],
        service_account=vault["serviceAccount"]["name"],
        service_account_namespace=vault["serviceAccount"]["namespace"],
        secrets=tuple(seeded),
    )


class LocalKeys:
    """The local Vault's unseal keys and root token, each a 0600 file (see the module's doc)."""

    def __init__(self, settings: Settings) -> None:
        self.directory = settings.provisioning_dir / "local"
        self.keys_file = self.directory / "vault-unseal-keys.json"
        self.token_file = self.directory / "vault-root-token"

    def _write(self, path: Path, text: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        partial = path.with_suffix(".partial")
        partial.touch(mode=0o600)
        partial.write_text(text)
        partial.rename(path)

    def save(self, keys: list[str], root_token: str) -> None:
        self._write(self.keys_file, json.dumps({"keys_base64": keys}))
        self._write(self.token_file, root_token)

    def keys(self) -> list[str]:
        if not self.keys_file.exists():
            raise BootstrapError(
                f"Vault is sealed and its unseal keys are not in {self.keys_file}: the local "
                "Vault was initialised elsewhere; `adplatform cluster down` and remove "
                "<data root>/cluster/vault to start it afresh"
            )
        return list(json.loads(self.keys_file.read_text())["keys_base64"])


def policy_text(mount: str) -> str:
    """Read-only on the KV v2 engine's data and metadata: all External Secrets needs."""
    return (
        f'path "{mount}/data/*" {{\n  capabilities = ["read"]\n}}\n'
        f'path "{mount}/metadata/*" {{\n  capabilities = ["read", "list"]\n}}\n'
    )


def initialise(client: hvac.Client, environment: str, keys: LocalKeys | None) -> str:
    if client.sys.is_initialized():
        return "found"
    if keys is None:
        raise BootstrapError(
            f"{environment}'s Vault is not initialised: its operators initialise it with "
            "`vault operator init -pgp-keys=...` (infra/README.md, Vault), then re-run"
        )
    result = client.sys.initialize(secret_shares=KEY_SHARES, secret_threshold=KEY_THRESHOLD)
    # Vault shows the keys once: they are on disk before anything else happens.
    keys.save(result["keys_base64"], result["root_token"])
    return "created"


def unseal(client: hvac.Client, environment: str, keys: LocalKeys | None) -> str:
    if not client.sys.is_sealed():
        return "found"
    if keys is None:
        raise BootstrapError(
            f"{environment}'s Vault is sealed: its operators unseal it "
            "(`vault operator unseal`, a threshold of them), then re-run"
        )
    client.sys.submit_unseal_keys(keys.keys())
    if client.sys.is_sealed():
        raise BootstrapError(f"Vault is still sealed with the keys of {keys.keys_file}")
    return "created"


def kv_engine(client: hvac.Client, mount: str) -> str:
    mounted = client.sys.list_mounted_secrets_engines()["data"].get(f"{mount}/")
    if mounted is None:
        client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
        return "created"
    if mounted["type"] != "kv" or (mounted.get("options") or {}).get("version") != "2":
        raise BootstrapError(
            f"Vault's {mount}/ is a {mounted['type']} engine, not KV v2: platform-secrets' "
            "vault.path must name a KV v2 engine (or free that path)"
        )
    return "found"


def policy(client: hvac.Client, mount: str) -> str:
    wanted = policy_text(mount)
    if POLICY in client.sys.list_policies()["data"]["policies"]:
        if client.sys.read_policy(POLICY)["data"]["rules"] == wanted:
            return "found"
        client.sys.create_or_update_policy(POLICY, wanted)
        return "updated"
    client.sys.create_or_update_policy(POLICY, wanted)
    return "created"


@dataclass(frozen=True)
class KubernetesAuth:
    """What Vault's Kubernetes auth method checks tokens against. In a cluster Vault reads its
    pod's service-account token and CA; the local stand-in runs on the host, so it is given the
    API server's address and CA and a reviewer token."""

    host: str
    ca_cert: str | None = None
    reviewer_token: str | None = None


def local_kubernetes_auth(api_client: Any, core: Any) -> KubernetesAuth:
    """The local cluster's API server and CA, and a token of the vault chart's service account
    for the stand-in's TokenReview calls (the chart binds it to system:auth-delegator)."""
    from kubernetes.client import AuthenticationV1TokenRequest, V1TokenRequestSpec

    request = AuthenticationV1TokenRequest(
        spec=V1TokenRequestSpec(audiences=[], expiration_seconds=REVIEWER_TOKEN_SECONDS)
    )
    token = core.create_namespaced_service_account_token("vault", "vault", request).status.token
    configuration = api_client.configuration
    return KubernetesAuth(
        host=configuration.host,
        ca_cert=Path(configuration.ssl_ca_cert).read_text(),
        reviewer_token=token,
    )


def kubernetes_auth(client: hvac.Client, auth: KubernetesAuth) -> str:
    from hvac.exceptions import InvalidPath

    status = "found"
    if f"{AUTH_PATH}/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("kubernetes", path=AUTH_PATH)
        status = "created"
    try:
        current = client.auth.kubernetes.read_config(mount_point=AUTH_PATH) or {}
    except InvalidPath:  # enabled, never configured
        current = {}
    if (
        current.get("kubernetes_host") == auth.host
        and (current.get("kubernetes_ca_cert") or None) == auth.ca_cert
        and bool(current.get("token_reviewer_jwt_set")) == bool(auth.reviewer_token)
    ):
        return status
    client.auth.kubernetes.configure(
        kubernetes_host=auth.host,
        kubernetes_ca_cert=auth.ca_cert,
        token_reviewer_jwt=auth.reviewer_token,
        mount_point=AUTH_PATH,
    )
    return "created" if status == "created" else "updated"


def role(client: hvac.Client, plan: Plan) -> str:
    from hvac.exceptions import InvalidPath

    wanted = {
        "bound_service_account_names": [plan.service_account],
        "bound_service_account_namespaces": [plan.service_account_namespace],
        "token_policies": [POLICY],
    }
    try:
        current = client.auth.kubernetes.read_role(plan.role, mount_point=AUTH_PATH)
    except InvalidPath:
        current = None
    if current is not None and all(current.get(k) == v for k, v in wanted.items()):
        return "found"
    client.auth.kubernetes.create_role(
        plan.role,
        bound_service_account_names=wanted["bound_service_account_names"],
        bound_service_account_namespaces=wanted["bound_service_account_namespaces"],
        policies=[POLICY],
        ttl="1h",
        mount_point=AUTH_PATH,
    )
    return "created" if current is None else "updated"


def seed(client: hvac.Client, plan: Plan, secret: SeededSecret) -> str:
    """Generated values for the fields the key lacks; a field Vault has keeps its value, and a
    manual one is left to its owner. The write is check-and-set on the version read, so a
    concurrent writer is never overwritten."""
    from hvac.exceptions import InvalidPath

    kv = client.secrets.kv.v2
    try:
        current = kv.read_secret_version(
            secret.vault_key, mount_point=plan.mount, raise_on_deleted_version=True
        )["data"]
        existing, version = current["data"] or {}, current["metadata"]["version"]
    except InvalidPath:
        existing, version = {}, 0
    missing = {f: GENERATORS[kind] for f, kind in secret.fields.items() if f not in existing}
    generated = {f: make() for f, make in missing.items() if make is not None}
    awaiting = sorted(set(missing) - set(generated))
    done = []
    if generated:
        values = {**existing, **generated}
        kv.create_or_update_secret(secret.vault_key, values, cas=version, mount_point=plan.mount)
        done.append("created" if version == 0 else "completed")
    if awaiting:
        verb = "patch" if existing or generated else "put"  # patch needs the key to exist
        given = " ".join(f"{f}=..." for f in awaiting)
        done.append(
            f"awaiting {', '.join(awaiting)}: set by hand with "
            f"`vault kv {verb} -mount={plan.mount} {secret.vault_key} {given}`"
        )
    return "; ".join(done) or "found"


def bootstrap(
    client: hvac.Client,
    plan: Plan,
    auth: KubernetesAuth,
    environment: str,
    keys: LocalKeys | None,
) -> dict[str, Any]:
    """Every step in order; ``client`` is unauthenticated until the token is at hand (the
    local root token once initialised, else the connection's token it already holds)."""
    report: dict[str, Any] = {
        "initialised": initialise(client, environment, keys),
        "unsealed": unseal(client, environment, keys),
    }
    if keys is not None:
        client.token = keys.token_file.read_text().strip()
    report["kv_engine"] = kv_engine(client, plan.mount)
    report["policy"] = policy(client, plan.mount)
    report["kubernetes_auth"] = kubernetes_auth(client, auth)
    report["role"] = role(client, plan)
    report["secrets"] = {s.vault_key: seed(client, plan, s) for s in plan.secrets}
    return report


# The local stand-in: a real `vault server` (file storage, TLS listener) on this machine.


def local_config(data_dir: Path, port: int, cert: Path, key: Path) -> str:
    return f"""ui = false
disable_mlock = true
api_addr = "https://127.0.0.1:{port}"
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{port + 1}"
  tls_cert_file   = "{cert}"
  tls_key_file    = "{key}"
  tls_min_version = "tls13"
}}
storage "file" {{
  path = "{data_dir / "data"}"
}}
"""


def local_listener_certificate(pki: Path, into: Path) -> tuple[Path, Path, Path]:
    """The stand-in's serving certificate (cert, key, CA), for 127.0.0.1 and the names the
    cluster gives Vault's Service, signed by the local cluster's own CA: the stand-in starts
    with the cluster, before cert-manager's platform-ca exists to sign it."""
    cert, key, ca = into / "tls.crt", into / "tls.key", pki / "ca.crt"
    if cert.exists():
        return cert, key, ca
    into.mkdir(parents=True, exist_ok=True)
    names = "IP:127.0.0.1,DNS:localhost,DNS:vault,DNS:vault.vault,DNS:vault.vault.svc"
    (into / "tls.ext").write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=vault",
            "-keyout", str(key), "-out", str(into / "tls.csr"))  # fmt: skip
    openssl("x509", "-req", "-in", str(into / "tls.csr"), "-CA", str(ca), "-CAkey",
            str(pki / "ca.key"), "-CAcreateserial", "-days", "825", "-extfile",
            str(into / "tls.ext"), "-out", str(cert.with_suffix(".partial")))  # fmt: skip
    cert.with_suffix(".partial").rename(cert)
    return cert, key, ca
