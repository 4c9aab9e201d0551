"""The Great Expectations gates: they pass on good data, and each kind of bad data fails the
gate with the failed expectation named and a Data Docs page to read, before anything is
published."""

from __future__ import annotations

import asyncio
import shutil
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

from adplatform.lakehouse.partitions import data_files, parse_hours
from adplatform.lakehouse.runs import RunArea
from adplatform.lakehouse.tables import (
    BRONZE_EVENTS,
    GOLD_CTR_TRAINING,
    GOLD_HOURLY_PERFORMANCE,
    SILVER_EVENTS,
)
from adplatform.orchestration.operators import QualityGateTrigger
from adplatform.quality.gate import QualityGateFailed
from adplatform.settings import get_settings, load_settings
from adplatform.transform import pipeline
from adplatform.transform.jobs import stage_ctr_training, stage_gold_hourly, stage_silver
from tests.transform.handmade import write_handmade_bronze
from tests.transform.run import run_transform

DAY = date(2026, 3, 2)


@pytest.fixture
def settings(tmp_path):
    settings = load_settings(data_root=tmp_path / "data")
    write_handmade_bronze(settings)
    return settings


def failed_gate(settings, layer: str, run_dir: str) -> str:
    with pytest.raises(QualityGateFailed) as failure:
        pipeline.check(settings, layer, run_dir, "test-run")
    message = str(failure.value)
    pages = [line.split(": ", 1)[1] for line in message.splitlines() if "file://" in line]
    assert pages and all(Path(p.removeprefix("file://")).is_file() for p in pages), message
    return message


def test_gates_pass_on_good_data_and_leave_data_docs(spark, settings):
    run_transform(spark, settings, "gated", DAY, DAY, gates=True)
    docs = settings.quality_dir / "data_docs"
    assert (docs / "index.html").is_file()
    pages = {p.stem for p in (docs / "validations").rglob("*.html")}
    assert {
        "bronze-bronze_schema",
        "bronze-bronze_events",
        "silver-silver_events",
        "silver-silver_vs_bronze",
        "gold-gold_hourly_performance",
        "gold-gold_vs_silver",
        "ctr_training-gold_ctr_training",
        "ctr_training-ctr_training_vs_silver",
    } <= pages


def test_duplicated_silver_rows_fail_the_silver_gate_and_nothing_is_published(spark, settings):
    planned = pipeline.plan_run(settings, "dup", DAY, DAY)
    area = RunArea(Path(planned["run_dir"]))
    stage_silver(spark, settings, parse_hours(planned["hours"]), area)
    # A second copy of a staged file: every event in it now appears twice.
    staged = data_files(area.staged(SILVER_EVENTS) / "event_date=2026-03-02/event_hour=10")[0]
    shutil.copy(staged, staged.with_name("copy.parquet"))
    message = failed_gate(settings, "silver", planned["run_dir"])
    assert "expect_column_values_to_be_unique(column='event_id')" in message
    assert "expect_column_pair_values_to_be_equal" in message  # Silver no longer reconciles
    assert not SILVER_EVENTS.path(settings).exists()


def test_a_ctr_above_one_fails_the_gold_gate(spark, settings):
    run_transform(spark, settings, "first", DAY, DAY)
    planned = pipeline.plan_run(settings, "bad-gold", DAY, DAY)
    area = RunArea(Path(planned["run_dir"]))
    hours = parse_hours(planned["hours"])
    stage_gold_hourly(spark, settings, hours, area)
    path = data_files(area.staged(GOLD_HOURLY_PERFORMANCE) / "event_date=2026-03-02/event_hour=10")[
        0
    ]
    table = pq.read_table(path)
    clicks = pc.multiply(table["clicks"], 5)
    table = table.set_column(table.schema.get_field_index("clicks"), "clicks", clicks)
    ctr = pc.divide(pc.cast(clicks, pa.float64()), pc.cast(table["impressions"], pa.float64()))
    table = table.set_column(table.schema.get_field_index("ctr"), "ctr", ctr)
    pq.write_table(table, path)
    message = failed_gate(settings, "gold", planned["run_dir"])
    assert "expect_column_values_to_be_between(column='ctr', min_value=0" in message
    assert "column_A='silver_attributed_clicks', column_B='gold_clicks'" in message


def test_a_duplicated_training_row_fails_the_training_set_gate(spark, settings):
    run_transform(spark, settings, "first", DAY, DAY)
    live = data_files(GOLD_CTR_TRAINING.path(settings) / "event_date=2026-03-02")
    planned = pipeline.plan_run(settings, "bad-ctr", DAY, DAY)
    area = RunArea(Path(planned["run_dir"]))
    stage_ctr_training(spark, settings, parse_hours(planned["hours"]), area)
    staged = data_files(area.staged(GOLD_CTR_TRAINING) / "event_date=2026-03-02")[0]
    shutil.copy(staged, staged.with_name("copy.parquet"))
    message = failed_gate(settings, "ctr_training", planned["run_dir"])
    assert "expect_column_values_to_be_unique(column='impression_id')" in message
    assert "column_A='silver_impressions', column_B='training_rows'" in message
    assert data_files(GOLD_CTR_TRAINING.path(settings) / "event_date=2026-03-02") == live


def test_bronze_with_a_wrong_column_type_fails_the_bronze_gate(settings):
    bad = (
        BRONZE_EVENTS.path(settings)
        / "event_date=2026-03-02/event_hour=10/event_type=bid/z.parquet"
    )
    table = pq.read_table(data_files(bad.parent)[0])
    index = table.schema.get_field_index("_offset")
    pq.write_table(table.set_column(index, "_offset", pc.cast(table["_offset"], pa.string())), bad)
    planned = pipeline.plan_run(settings, "bad-bronze", DAY, DAY)
    message = failed_gate(settings, "bronze", planned["run_dir"])
    assert "event_type=bid/z.parquet" in message
    assert "_offset is string, expected int64" in message


def test_an_event_in_the_wrong_hour_partition_fails_the_bronze_gate(settings):
    source = BRONZE_EVENTS.path(settings) / "event_date=2026-03-02/event_hour=11/event_type=bid"
    misplaced = BRONZE_EVENTS.path(settings) / "event_date=2026-03-02/event_hour=12/event_type=bid"
    misplaced.mkdir(parents=True)
    shutil.copy(data_files(source)[0], misplaced / "x.parquet")
    planned = pipeline.plan_run(settings, "misplaced", DAY, DAY)
    message = failed_gate(settings, "bronze", planned["run_dir"])
    assert "column='ms_into_partition_hour'" in message


def test_stale_bronze_fails_the_freshness_check_of_a_scheduled_run(settings):
    # The handmade events were ingested on 2026-03-02, long before "now".
    planned = pipeline.plan_run(settings, "scheduled")
    message = failed_gate(settings, "bronze", planned["run_dir"])
    assert "bronze_freshness" in message
    assert f"max_value={settings.transform_bronze_max_staleness_minutes}" in message


def test_two_gates_at_once_in_one_process_each_end_their_own_task(settings, monkeypatch, capsys):
    """As the triggerer runs them: two runs' Bronze gates at once, in threads of one process
    (Great Expectations keeps its context process-wide), one passing with the Data Docs index
    logged, one failing with its failed expectation and Data Docs page logged."""
    monkeypatch.setenv("ADP_DATA_ROOT", str(settings.data_root))
    get_settings.cache_clear()
    backfill = pipeline.plan_run(settings, "backfill", DAY, DAY)
    scheduled = pipeline.plan_run(settings, "scheduled")  # its Bronze is stale

    async def gate(run_id: str, run_dir: str):
        return [e async for e in QualityGateTrigger("bronze", run_dir, run_id).run()]

    async def both():
        return await asyncio.gather(
            gate("backfill", backfill["run_dir"]), gate("scheduled", scheduled["run_dir"])
        )

    [passed], [failed] = asyncio.run(both())
    get_settings.cache_clear()
    logged = capsys.readouterr().out  # the triggerer's structured log, here on stdout
    index = settings.quality_dir / "data_docs" / "index.html"
    assert isinstance(passed, TaskSuccessEvent)
    assert f"quality gate bronze passed; Data Docs: file://{index}" in logged
    assert isinstance(failed, TaskFailedEvent)
    assert "quality gate bronze failed 1 expectation(s)" in logged
    assert "bronze_freshness: expect_column_values_to_be_between(column='age_minutes'" in logged
    assert "bronze_freshness: file://" in logged
    results = settings.quality_dir / "validations" / "bronze"  # <gate>/<check>/<run>/<time>/
    assert list((results / "bronze_events" / "backfill").rglob("*.json"))
    assert list((results / "bronze_freshness" / "scheduled").rglob("*.json"))
