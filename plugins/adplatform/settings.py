"""One typed configuration for every component, read from ``ADP_*`` environment variables.

Local defaults run the whole platform on one machine (a Kafka broker, chDB, an MLflow server and
Airflow, all under one data root); production sets the same variables to point at Redpanda, a
ClickHouse server, a remote MLflow and Spark on Kubernetes. Secrets come from the environment
(or a secrets backend in production), never from this repository. Airflow tasks take their
connection details from Airflow's connections instead, which these settings render
(:meth:`Settings.connections`); ``adplatform.connections`` resolves either.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ADP_"


def _repo_root() -> Path:
    """The checkout whose top-level dags/, infra/ and helm_values/ the local stack and the
    provisioning steps read: ADP_REPO_ROOT, else the checkout this package is installed from in
    editable mode (plugins/adplatform/ sits two levels below it), else the working directory."""
    configured = os.environ.get(f"{ENV_PREFIX}REPO_ROOT")
    if configured:
        return Path(configured).resolve()
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "infra" / "platform.yaml").is_file() else Path.cwd()


REPO_ROOT = _repo_root()


def repo_path(*parts: str) -> Path:
    """A file or folder of the checkout (REPO_ROOT), refused clearly when it is not there."""
    path = REPO_ROOT.joinpath(*parts)
    if not path.exists():
        raise SettingsError(
            f"{'/'.join(parts)} not found in {REPO_ROOT}: it is part of the adplatform checkout, "
            f"not of the installed package; run from the checkout or set {ENV_PREFIX}REPO_ROOT to it"
        )
    return path


# The environments of infra/platform.yaml (its loader checks that the two agree).
PLATFORM_ENVIRONMENTS = ("local", "staging", "production")
# Vault's ingress host on the clusters of staging and production (helm_values/vault/; a test
# holds them equal).
VAULT_INGRESS_HOSTS = {
    "staging": "vault.staging.adplatform.example.com",
    "production": "vault.adplatform.example.com",
}
# Under the lake root, the ingest commit logs (adplatform.ingest.commitlog); the leading '_'
# keeps them out of every table scan.
INGEST_DIR = "_ingest"


@dataclass(frozen=True)
class Connection:
    """The fields of an Airflow connection that the platform's clients read. Settings render
    one per service (what ``adplatform settings --airflow-env`` exports); Airflow resolves the
    same names from its connections (see ``adplatform.connections``)."""

    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The ``AIRFLOW_CONN_*`` form (Airflow's JSON connection format)."""
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})


class SettingsError(ValueError):
    """A setting is unknown or invalid; the message names it and says how to fix it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    profile: Literal["local", "production"] = "local"
    data_root: Path = Field(REPO_ROOT / ".data", description="Root of all local state and data")

    # Kafka API (Apache Kafka locally, Redpanda in production).
    kafka_port: int = Field(9092, ge=1, le=65535)
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    kafka_brokers: int = Field(
        1,
        ge=1,
        le=5,
        description="local KRaft nodes (broker and controller each); node i listens on "
        "<kafka_port>+i-1 and <kafka_controller_port>+i-1; 3 survives losing one",
    )
    kafka_bootstrap: str = Field("", description="host:port list; default every local node")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-256"
    kafka_username: str = ""
    kafka_password: SecretStr = SecretStr("")
    events_topic: str = "ad-events"
    dead_letter_topic: str = "ad-events-dlq"
    topic_partitions: int = Field(4, ge=1)
    topic_replication: int = Field(1, ge=1)
    topic_retention_hours: int = Field(168, ge=1)

    # ClickHouse: chdb:///path (embedded engine) locally, http(s)://host:port for a server.
    clickhouse_dsn: str = Field("", description="default chdb://<data_root>/clickhouse")
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = SecretStr("")

    # MLflow tracking server.
    mlflow_port: int = Field(5000, ge=1, le=65535)
    mlflow_tracking_uri: str = Field("", description="default http://127.0.0.1:<mlflow_port>")

    # CTR model (ml/): the training window and the promotion gate.
    ctr_lookback_days: int = Field(14, ge=1, description="Gold partitions one training run reads")
    ctr_min_improvement: float = Field(
        0.001, ge=0, lt=1, description="relative holdout log-loss gain needed over the champion"
    )
    ctr_max_calibration_deviation: float = Field(
        0.1, gt=0, description="allowed |predicted / observed holdout clicks - 1|"
    )

    # Airflow API server (UI + REST).
    airflow_port: int = Field(8080, ge=1, le=65535)

    # JupyterHub (the data scientists' notebooks): its proxy serves this loopback port; the
    # proxy's API and the hub itself take the next two.
    jupyterhub_port: int = Field(8000, ge=1, le=65533)

    # Spark: local[N] locally, k8s://https://... in production. The transform's jobs are clients
    # of one long-lived Spark Connect server (local stack: started on spark_connect_port with
    # spark_master); spark-submit, with a JVM of its own per job, is for batch backfills.
    spark_master: str = "local[2]"
    spark_driver_memory: str = "2g"
    spark_connect_port: int = Field(15002, ge=1, le=65535)
    spark_connect_url: str = Field(
        "", description="sc://host:port; default sc://127.0.0.1:<spark_connect_port>"
    )

    # Transform (Bronze → Silver → Gold). A Bronze partition (hour, event type) accepts events
    # ingested up to late_window after its first one; later arrivals stay in Bronze only, so
    # published hours become final. Clicks attribute to impressions and conversions to clicks
    # within their windows. A scheduled run's Bronze gate fails when the newest ingested event
    # is older than bronze_max_staleness (ingest stalled). Production: tune to the ad servers'
    # real delays and the attribution policy agreed with sales.
    transform_late_window_minutes: int = Field(240, ge=0)
    transform_click_window_minutes: int = Field(60, ge=1)
    transform_conversion_window_hours: int = Field(24, ge=1)
    transform_bronze_max_staleness_minutes: int = Field(180, ge=1)
    spark_shuffle_partitions: int = Field(8, ge=1, description="production: ~2-3x total cores")

    # Event validation limits shared by the generator, the ingest worker and the tests.
    max_event_bytes: int = Field(8192, ge=256)
    max_event_age_days: int = Field(14, ge=1)
    max_event_future_seconds: int = Field(3600, ge=0)

    # Ingest (events topic -> Bronze): workers in this consumer group share the partitions; a
    # batch (whichever limit comes first) becomes one commit, and its files, per partition. Larger
    # batches make fewer, bigger files; memory grows with them, never with the backlog.
    ingest_group_id: str = "adplatform-bronze-ingest"
    # Static group membership (production: the StatefulSet pod name): a restarted worker takes
    # its partitions back at once instead of after the session timeout. Empty: dynamic.
    ingest_instance_id: str = ""
    ingest_batch_events: int = Field(100_000, ge=1)
    ingest_batch_seconds: float = Field(10.0, gt=0)

    # The checkout (dags/, infra/, helm_values/); read once, at import, as REPO_ROOT.
    repo_root: Path = REPO_ROOT

    # Where failure alerts are POSTed (Slack-compatible JSON); empty: alerts are only logged.
    alert_webhook_url: SecretStr = SecretStr("")

    # Provisioning targets (SSH and Kubernetes); keys and kubeconfig by path, never inline. The
    # host, port and user are the `existing` servers'; servers Terraform creates name their own.
    ssh_host: str = "127.0.0.1"
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_user: str = "root"
    ssh_key_file: Path | None = None
    kubeconfig: Path | None = None
    # Upper bound on every `helm --wait` and health gate, in seconds; 0: each component's own
    # health timeout from the manifest. The simulated local cluster is ready in seconds.
    helm_wait_cap_seconds: int = Field(0, ge=0)
    # The local Kubernetes control plane (adplatform cluster up) serves its API on this loopback
    # port and takes the next fifteen for etcd, the controllers, kwok and the host stand-ins
    # (provisioning/cluster.py, PORT_SPAN).
    cluster_api_port: int = Field(6443, ge=1, le=65520)

    # Platform provisioning (infra/platform.yaml, dags/platform_*.py). Cloud credentials become the
    # hcloud_default / aws_default connections; in production they come from the secrets backend.
    platform_admin_cidrs: str = Field(
        "192.0.2.0/24", description="Comma-separated networks allowed to reach SSH and the K3s API"
    )
    # Where Helm charts come from: empty reads each component's upstream repository (production);
    # a directory of packaged charts (<chart>-<version>.tgz) or a chart repository URL replaces
    # them all (an air-gapped mirror; tests and CI use ../shared/charts).
    helm_chart_mirror: str = ""
    # Who may approve a provisioning or upgrade plan, as `name=id,...` (the id the Airflow auth
    # manager gives the user; FAB: its numeric id). The user who triggered a run is never asked.
    # The local stack sets it to its platform-admin users.
    platform_approvers: str = ""
    hcloud_token: SecretStr = SecretStr("")
    aws_access_key_id: str = ""
    aws_secret_access_key: SecretStr = SecretStr("")

    @field_validator("spark_connect_url")
    @classmethod
    def _spark_connect_url(cls, value: str) -> str:
        url = urlparse(value)
        if value and (url.scheme != "sc" or not url.hostname or url.path not in ("", "/")):
            raise ValueError(f"{value!r} is not a Spark Connect URL: use sc://host:port")
        return value

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        # Frozen model: derived defaults are filled in once, right after validation.
        derived = {
            "kafka_bootstrap": self.kafka_bootstrap
            or ",".join(f"127.0.0.1:{self.kafka_port + i}" for i in range(self.kafka_brokers)),
            "clickhouse_dsn": self.clickhouse_dsn or f"chdb://{self.clickhouse_dir}",
            "mlflow_tracking_uri": self.mlflow_tracking_uri
            or f"http://127.0.0.1:{self.mlflow_port}",
            "spark_connect_url": self.spark_connect_url
            or f"sc://127.0.0.1:{self.spark_connect_port}",
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        return self

    # Paths under the data root: one place names them all.
    @property
    def lake_root(self) -> Path:
        return self.data_root / "lake"

    @property
    def reference_dir(self) -> Path:
        """Reference (dimension) tables, one Parquet file each."""
        return self.lake_root / "reference"

    @property
    def transform_state_file(self) -> Path:
        return self.lake_root / "_state" / "transform.json"

    @property
    def transform_staging_dir(self) -> Path:
        """The transform's run areas (staged tables, summaries, plans)."""
        return self.lake_root / "_staging"

    @property
    def clickhouse_dir(self) -> Path:
        """The embedded ClickHouse engine's data (the local default DSN)."""
        return self.data_root / "clickhouse"

    @property
    def ml_work_dir(self) -> Path:
        """Training runs' work folders."""
        return self.data_root / "ml" / "work"

    @property
    def demo_dir(self) -> Path:
        return self.data_root / "demo"

    @property
    def pid_dir(self) -> Path:
        """The local stack's pid files."""
        return self.data_root / "run"

    @property
    def kafka_dir(self) -> Path:
        return self.data_root / "kafka"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_root / "mlflow"

    @property
    def airflow_dir(self) -> Path:
        """The local Airflow's home (its database, logs and users' passwords)."""
        return self.data_root / "airflow"

    @property
    def jupyterhub_dir(self) -> Path:
        return self.data_root / "jupyterhub"

    @property
    def quality_dir(self) -> Path:
        return self.data_root / "quality"

    @property
    def reports_dir(self) -> Path:
        return self.data_root / "reports"

    @property
    def serving_dir(self) -> Path:
        return self.data_root / "serving"

    @property
    def logs_dir(self) -> Path:
        return self.data_root / "logs"

    @property
    def provisioning_dir(self) -> Path:
        """Plans, state, kubeconfigs, provisioning keys and upgrade records, per environment."""
        return self.data_root / "provisioning"

    @property
    def vault_port(self) -> int:
        """The local cluster's Vault stand-in (provisioning/cluster.py): the eleventh port of
        the cluster's block, its cluster port the twelfth."""
        return self.cluster_api_port + 10

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def jupyterhub_url(self) -> str:
        return f"http://127.0.0.1:{self.jupyterhub_port}"

    def kafka_client_config(self) -> dict[str, str | int | float | bool]:
        """The librdkafka settings of the ``kafka_default`` connection this configuration
        renders; clients get them through ``adplatform.connections.kafka_client_config``."""
        config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL"):
            config |= {
                "sasl.mechanism": self.kafka_sasl_mechanism,
                "sasl.username": self.kafka_username,
                "sasl.password": self.kafka_password.get_secret_value(),
            }
        return config

    def connections(self) -> dict[str, Connection]:
        """This configuration as the Airflow connections the platform uses, by conn_id."""
        spark_connect = urlparse(self.spark_connect_url)
        connections: dict[str, dict[str, Any]] = {
            "kafka_default": {
                "conn_type": "kafka",
                "extra": self.kafka_client_config(),
            },
            "clickhouse_default": {
                "conn_type": "generic",
                "login": self.clickhouse_user,
                "password": self.clickhouse_password.get_secret_value(),
                "extra": {"dsn": self.clickhouse_dsn},
            },
            "spark_default": {
                "conn_type": "spark",
                "host": self.spark_master,
                "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"},
            },
            # The provider's SparkConnectHook form: host sc://<host>, the port apart.
            "spark_connect_default": {
                "conn_type": "spark_connect",
                "host": f"sc://{spark_connect.hostname}",
                "port": spark_connect.port,
            },
            "mlflow_default": {"conn_type": "http", "host": self.mlflow_tracking_uri},
            "ssh_default": {
                "conn_type": "ssh",
                "host": self.ssh_host,
                "port": self.ssh_port,
                "login": self.ssh_user,
                "extra": {"key_file": str(self.ssh_key_file)} if self.ssh_key_file else {},
            },
            "kubernetes_default": {
                "conn_type": "kubernetes",
                "extra": {"kube_config_path": str(self.kubeconfig)} if self.kubeconfig else {},
            },
            # One cluster per platform environment; the provision DAG writes its kubeconfig.
            **{
                f"kubernetes_{environment}": {
                    "conn_type": "kubernetes",
                    "extra": {
                        "kube_config_path": str(self.provisioning_dir / environment / "kubeconfig")
                    },
                }
                for environment in PLATFORM_ENVIRONMENTS
            },
            # Vault per environment, for the provision DAG's bootstrap (provisioning/vault.py):
            # the local stand-in, whose certificate the local cluster's CA signs; staging's and
            # production's at their ingress, the token set by the secrets backend.
            "vault_local": {
                "conn_type": "vault",
                "host": "127.0.0.1",
                "port": self.vault_port,
                "extra": {
                    "use_tls": True,
                    "client_kwargs": {"verify": str(self.data_root / "cluster" / "pki" / "ca.crt")},
                },
            },
            **{
                f"vault_{environment}": {
                    "conn_type": "vault",
                    "host": host,
                    "port": 443,
                    "extra": {"use_tls": True},
                }
                for environment, host in VAULT_INGRESS_HOSTS.items()
            },
        }
        # Cloud credentials only when set, so a secrets backend (or the metadata DB) can hold them.
        if self.hcloud_token.get_secret_value():
            connections["hcloud_default"] = {
                "conn_type": "generic",
                "password": self.hcloud_token.get_secret_value(),
            }
        if self.aws_access_key_id:
            connections["aws_default"] = {
                "conn_type": "aws",
                "login": self.aws_access_key_id,
                "password": self.aws_secret_access_key.get_secret_value(),
            }
        return {conn_id: Connection(**fields) for conn_id, fields in connections.items()}

    def airflow_connections(self) -> dict[str, str]:
        """:meth:`connections` as ``AIRFLOW_CONN_*`` environment variables."""
        return {
            f"AIRFLOW_CONN_{conn_id.upper()}": connection.to_json()
            for conn_id, connection in self.connections().items()
        }

    def environment(self) -> dict[str, str]:
        """This configuration as ``ADP_*`` variables, to hand to child processes."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
        return env


def _check_unknown_variables(environ: os._Environ[str] | dict[str, str]) -> None:
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    for variable in sorted(environ):
        if variable.startswith(ENV_PREFIX) and variable not in known:
            close = difflib.get_close_matches(variable, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "see `adplatform settings`."
            raise SettingsError(f"unknown setting {variable}: {hint}")


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment, refusing unknown or invalid ``ADP_*`` variables."""
    _check_unknown_variables(os.environ)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
            for e in error.errors()
        )
        raise SettingsError(f"invalid setting {problems}") from None


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
