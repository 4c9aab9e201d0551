"""One resolver per service: an Airflow connection and the settings' rendering of it mean the
same thing (adplatform.connections)."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlparse

import pytest

from adplatform.connections import (
    CLICKHOUSE,
    KAFKA,
    ConnectionConfigError,
    clickhouse_target,
    kafka_client_config,
    mlflow_tracking_uri,
    spark_connect_url,
)
from adplatform.settings import load_settings


@pytest.fixture
def production(tmp_path):
    return load_settings(
        data_root=tmp_path,
        kafka_bootstrap="redpanda-0.redpanda:9093,redpanda-1.redpanda:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_username="ingest",
        kafka_password="s3cret",
        clickhouse_dsn="https://clickhouse.example.com:8443",
        clickhouse_user="reporter",
        clickhouse_password="ch-s3cret",
        mlflow_tracking_uri="https://mlflow.example.com",
        spark_connect_url="sc://spark-connect.spark:15002",
    )


def test_airflow_resolves_each_exported_connection_as_the_cli_resolves_the_settings(
    production, monkeypatch
):
    for name, value in production.airflow_connections().items():
        monkeypatch.setenv(name, value)

    assert kafka_client_config("kafka_default") == kafka_client_config(production)
    assert kafka_client_config(production)["sasl.password"] == "s3cret"
    assert clickhouse_target("clickhouse_default") == clickhouse_target(production)
    assert clickhouse_target(production).password == "ch-s3cret"
    assert mlflow_tracking_uri("mlflow_default") == "https://mlflow.example.com"
    assert mlflow_tracking_uri(production) == "https://mlflow.example.com"
    from_airflow = urlparse(spark_connect_url("spark_connect_default"))
    from_settings = urlparse(spark_connect_url(production))
    assert (from_airflow.hostname, from_airflow.port) == (from_settings.hostname, 15002)


def test_a_task_reads_the_connection_not_the_settings(production, monkeypatch):
    connection = production.connections()[CLICKHOUSE]
    rotated = replace(connection, password="rotated")
    monkeypatch.setenv("AIRFLOW_CONN_CLICKHOUSE_DEFAULT", rotated.to_json())

    assert clickhouse_target("clickhouse_default").password == "rotated"
    assert clickhouse_target(production).password == "ch-s3cret"


def test_a_connection_missing_what_its_service_needs_is_refused_by_name(production, monkeypatch):
    kafka = production.connections()[KAFKA]
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", replace(kafka, extra={}).to_json())
    with pytest.raises(ConnectionConfigError, match=r"'kafka_default' has no 'bootstrap\.servers'"):
        kafka_client_config("kafka_default")
    named = replace(kafka, extra=kafka.extra | {"oauth_cb": "some.module.token"})
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", named.to_json())
    with pytest.raises(ConnectionConfigError, match=r"names callbacks in its extra \(oauth_cb\)"):
        kafka_client_config("kafka_default")
    clickhouse = replace(production.connections()[CLICKHOUSE], extra={})
    monkeypatch.setenv("AIRFLOW_CONN_CLICKHOUSE_DEFAULT", clickhouse.to_json())
    with pytest.raises(ConnectionConfigError, match="'clickhouse_default' has no 'dsn'"):
        clickhouse_target("clickhouse_default")
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", '{"conn_type": "http", "host": "mlflow"}')
    with pytest.raises(ConnectionConfigError, match="'mlflow_default' has no tracking URI"):
        mlflow_tracking_uri("mlflow_default")


def test_each_environment_s_vault_connection_reaches_its_vault(production, monkeypatch):
    """The local stand-in over TLS checked against the local cluster's CA; staging's and
    production's at the ingress host their Vault values give it."""
    import yaml
    from airflow.providers.hashicorp.hooks.vault import VaultHook

    from adplatform.settings import REPO_ROOT, VAULT_INGRESS_HOSTS

    for name, value in production.airflow_connections().items():
        monkeypatch.setenv(name, value)
    local = VaultHook(vault_conn_id="vault_local", token_path="unused").vault_client
    assert local.url == f"https://127.0.0.1:{production.vault_port}"
    assert local.kwargs["verify"] == str(production.data_root / "cluster" / "pki" / "ca.crt")
    for environment, host in VAULT_INGRESS_HOSTS.items():
        values = REPO_ROOT / "helm_values" / "vault" / f"{environment}.yaml"
        ingress = (yaml.safe_load(values.read_text()) or {}).get("server", {}).get("ingress")
        if ingress is None:  # production's overlay is empty: the base values are production's
            values = values.with_name("values.yaml")
            ingress = yaml.safe_load(values.read_text())["server"]["ingress"]
        assert [h["host"] for h in ingress["hosts"]] == [host], values
        hook = VaultHook(vault_conn_id=f"vault_{environment}", token_path="unused")
        assert hook.vault_client.url == f"https://{host}:443"
