"""
### Ad lakehouse CTR training set: Silver → Gold `ctr_training`, behind its quality gate

Runs whenever the transform publishes Silver (the `silver_ad_events` Asset), so a transform run
ends at `publish_gold` and its next run never waits for training work. Several Silver updates
that arrive while a run is busy are taken together by the next run. Triggered by hand with
`start_date` and `end_date` (inclusive UTC days), it rebuilds those days from the live Silver
(e.g. after a change to the training set's features).

1. `plan` collects the Silver hours of the triggering updates, and the hours of the impressions
   the Silver they replaced had attributed clicks to (their training rows change too).
2. `ctr_training_set` (Spark, a Spark Connect client in the `spark` pool) rebuilds the whole
   UTC days those hours feed into the run's staging area.
3. `check_ctr_training` (Great Expectations, run in Airflow's triggerer like the transform's
   gates) → `publish_ctr_training` emits
   `gold_ctr_training`, which the CTR model's DAG waits for; `finish` drops the staging area.

**Owner:** data-engineering.

#### Triage
- *`check_ctr_training` failed*: the task log lists the failed expectations and links their
  Data Docs page. Nothing was published, and the gate is not retried. If Silver was
  republished for the same hours while this run was between its Spark job and its gate, the
  reconciliation fails for them: clear the run (it rebuilds from the Silver now live).
- *The Spark task failed*: its log holds the Python traceback; "no Spark Connect server" means
  the server is down (`make up`). The run is safe to clear: the job writes only to staging.
- *`plan` skipped*: triggered by hand without `start_date` and `end_date`: nothing to build.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowSkipException

from adplatform.orchestration import SPARK_POOL, Owner, Tag, dag_defaults
from adplatform.orchestration.assets import GOLD_CTR_TRAINING, SILVER
from adplatform.orchestration.operators import QualityGateOperator, SparkJobOperator
from adplatform.settings import get_settings

DATE = {"type": ["null", "string"], "format": "date"}


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


with DAG(
    dag_id="ad_lakehouse_ctr_training_set",
    schedule=SILVER,
    max_active_runs=1,  # runs replace the same training days
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
        updates = [event.extra for event in context["triggering_asset_events"].get(SILVER, [])]
        planned = pipeline.plan_training_set(
            get_settings(),
            context["run_id"],
            updates,
            _day(params["start_date"]),
            _day(params["end_date"]),
        )
        if not planned["hours"]:
            raise AirflowSkipException("no Silver update and no days to build the training set of")
        return planned

    @task(outlets=[GOLD_CTR_TRAINING])
    def publish_ctr_training(run_dir: str, **context: Any) -> dict[str, Any]:
        from adplatform.transform import pipeline

        published = pipeline.publish_ctr_training(get_settings(), run_dir)
        context["outlet_events"][GOLD_CTR_TRAINING].extra = published
        return published

    @task
    def finish(run_dir: str) -> None:
        from adplatform.transform import pipeline

        pipeline.drop_run_area(run_dir)

    planned = plan()
    run_dir = planned["run_dir"]
    (
        SparkJobOperator(
            task_id="ctr_training_set",
            job="ctr_training_set",
            hours=planned["hours"],
            run_dir=run_dir,
            pool=SPARK_POOL,
        )
        >> QualityGateOperator(task_id="check_ctr_training", layer="ctr_training", run_dir=run_dir)
        >> publish_ctr_training(run_dir)
        >> finish(run_dir)
    )
