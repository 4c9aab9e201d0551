"""Run the transform in-process, step for step as the DAGs do (the transform, then the
training set's DAG on the Silver it published), on the tests' Spark Connect session."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as ds

from adplatform.lakehouse.partitions import parse_hours
from adplatform.lakehouse.runs import RunArea
from adplatform.lakehouse.tables import Table
from adplatform.settings import Settings
from adplatform.transform import pipeline
from adplatform.transform.jobs import stage_ctr_training, stage_gold_hourly, stage_silver


def run_transform(
    spark: Any,
    settings: Settings,
    run_id: str,
    start: date | None = None,
    end: date | None = None,
    *,
    gates: bool = False,
) -> dict[str, Any]:
    """Plan, stage each layer, (gate it,) publish it; then the training set of the Silver
    update. Returns the plan's outline."""
    planned = pipeline.plan_run(settings, run_id, start, end)
    if not planned["hour_count"]:
        return planned
    run_dir, hours = planned["run_dir"], parse_hours(planned["hours"])
    area = RunArea(Path(run_dir))
    if gates:
        pipeline.check(settings, "bronze", run_dir, run_id)
    stage_silver(spark, settings, hours, area)
    if gates:
        pipeline.check(settings, "silver", run_dir, run_id)
    silver_update = pipeline.publish_silver(settings, run_dir)
    stage_gold_hourly(spark, settings, hours, area)
    if gates:
        pipeline.check(settings, "gold", run_dir, run_id)
    pipeline.publish_gold(settings, run_dir)
    pipeline.finish(settings, run_dir)

    training = pipeline.plan_training_set(settings, run_id, [silver_update])
    training_dir = training["run_dir"]
    stage_ctr_training(spark, settings, parse_hours(training["hours"]), RunArea(Path(training_dir)))
    if gates:
        pipeline.check(settings, "ctr_training", training_dir, run_id)
    pipeline.publish_ctr_training(settings, training_dir)
    pipeline.drop_run_area(training_dir)
    return planned


def read_table(settings: Settings, table: Table) -> pd.DataFrame:
    """A live table as readers see it (hidden files and directories skipped), sorted."""
    root = table.path(settings)
    if not root.exists():
        return pd.DataFrame()
    frame = ds.dataset(str(root), format="parquet", partitioning="hive").to_table().to_pandas()
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)
