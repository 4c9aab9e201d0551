"""Where every service's connection details come from: one resolver per service.

An Airflow task names its connection (a conn_id, e.g. ``"kafka_default"``) and reads nothing
else: Airflow resolves it (``AIRFLOW_CONN_*`` variables, the secrets backend such as Vault, the
metadata database), so a password rotated there reaches the task's next run. Everything outside
Airflow (the CLI, notebooks, benchmarks) passes its :class:`Settings` instead, which render the
same connections (``Settings.connections()``, what ``adplatform settings --airflow-env``
exports). Either way the resolver gets one :class:`Connection` and parses it the same way.

The choice is the caller's, by the argument's type, not guessed from the environment: a DAG's
task passes the conn_id, and hands what it resolved down to the lakehouse code, which imports no
Airflow. Airflow is imported here only when a conn_id is resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from adplatform.settings import Connection, Settings

KAFKA = "kafka_default"
CLICKHOUSE = "clickhouse_default"
MLFLOW = "mlflow_default"
SPARK_CONNECT = "spark_connect_default"

# librdkafka options that take a function: a connection can only name one as a string, which
# the Kafka provider's hooks import from an allow-list; the platform's clients set their own.
KAFKA_CALLBACKS = ("error_cb", "throttle_cb", "stats_cb", "log_cb", "oauth_cb", "on_commit")

Source = Settings | str
"""Settings (outside Airflow) or the conn_id of an Airflow connection (in a task)."""


class ConnectionConfigError(ValueError):
    """A connection lacks what its service needs; the message names it and the fix."""


def connection(source: Source, default_conn_id: str) -> tuple[str, Connection]:
    """The connection's name and fields: Airflow's connection ``source`` (a conn_id), or the
    settings' rendering of ``default_conn_id``."""
    if isinstance(source, str):
        from airflow.sdk import BaseHook

        found = BaseHook.get_connection(source)
        return source, Connection(
            conn_type=found.conn_type or "",
            host=found.host,
            port=found.port,
            login=found.login,
            password=found.password,
            extra=found.extra_dejson,
        )
    return default_conn_id, source.connections()[default_conn_id]


def _origin(source: Source, conn_id: str) -> str:
    if isinstance(source, str):
        return f"Airflow connection {conn_id!r}"
    return f"the settings' {conn_id} (ADP_* variables)"


def kafka_client_config(source: Source) -> dict[str, Any]:
    """The librdkafka settings every producer, consumer and admin client starts from: the
    connection's extra, as the Kafka provider's hooks read it."""
    conn_id, found = connection(source, KAFKA)
    config = dict(found.extra)
    if not config.get("bootstrap.servers"):
        raise ConnectionConfigError(
            f"{_origin(source, conn_id)} has no 'bootstrap.servers' in its extra: set it to the "
            "brokers' host:port list (see `adplatform settings --airflow-env`)"
        )
    named = [key for key in KAFKA_CALLBACKS if isinstance(config.get(key), str)]
    if named:
        raise ConnectionConfigError(
            f"{_origin(source, conn_id)} names callbacks in its extra ({', '.join(named)}): "
            "the platform's Kafka clients set their own; remove them from the extra"
        )
    return config


@dataclass(frozen=True)
class ClickHouseTarget:
    """A DSN (``chdb:///path`` or ``http(s)://host:port``) and, for a server, its credentials."""

    dsn: str
    user: str = "default"
    password: str = field(default="", repr=False)


def clickhouse_target(source: Source) -> ClickHouseTarget:
    conn_id, found = connection(source, CLICKHOUSE)
    dsn = found.extra.get("dsn")
    if not dsn:
        raise ConnectionConfigError(
            f"{_origin(source, conn_id)} has no 'dsn' in its extra: set it to chdb:///path or "
            "http(s)://host:port (see `adplatform settings --airflow-env`)"
        )
    return ClickHouseTarget(str(dsn), found.login or "default", found.password or "")


def mlflow_tracking_uri(source: Source) -> str:
    """The tracking server's URI: the connection's host (an HTTP connection holding the URI)."""
    conn_id, found = connection(source, MLFLOW)
    uri = found.host or ""
    if urlparse(uri).scheme not in ("http", "https") or not urlparse(uri).hostname:
        raise ConnectionConfigError(
            f"{_origin(source, conn_id)} has no tracking URI in its host ({uri!r}): set the "
            "host to http(s)://host:port of the MLflow server"
        )
    return uri


def spark_connect_url(source: Source) -> str:
    """The Spark Connect server's ``sc://`` URL. An Airflow connection is read by the Spark
    provider's SparkConnectHook (its host, port, user and token fields); the settings render
    that connection from ``ADP_SPARK_CONNECT_URL``, which is the URL itself."""
    if isinstance(source, str):
        from airflow.providers.apache.spark.hooks.spark_connect import SparkConnectHook

        return str(SparkConnectHook(source).get_connection_url())
    return source.spark_connect_url
