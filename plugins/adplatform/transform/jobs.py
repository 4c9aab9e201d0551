"""The transform's Spark jobs: one transform each, a summary in the run area.

A job runs either as a Spark Connect client of the long-lived server (``run_connected``, what
the DAG does) or as a spark-submit application with a JVM of its own: ``spark_jobs/*.py`` are
one-line entry points over these functions, for batch backfills and by hand::

    spark-submit spark_jobs/bronze_to_silver.py --hours 2026-01-01T00..2026-01-01T23 \\
        --run-dir /tmp/run
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from adplatform.lakehouse.partitions import format_hours, parse_hours
from adplatform.lakehouse.runs import RunArea
from adplatform.lakehouse.tables import GOLD_CTR_TRAINING, GOLD_HOURLY_PERFORMANCE, SILVER_EVENTS
from adplatform.settings import Settings, get_settings
from adplatform.transform.gold import affected_hours, write_ctr_training, write_hourly_performance
from adplatform.transform.silver import write_silver
from adplatform.transform.spark import connect_session, spark_session

Transform = Callable[[SparkSession, Settings, list[datetime], RunArea], dict[str, Any]]


def _hours(text: str) -> list[datetime]:
    try:
        return parse_hours(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _summary(name: str, summary: dict[str, Any]) -> None:
    print(f"{name}: {json.dumps(summary, sort_keys=True)}", flush=True)


def _run(name: str, description: str, transform: Transform, argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog=f"{name}.py", description=description)
    parser.add_argument(
        "--hours",
        type=_hours,
        required=True,
        help="Silver hours (re)built by this run, e.g. 2026-01-01T00..2026-01-01T23,2026-01-02T05",
    )
    parser.add_argument(
        "--run-dir", type=Path, required=True, help="the run's staging area (output, summaries)"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    spark = spark_session(settings, name)
    try:
        summary = transform(spark, settings, args.hours, RunArea(args.run_dir))
    finally:
        spark.stop()
    _summary(name, summary)
    return 0


def stage_silver(
    spark: SparkSession, settings: Settings, hours: list[datetime], area: RunArea
) -> dict[str, Any]:
    plan = area.plan(settings, hours)
    summary = {
        "hours": format_hours(hours),
        **write_silver(spark, settings, plan, area.staged(SILVER_EVENTS)),
    }
    area.write("silver", summary)
    return {"hours": summary["hours"], "attribution": summary["attribution"]}


def _gold_hours(
    spark: SparkSession, settings: Settings, hours: list[datetime], area: RunArea
) -> list[datetime]:
    """The Gold hours the new Silver hours feed, and those the Silver they replaced fed."""
    return sorted(
        set(affected_hours(spark, settings, hours)) | set(area.replaced_impression_hours())
    )


def stage_gold_hourly(
    spark: SparkSession, settings: Settings, hours: list[datetime], area: RunArea
) -> dict[str, Any]:
    gold_hours = _gold_hours(spark, settings, hours, area)
    rows = write_hourly_performance(
        spark, settings, gold_hours, area.staged(GOLD_HOURLY_PERFORMANCE)
    )
    summary = {"hours": format_hours(gold_hours), "rows": rows}
    area.write("gold_hourly", summary)
    return summary


def stage_ctr_training(
    spark: SparkSession, settings: Settings, hours: list[datetime], area: RunArea
) -> dict[str, Any]:
    gold_hours = _gold_hours(spark, settings, hours, area)
    days = sorted({h.date() for h in gold_hours})
    rows = write_ctr_training(spark, settings, days, area.staged(GOLD_CTR_TRAINING))
    # The hours its gate reconciles with Silver (the days' other hours did not change).
    summary = {
        "hours": format_hours(gold_hours),
        "days": [d.isoformat() for d in days],
        "rows": rows,
    }
    area.write("gold_ctr", summary)
    return summary


def bronze_to_silver(argv: Sequence[str] | None = None) -> int:
    return _run(
        "bronze_to_silver", "Bronze → Silver for the given hours (staged).", stage_silver, argv
    )


def silver_to_gold(argv: Sequence[str] | None = None) -> int:
    return _run(
        "silver_to_gold",
        "Silver → Gold hourly performance for the hours the given Silver hours feed (staged).",
        stage_gold_hourly,
        argv,
    )


def ctr_training_set(argv: Sequence[str] | None = None) -> int:
    return _run(
        "ctr_training_set",
        "Silver → the CTR training set for the days the given Silver hours feed (staged).",
        stage_ctr_training,
        argv,
    )


# The jobs by name (the entry points' names): what a Spark Connect client runs.
JOBS: dict[str, Transform] = {
    "bronze_to_silver": stage_silver,
    "silver_to_gold": stage_gold_hourly,
    "ctr_training_set": stage_ctr_training,
}


def run_connected(name: str, hours: str, run_dir: str, url: str | None = None) -> dict[str, Any]:
    """Run job ``name`` as a Spark Connect client of the server at ``url`` (default: the
    settings'); this process starts no JVM. Its session (and what it cached) ends with it."""
    transform = JOBS[name]
    settings = get_settings()
    spark = connect_session(settings, url)
    try:
        summary = transform(spark, settings, parse_hours(hours), RunArea(Path(run_dir)))
    finally:
        spark.stop()
    _summary(name, summary)
    return summary
