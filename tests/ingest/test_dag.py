"""The ``ad_events_ingest`` DAG end to end (dag.test()) against the session broker."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from adplatform.broker import ensure_topics
from adplatform.connections import KAFKA
from adplatform.ingest.commitlog import PartitionLog
from adplatform.localstack import free_port
from adplatform.orchestration.assets import BRONZE, QUARANTINE
from adplatform.settings import get_settings
from tests.conftest import run_dag
from tests.ingest.conftest import assert_exactly_once, produce, traffic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _asset_events(asset) -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(
            select(func.count())
            .select_from(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == asset.name)
        )


def _run(conf):
    run = run_dag("ad_events_ingest", conf=conf)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    metrics = next(
        ti.xcom_pull(task_ids="ingest_micro_batch")
        for ti in run.get_task_instances()
        if ti.task_id == "ingest_micro_batch"
    )
    return run, states, metrics


@pytest.fixture
def dag_settings(kafka, monkeypatch, tmp_path):
    """What stack_env exports, for this test only (stack_env's session-wide exports would leak
    into later tests): the session broker, a topic and a lake of its own, kafka_default."""
    name = f"dag-{uuid.uuid4().hex[:8]}"
    settings = kafka.model_copy(
        update={"events_topic": name, "dead_letter_topic": f"{name}-dlq", "data_root": tmp_path}
    )
    for variable, value in (settings.environment() | settings.airflow_connections()).items():
        monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    yield settings
    monkeypatch.undo()
    get_settings.cache_clear()


def test_a_run_ingests_a_micro_batch_and_announces_only_what_it_wrote(
    dag_settings, airflow_db, tmp_path
):
    settings = dag_settings
    ensure_topics(settings)
    ledger = produce(settings, traffic(3_000), tmp_path)

    run, states, metrics = _run({"max_seconds": 60})
    assert run.state == "success"
    assert set(states.values()) == {"success"}
    assert metrics["consumed"] == ledger.num_rows == metrics["accepted"] + metrics["quarantined"]
    assert metrics["quarantined"] > 0
    assert not any(metrics["lag"].values())
    assert_exactly_once(settings, ledger)
    bronze_events, quarantine_events = _asset_events(BRONZE), _asset_events(QUARANTINE)
    assert bronze_events >= 1 and quarantine_events >= 1

    # Nothing new on the topic: the run succeeds, writes nothing and announces nothing.
    run, states, metrics = _run({"max_seconds": 30})
    assert run.state == "success"
    assert metrics["consumed"] == 0
    assert states == {
        "ingest_micro_batch": "success",
        "bronze_updated": "skipped",
        "quarantine_updated": "skipped",
    }
    assert (_asset_events(BRONZE), _asset_events(QUARANTINE)) == (
        bronze_events,
        quarantine_events,
    )


def test_a_rotated_kafka_connection_reaches_the_next_run_and_the_settings_never_do(
    dag_settings, airflow_db, tmp_path, monkeypatch
):
    """kafka_default is the task's only source of Kafka details: on the old connection (its
    brokers gone) a run fails although the ADP_* settings point at the live broker; rotated,
    the next run ingests everything although the settings now point at the dead address."""
    settings = dag_settings
    ensure_topics(settings)
    ledger = produce(settings, traffic(2_000), tmp_path)
    live, dead = settings.kafka_bootstrap, f"127.0.0.1:{free_port()}"
    connection = settings.connections()[KAFKA]

    def kafka_default(bootstrap: str) -> None:
        rotated = replace(connection, extra=connection.extra | {"bootstrap.servers": bootstrap})
        monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", rotated.to_json())

    kafka_default(dead)
    old = run_dag("ad_events_ingest", conf={"max_seconds": 30}, retries=0)
    assert old.state == "failed"
    assert {ti.task_id: ti.state for ti in old.get_task_instances()}["ingest_micro_batch"] == (
        "failed"
    )
    assert not any(
        PartitionLog(settings.lake_root, settings.events_topic, p).entries()
        for p in range(settings.topic_partitions)
    )

    kafka_default(live)
    monkeypatch.setenv("ADP_KAFKA_BOOTSTRAP", dead)
    get_settings.cache_clear()
    run, states, metrics = _run({"max_seconds": 60})
    assert run.state == "success", states
    assert metrics["consumed"] == ledger.num_rows
    assert_exactly_once(settings, ledger)
