"""
### Ad lakehouse transform: Bronze → Silver → Gold, behind quality gates

Runs whenever Bronze is updated (the ingest DAG emits the `bronze_ad_events` Asset), and on
demand as a **backfill**: trigger with `start_date` and `end_date` (inclusive UTC days) to
rebuild every hour of that range, e.g. after a fix to the transform or its windows.

1. `plan` picks the Silver hours to rebuild: Bronze hours that changed since the last published
   run (new or late data) and the later hours whose attribution reaches back to them.
2. `check_bronze` → `bronze_to_silver` (Spark) → `check_silver` → `publish_silver` emits
   `silver_ad_events` (the `ad_lakehouse_ctr_training_set` DAG builds the CTR training set
   from it, so this run never waits for training work).
3. `silver_to_gold` (Spark) → `check_gold` → `publish_gold` emits `gold_hourly_performance`
   for ClickHouse and the reports.
4. `finish` records the Bronze the run read as done.

Spark writes into the run's staging area (`<data_root>/lake/_staging/<run>`); a layer is
swapped into the live tables only after its Great Expectations gate passes. The gates
(`QualityGateOperator`) run in Airflow's triggerer, which imports Great Expectations once for
every gate of every run; a gate never starts a worker process. The Spark tasks are
clients of the long-lived Spark Connect server (`spark_connect_default`) in the `spark` pool;
a backfill with `spark` = `submit` runs each job under spark-submit with a JVM of its own
instead. Resources and windows come from `ADP_SPARK_*` / `ADP_TRANSFORM_*` settings.

**Owner:** data-engineering.

#### Triage
- *A `check_*` task failed*: the task log (written by the triggerer) lists the failed
  expectations and links their Data Docs page (`<data_root>/quality/data_docs/index.html`).
  Nothing behind that gate was published, and a gate is not retried (the data would not
  change); fix the data or the code, then clear the run (or trigger a backfill of the affected
  days). A gate that stays deferred means no triggerer is running (`make up` starts one).
- *A Spark task failed*: its log holds the Python traceback (and, with `spark` = `submit`,
  the spark-submit output); "no Spark Connect server at …" means the server is down: `make up`
  locally. The run is safe to clear: jobs only write to the run's staging area.
- *`plan` skipped everything*: no Bronze hour changed since the last published run.
- *Numbers look stale*: events that reached the broker later than
  `ADP_TRANSFORM_LATE_WINDOW_MINUTES` after their hour ended stay in Bronze only (a stalled
  ingest makes nothing late); see `too_late` in the `bronze_to_silver` log.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowSkipException

from adplatform.orchestration import SPARK_POOL, Owner, Tag, dag_defaults
from adplatform.orchestration.assets import BRONZE, GOLD_HOURLY, SILVER
from adplatform.orchestration.operators import (
    SPARK_MODES,
    QualityGateOperator,
    SparkJobOperator,
)
from adplatform.settings import get_settings

DATE = {"type": ["null", "string"], "format": "date"}


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


with DAG(
    dag_id="ad_lakehouse_transform",
    schedule=BRONZE,
    max_active_runs=1,  # runs share the lake's state; a second one waits
    params={
        "start_date": Param(None, description="Backfill: first UTC day to rebuild", **DATE),
        "end_date": Param(None, description="Backfill: last UTC day (inclusive)", **DATE),
        "spark": Param(
            "connect",
            enum=list(SPARK_MODES),
            description="Where the Spark jobs run: the long-lived Spark Connect server, or "
            "`submit`, a spark-submit JVM per job (a big backfill that should not share it)",
        ),
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

    @task(outlets=[SILVER])
    def publish_silver(run_dir: str, **context: Any) -> dict[str, Any]:
        from adplatform.transform import pipeline

        published = pipeline.publish_silver(get_settings(), run_dir)
        context["outlet_events"][SILVER].extra = published
        return published

    @task(outlets=[GOLD_HOURLY])
    def publish_gold(run_dir: str, **context: Any) -> dict[str, Any]:
        from adplatform.transform import pipeline

        published = pipeline.publish_gold(get_settings(), run_dir)
        context["outlet_events"][GOLD_HOURLY].extra = published
        return published

    @task
    def finish(run_dir: str) -> None:
        from adplatform.transform import pipeline

        pipeline.finish(get_settings(), run_dir)

    planned = plan()
    run_dir = planned["run_dir"]

    def spark_job(name: str) -> SparkJobOperator:
        return SparkJobOperator(
            task_id=name,
            job=name,
            hours=planned["hours"],
            run_dir=run_dir,
            spark="{{ params.spark }}",
            pool=SPARK_POOL,
            # Reporting waits on it: before the training set's job in the one-slot pool.
            priority_weight=10,
        )

    def gate(layer: str) -> QualityGateOperator:
        return QualityGateOperator(task_id=f"check_{layer}", layer=layer, run_dir=run_dir)

    (
        gate("bronze")
        >> spark_job("bronze_to_silver")
        >> gate("silver")
        >> publish_silver(run_dir)
        >> spark_job("silver_to_gold")
        >> gate("gold")
        >> publish_gold(run_dir)
        >> finish(run_dir)
    )
