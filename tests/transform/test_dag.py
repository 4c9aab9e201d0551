"""The ad_lakehouse_transform DAG end to end: a backfill through real Spark jobs (clients of the
session's Spark Connect server) and Great Expectations gates to published tables and Assets, the
training set's DAG on it, a scheduled run with nothing to do, the same backfill as spark-submit
jobs, and a scheduled run whose failed gate stops it before anything is published; a Spark
Connect server that is down, and a Spark mode that does not exist, refused with the fix. (Incremental
planning and rerun equality are covered, faster, in test_planning and test_golden.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from adplatform.events.catalog import build_catalog
from adplatform.events.generator import TrafficConfig, TrafficSimulator
from adplatform.lakehouse.partitions import data_files
from adplatform.lakehouse.tables import BRONZE_EVENTS, GOLD_CTR_TRAINING, GOLD_HOURLY_PERFORMANCE
from adplatform.localstack import free_port
from adplatform.orchestration import SPARK_POOL
from adplatform.orchestration.operators import SparkJobOperator
from adplatform.settings import REPO_ROOT, get_settings
from adplatform.transform.jobs import JOBS
from adplatform.transform.spark import SparkConnectUnavailable
from tests.conftest import run_dag
from tests.transform.bronze import write_bronze
from tests.transform.run import read_table

DAG_ID = "ad_lakehouse_transform"
TRAINING_DAG_ID = "ad_lakehouse_ctr_training_set"
PUBLISHED = {"silver_ad_events", "gold_hourly_performance"}
# A day recent enough for the validator.
START = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=5)


@pytest.fixture(scope="module")
def lake(stack_env, spark_connect, airflow_db, tmp_path_factory):
    """Two hours of generated traffic in a Bronze of this module's own (other tests' Bronze
    would change what a scheduled run plans), the session's Spark Connect server, and
    spark-submit on PATH (from the venv)."""
    saved = {name: os.environ[name] for name in ("PATH", "ADP_DATA_ROOT")}
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{saved['PATH']}"
    os.environ["ADP_DATA_ROOT"] = str(tmp_path_factory.mktemp("transform-dag"))
    get_settings.cache_clear()
    settings = get_settings()
    config = TrafficConfig(seed=11, start=START, hours=2, requests=400)
    payloads = [m.payload for m in TrafficSimulator(config, build_catalog(11)).messages()]
    write_bronze(settings, payloads, ingested_at=datetime.now(UTC), batch="dag-test")
    yield settings
    os.environ.update(saved)
    get_settings.cache_clear()


def states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def asset_events(run) -> set[str]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).all()
        return {event.asset.name for event in events}


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags" / f"{dag_id}.py"), safe_mode=False).dags[dag_id]


def test_assets_are_emitted_only_after_their_gate_and_spark_jobs_share_one_pool():
    dag, training = _dag(DAG_ID), _dag(TRAINING_DAG_ID)
    emitting = {
        t.task_id: {a.name for a in t.outlets} for t in [*dag.tasks, *training.tasks] if t.outlets
    }
    assert emitting == {
        "publish_silver": {"silver_ad_events"},
        "publish_gold": {"gold_hourly_performance"},
        "publish_ctr_training": {"gold_ctr_training"},
    }
    assert "check_silver" in dag.get_task("publish_silver").upstream_task_ids
    assert "check_gold" in dag.get_task("publish_gold").upstream_task_ids
    assert "check_ctr_training" in training.get_task("publish_ctr_training").upstream_task_ids
    # A transform run ends at Gold: the training set is a DAG of its own on Silver, and the
    # hourly rollup takes the one-slot Spark pool before its job.
    assert dag.get_task("finish").upstream_task_ids == {"plan", "publish_gold"}
    assert training.timetable.asset_condition.name == "silver_ad_events"
    assert (
        dag.get_task("silver_to_gold").priority_weight
        > training.get_task("ctr_training_set").priority_weight
    )
    spark_tasks = [t for t in [*dag.tasks, *training.tasks] if t.task_type == "SparkJobOperator"]
    assert {t.task_id for t in spark_tasks} == {
        "bronze_to_silver",
        "silver_to_gold",
        "ctr_training_set",
    }
    for spark_task in spark_tasks:
        assert spark_task.pool == SPARK_POOL
        assert spark_task.job == spark_task.task_id and spark_task.job in JOBS
    # Spark Connect unless a transform run says otherwise.
    assert {t.spark for t in spark_tasks} == {"{{ params.spark }}", "connect"}


@pytest.mark.parametrize("job", ["bronze_to_silver", "silver_to_gold", "ctr_training_set"])
def test_each_spark_job_explains_its_arguments(job):
    script = REPO_ROOT / "spark_jobs" / f"{job}.py"
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "--hours" in shown.stdout and "--run-dir" in shown.stdout
    wrong = subprocess.run(
        [sys.executable, script, "--hours", "yesterday", "--run-dir", "/tmp/x"],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 2 and "'yesterday' is not an hour" in wrong.stderr


def test_a_backfill_rebuilds_the_day_behind_the_gates_and_publishes_it(lake):
    day = f"{START:%Y-%m-%d}"
    run = run_dag(DAG_ID, {"start_date": day, "end_date": day})
    assert set(states(run).values()) == {"success"}, states(run)
    assert asset_events(run) == PUBLISHED
    training_run = run_dag(TRAINING_DAG_ID, {"start_date": day, "end_date": day})
    assert set(states(training_run).values()) == {"success"}, states(training_run)
    assert asset_events(training_run) == {"gold_ctr_training"}

    # Every distinct Bronze impression of the day is one Gold impression and one training row.
    bronze = ds.dataset(
        str(BRONZE_EVENTS.path(lake) / f"event_date={day}"), partitioning="hive"
    ).to_table(filter=pc.field("event_type") == "impression", columns=["event_id"])
    impressions = len(set(bronze["event_id"].to_pylist()))
    assert impressions > 100
    hourly = read_table(lake, GOLD_HOURLY_PERFORMANCE)
    training = read_table(lake, GOLD_CTR_TRAINING)
    assert hourly["impressions"].sum() == impressions == len(training)
    assert hourly["clicks"].sum() == training["clicked"].sum() > 0
    assert (lake.quality_dir / "data_docs" / "index.html").is_file()

    # The backfill recorded the Bronze it read: a scheduled run now has nothing to do.
    quiet = run_dag(DAG_ID)
    assert set(states(quiet).values()) == {"skipped"}, states(quiet)
    assert asset_events(quiet) == set()


def test_a_spark_submit_backfill_gives_the_same_tables(lake):
    """The batch mode: each job a spark-submit application with a JVM of its own."""
    day = f"{START:%Y-%m-%d}"
    before = {t.name: read_table(lake, t) for t in (GOLD_HOURLY_PERFORMANCE, GOLD_CTR_TRAINING)}
    run = run_dag(DAG_ID, {"start_date": day, "end_date": day, "spark": "submit"})
    assert set(states(run).values()) == {"success"}, states(run)
    for table in (GOLD_HOURLY_PERFORMANCE, GOLD_CTR_TRAINING):
        pd.testing.assert_frame_equal(read_table(lake, table), before[table.name])


def test_an_unknown_spark_mode_is_refused_before_a_run_starts(airflow_db):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="'yarn' is not one of"):
        run_dag(DAG_ID, {"spark": "yarn"})


def test_a_spark_connect_server_that_is_down_fails_the_job_in_one_line(monkeypatch):
    port = free_port()  # nothing listens there
    connection = {"conn_type": "spark_connect", "host": "sc://127.0.0.1", "port": port}
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_CONNECT_DEFAULT", json.dumps(connection))
    job = SparkJobOperator(
        task_id="bronze_to_silver", job="bronze_to_silver", hours="2026-03-02T10", run_dir="/x"
    )
    with pytest.raises(SparkConnectUnavailable) as refused:
        job.execute({})
    message = str(refused.value)
    assert "\n" not in message
    assert f"sc://127.0.0.1:{port}" in message and "`make up`" in message


def test_a_failed_gate_stops_the_run_before_publication(lake):
    before = read_table(lake, GOLD_HOURLY_PERFORMANCE)
    # A Bronze file whose _offset column is text: the Bronze gate's schema check fails.
    hour_dir = BRONZE_EVENTS.path(lake) / f"event_date={START:%Y-%m-%d}" / "event_hour=1"
    source = data_files(hour_dir / "event_type=win")[0]
    table = pq.read_table(source)
    index = table.schema.get_field_index("_offset")
    bad = table.set_column(
        index, pa.field("_offset", pa.string()), pc.cast(table["_offset"], pa.string())
    )
    pq.write_table(bad, source.with_name("broken.parquet"))

    run = run_dag(DAG_ID)
    task_states = states(run)
    assert str(run.state) == "failed"
    assert task_states["check_bronze"] == "failed"
    for downstream in ("bronze_to_silver", "publish_silver", "publish_gold", "finish"):
        assert task_states[downstream] == "upstream_failed", task_states
    assert asset_events(run) == set()
    pd.testing.assert_frame_equal(read_table(lake, GOLD_HOURLY_PERFORMANCE), before)
    source.with_name("broken.parquet").unlink()
