import json

import pytest
from airflow.models.connection import Connection

from adplatform.settings import SettingsError, load_settings


def test_local_defaults_derive_from_data_root_and_ports(tmp_path):
    settings = load_settings(data_root=tmp_path, kafka_port=19999, mlflow_port=15555)
    assert settings.kafka_bootstrap == "127.0.0.1:19999"
    assert settings.clickhouse_dsn == f"chdb://{tmp_path / 'clickhouse'}"
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:15555"
    assert settings.lake_root == tmp_path / "lake"


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("ADP_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("ADP_CLICKHOUSE_DSN", "https://ch.example.com:8443")
    monkeypatch.setenv("ADP_TOPIC_PARTITIONS", "12")
    settings = load_settings()
    assert settings.clickhouse_dsn == "https://ch.example.com:8443"
    assert settings.topic_partitions == 12


def test_unknown_variable_is_refused_with_a_suggestion(monkeypatch):
    monkeypatch.setenv("ADP_KAFKA_PROT", "9092")
    with pytest.raises(
        SettingsError, match="unknown setting ADP_KAFKA_PROT: did you mean ADP_KAFKA_PORT"
    ):
        load_settings()


def test_invalid_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("ADP_KAFKA_PORT", "not-a-port")
    with pytest.raises(SettingsError, match="ADP_KAFKA_PORT"):
        load_settings()


def test_secrets_stay_out_of_the_repr(monkeypatch):
    monkeypatch.setenv("ADP_KAFKA_PASSWORD", "hunter2")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert settings.kafka_password.get_secret_value() == "hunter2"


def test_airflow_connections_parse_as_airflow_connections(tmp_path):
    settings = load_settings(data_root=tmp_path, kafka_port=19092)
    variables = settings.airflow_connections()
    expected = {
        "KAFKA_DEFAULT",
        "CLICKHOUSE_DEFAULT",
        "SPARK_DEFAULT",
        "SPARK_CONNECT_DEFAULT",
        "MLFLOW_DEFAULT",
        "SSH_DEFAULT",
        "KUBERNETES_DEFAULT",
        # one cluster per platform environment (provisioning)
        "KUBERNETES_LOCAL",
        "KUBERNETES_STAGING",
        "KUBERNETES_PRODUCTION",
        # and its Vault (the provision DAG's bootstrap)
        "VAULT_LOCAL",
        "VAULT_STAGING",
        "VAULT_PRODUCTION",
    }
    assert {name.removeprefix("AIRFLOW_CONN_") for name in variables} == expected
    kafka = Connection.from_json(variables["AIRFLOW_CONN_KAFKA_DEFAULT"], conn_id="kafka_default")
    assert kafka.conn_type == "kafka"
    assert kafka.extra_dejson["bootstrap.servers"] == "127.0.0.1:19092"
    clickhouse = json.loads(variables["AIRFLOW_CONN_CLICKHOUSE_DEFAULT"])
    assert clickhouse["extra"]["dsn"].startswith("chdb://")
    spark = Connection.from_json(variables["AIRFLOW_CONN_SPARK_DEFAULT"], conn_id="spark_default")
    assert spark.host == "local[2]"
    vault = Connection.from_json(variables["AIRFLOW_CONN_VAULT_LOCAL"], conn_id="vault_local")
    assert (vault.conn_type, vault.host, vault.port) == ("vault", "127.0.0.1", settings.vault_port)
    assert vault.extra_dejson["client_kwargs"]["verify"].endswith("/cluster/pki/ca.crt")


def test_the_spark_connect_connection_gives_the_providers_hook_the_servers_url(monkeypatch):
    from airflow.providers.apache.spark.hooks.spark_connect import SparkConnectHook

    for settings, url in (
        (load_settings(spark_connect_port=15123), "sc://127.0.0.1:15123/"),
        (
            load_settings(spark_connect_url="sc://spark-connect.spark:15002"),
            "sc://spark-connect.spark:15002/",
        ),
    ):
        variable = "AIRFLOW_CONN_SPARK_CONNECT_DEFAULT"
        monkeypatch.setenv(variable, settings.airflow_connections()[variable])
        assert SparkConnectHook().get_connection_url() == url


def test_a_spark_connect_url_that_is_not_one_is_refused(monkeypatch):
    monkeypatch.setenv("ADP_SPARK_CONNECT_URL", "http://spark:15002")
    with pytest.raises(SettingsError, match=r"ADP_SPARK_CONNECT_URL.*use sc://host:port"):
        load_settings()


def test_sasl_credentials_reach_the_kafka_client_config(tmp_path):
    settings = load_settings(
        data_root=tmp_path,
        kafka_security_protocol="SASL_SSL",
        kafka_username="ingest",
        kafka_password="s3cret",
    )
    config = settings.kafka_client_config()
    assert config["sasl.username"] == "ingest"
    assert config["sasl.password"] == "s3cret"
    assert config["security.protocol"] == "SASL_SSL"
