"""
### Ad lakehouse transform: Bronze → Silver → Gold, behind quality gates

Runs whenever Bronze is updated (the ingest DAG emits the `bronze_ad_events` Asset), and on
demand as a **backfill**: trigger with `start_date` and `end_date` (inclusive UTC days) to
rebuild every hour of that range, e.g. after a fix to the transform or its windows.

1. `plan` picks the Silver hours to rebuild: Bronze hours that changed since the last published
   run (new or late data) and the later hours whose attribution reaches back to them.
2. `check_bronze` → `bronze_to_silver` (Spark) → `check_silver` → `publish_silver` emits
   `silver_ad_events`.
3. `silver_to_gold` (Spark) → `check_gold` → `publish_gold` emits `gold_hourly_performance`:
   ClickHouse and the reports never wait for the training set.
4. `ctr_training_set` (Spark, after `silver_to_gold` in the pool) → `check_ctr_training` →
   `publish_ctr_training` emits `gold_ctr_training`.
5. `finish` records the Bronze the run read as done, once both are published.

Spark writes into the run's staging area (`<data_root>/lake/_staging/<run>`); a layer is
swapped into the live tables only after its Great Expectations gate passes. Spark tasks share
the `spark` pool; resources and windows come from `ADP_SPARK_*` / `ADP_TRANSFORM_*` settings.

**Owner:** data-engineering.

#### Triage
- *A `check_*` task failed*: the task log lists the failed expectations and links their Data
  Docs page (`<data_root>/quality/data_docs/index.html`). Nothing behind that gate was
  published; fix the data or the code, then clear the run (or trigger a backfill of the
  affected days).
- *A Spark task failed*: its log holds the spark-submit output and the Python traceback. The
  run is safe to clear: jobs only write to the run's staging area.
- *`plan` skipped everything*: no Bronze hour changed since the last published run.
- *Numbers look stale*: events that reached the broker later than
  `ADP_TRANSFORM_LATE_WINDOW_MINUTES` after their hour ended stay in Bronze only (a stalled
  ingest makes nothing late); see `too_late` in the `bronze_to_silver` log.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from adplatform.assets import BRONZE, GOLD_CTR_TRAINING, GOLD_HOURLY, SILVER
from adplatform.orchestration import SPARK_POOL, Owner, Tag, dag_defaults
from adplatform.settings import get_settings
from adplatform.transform.operators import SparkJobOperator
from adplatform.transform.spark import spark_conf

SPARK_JOBS = Path(__file__).resolve().parents[1] / "spark_jobs"
SPARK_CONF = spark_conf(get_settings())  # from ADP_* variables only: no I/O while parsing
DATE = {"type": ["null", "string"], "format": "date"}


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _gate(layer: str, run_dir: str, run_id: str) -> str:
    from adplatform.quality.gate import QualityGateFailed
    from adplatform.transform import pipeline

    try:
        return pipeline.check(get_settings(), layer, run_dir, run_id)
    except QualityGateFailed as failed:  # the data will not change on a retry
        raise AirflowFailException(str(failed)) from None


with DAG(
    dag_id="ad_lakehouse_transform",
    schedule=BRONZE,
    max_active_runs=1,  # runs share the lake's state; a second one waits
    params={
        "start_date": Param(None, description="Backfill: first UTC day to rebuild", **DATE),
        "end_date": Param(None, description="Backfill: last UTC day (inclusive)", **DATE),
    },
    doc_md=__doc__,
    **dag_defaults(Owner.DATA_ENGINEERING, Tag.LAKEHOUSE, Tag.TRANSFORM, Tag.QUALITY),
):

    @task(multiple_outputs=True)
    def plan(**context: Any) -> dict[str, Any]:
        from adplatform.transform import pipeline

        params = context["params"]
        planned = pipeline.plan_run(
            get_settings(),
            context["run_id"],
            _day(params["start_date"]),
            _day(params["end_date"]),
        )
        if not planned["hour_count"]:
            raise AirflowSkipException("no Bronze hour changed since the last published run")
        return planned

    @task
    def check_bronze(run_dir: str, **context: Any) -> str:
        return _gate("bronze", run_dir, context["run_id"])

    @task
    def check_silver(run_dir: str, **context: Any) -> str:
        return _gate("silver", run_dir, context["run_id"])

    @task
    def check_gold(run_dir: str, **context: Any) -> str:
        return _gate("gold", run_dir, context["run_id"])

    @task(outlets=[SILVER])
    def publish_silver(run_dir: str, **context: Any) -> dict[str, Any]:
        from adplatform.transform import pipeline

        published = pipeline.publish_silver(get_settings(), run_dir)
        context["outlet_events"][SILVER].extra = published
        return published

    @task
    def check_ctr_training(run_dir: str, **context: Any) -> str:
        return _gate("ctr_training", run_dir, context["run_id"])

    @task(outlets=[GOLD_HOURLY])
    def publish_gold(run_dir: str, **context: Any) -> dict[str, Any]:
        from adplatform.transform import pipeline

        published = pipeline.publish_gold(get_settings(), run_dir)
        context["outlet_events"][GOLD_HOURLY].extra = published
        return published

    @task(outlets=[GOLD_CTR_TRAINING])
    def publish_ctr_training(run_dir: str, **context: Any) -> dict[str, Any]:
        from adplatform.transform import pipeline

        published = pipeline.publish_ctr_training(get_settings(), run_dir)
        context["outlet_events"][GOLD_CTR_TRAINING].extra = published
        return published

    @task
    def finish(run_dir: str) -> None:
        from adplatform.transform import pipeline

        pipeline.finish(get_settings(), run_dir)

    planned = plan()
    run_dir = planned["run_dir"]

    def spark_job(name: str, priority_weight: int = 1) -> SparkJobOperator:
        return SparkJobOperator(
            task_id=name,
            application=str(SPARK_JOBS / f"{name}.py"),
            application_args=["--hours", planned["hours"], "--run-dir", run_dir],
            conn_id="spark_default",
            conf=SPARK_CONF,
            name=f"adplatform-{name}",
            pool=SPARK_POOL,
            priority_weight=priority_weight,
        )

    published_silver = (
        check_bronze(run_dir)
        >> spark_job("bronze_to_silver")
        >> check_silver(run_dir)
        >> publish_silver(run_dir)
    )
    # Reporting waits on the hourly rollup, so it takes the one-slot pool first.
    published_gold = (
        published_silver
        >> spark_job("silver_to_gold", priority_weight=10)
        >> check_gold(run_dir)
        >> publish_gold(run_dir)
    )
    published_training = (
        published_silver
        >> spark_job("ctr_training_set")
        >> check_ctr_training(run_dir)
        >> publish_ctr_training(run_dir)
    )
    [published_gold, published_training] >> finish(run_dir)
