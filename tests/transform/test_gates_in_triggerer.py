"""The quality gates as the local stack runs them: in Airflow's triggerer, through the real
scheduler, with no worker process. A transform backfill passes its gates, which leave
validation results and Data Docs pages and log the Data Docs index; a Bronze file of the wrong type fails the Bronze gate at once, without a retry, with the failed
expectation and the file named in the task's log, and nothing behind it runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from airflow_client.client import DAGPatchBody

from adplatform.airflow_client import AirflowClient
from adplatform.events.catalog import build_catalog
from adplatform.events.generator import TrafficConfig, TrafficSimulator
from adplatform.lakehouse.partitions import data_files
from adplatform.lakehouse.tables import BRONZE_EVENTS
from adplatform.localstack import LocalStack
from adplatform.settings import Settings
from tests.transform.bronze import write_bronze

# The session's Airflow starts in minutes on a loaded machine, then two transform runs:
# longer than the suite's per-test limit.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600)]

TRANSFORM = "ad_lakehouse_transform"
GATES = ("check_bronze", "check_silver", "check_gold")
# A day of its own in the session's Bronze: no other test backfills it.
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=9)
RUN_TIMEOUT = 1200  # seconds: a ceiling for a run on a loaded 2-core machine, not a measure


@pytest.fixture(scope="module")
def airflow(
    airflow_server: Settings, spark_connect: Settings, local_stack: LocalStack
) -> Iterator[AirflowClient]:
    """The session's Airflow (scheduler, triggerer, …) and Spark Connect server, two hours of
    traffic on DAY in the session's Bronze, and the transform DAG unpaused."""
    config = TrafficConfig(seed=16, start=DAY, hours=2, requests=400)
    payloads = [m.payload for m in TrafficSimulator(config, build_catalog(16)).messages()]
    write_bronze(airflow_server, payloads, ingested_at=datetime.now(UTC), batch="triggerer")
    client = local_stack.services["airflow"].client()  # type: ignore[attr-defined]
    client.wait_for_dags([TRANSFORM])
    client.dags.patch_dag(TRANSFORM, DAGPatchBody(is_paused=False))
    yield client
    client.dags.patch_dag(TRANSFORM, DAGPatchBody(is_paused=True))
    client.close()


def backfill(client: AirflowClient) -> str:
    day = f"{DAY:%Y-%m-%d}"
    run_id = client.trigger(TRANSFORM, {"start_date": day, "end_date": day})
    client.wait_for_run(TRANSFORM, run_id, timeout=RUN_TIMEOUT)
    return run_id


def task_instances(client: AirflowClient, dag_id: str, run_id: str) -> dict[str, dict]:
    found = client.task_instances.get_task_instances(dag_id, run_id, limit=1000)
    return {ti.task_id: ti.model_dump(mode="json") for ti in found.task_instances}


def report_durations(dag_id: str, run_id: str, instances: dict[str, dict]) -> None:
    """The gates' durations, for the report (benchmarks, not assertions)."""
    print(
        f"{dag_id} {run_id}:",
        json.dumps({t: instances[t]["duration"] for t in sorted(instances) if "check_" in t}),
    )


def assert_ran_in_the_triggerer(instance: dict) -> None:
    # Started by the scheduler's deferral, ended by its trigger: never queued for a worker.
    assert instance["queued_when"] is None and instance["try_number"] == 1, instance


def test_gates_pass_in_the_triggerer_and_leave_data_docs(
    airflow: AirflowClient, airflow_server: Settings
) -> None:
    run_id = backfill(airflow)
    instances = task_instances(airflow, TRANSFORM, run_id)
    report_durations(TRANSFORM, run_id, instances)
    assert {t: i["state"] for t, i in instances.items()} == dict.fromkeys(instances, "success")
    index = airflow_server.quality_dir / "data_docs" / "index.html"
    for gate in GATES:
        assert_ran_in_the_triggerer(instances[gate])
        assert f"passed; Data Docs: file://{index}" in airflow.task_log(TRANSFORM, run_id, gate)
    assert index.is_file()
    pages = {p.stem for p in (airflow_server.quality_dir / "data_docs" / "validations").rglob("*")}
    assert {"bronze-bronze_events", "silver-silver_vs_bronze", "gold-gold_vs_silver"} <= pages
    # Validation results: <gate>/<check>/<run>/<time>/<gate>-<check>.json
    results = airflow_server.quality_dir / "validations"
    this_run = {p.name for p in results.rglob("*.json") if p.parent.parent.name == run_id}
    assert {"bronze-bronze_events.json", "gold-gold_vs_silver.json"} <= this_run


def test_a_failed_gate_fails_in_the_triggerer_without_a_retry(
    airflow: AirflowClient, airflow_server: Settings
) -> None:
    # A Bronze file whose _offset column is text: the Bronze gate's schema check fails.
    hour_dir = BRONZE_EVENTS.path(airflow_server) / f"event_date={DAY:%Y-%m-%d}" / "event_hour=1"
    source = data_files(hour_dir / "event_type=win")[0]
    table = pq.read_table(source)
    index = table.schema.get_field_index("_offset")
    broken = source.with_name("broken.parquet")
    pq.write_table(
        table.set_column(
            index, pa.field("_offset", pa.string()), pc.cast(table["_offset"], pa.string())
        ),
        broken,
    )
    try:
        run_id = backfill(airflow)
    finally:
        broken.unlink()
    instances = task_instances(airflow, TRANSFORM, run_id)
    report_durations(TRANSFORM, run_id, instances)
    assert airflow.dag_runs.get_dag_run(TRANSFORM, run_id).state == "failed"
    assert instances["check_bronze"]["state"] == "failed", instances
    for downstream in ("bronze_to_silver", "check_silver", "publish_silver", "finish"):
        assert instances[downstream]["state"] == "upstream_failed", instances
    assert_ran_in_the_triggerer(instances["check_bronze"])
    log = airflow.task_log(TRANSFORM, run_id, "check_bronze")
    assert "quality gate bronze failed" in log
    assert "expect_column_values_to_be_null(column='problem')" in log
    assert "broken.parquet: _offset is string, expected int64" in log
