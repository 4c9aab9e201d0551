"""
### clickhouse_publish

**Purpose.** Publish Gold's hourly performance (and the reference dimensions) to ClickHouse,
where reports, analysts and Grafana read it. Runs whenever the transform DAG updates
`gold_hourly_performance`, which it emits only after Gold's quality gates pass.

Each changed Gold day (its files' fingerprint differs from its last publish) is rebuilt in a
staging table, checked against Gold, swapped in with `REPLACE PARTITION` and checked again, so a
retry or a backfill never double counts. Trigger with `dates` (YYYY-MM-DD list) to re-publish
chosen days. Emits `clickhouse_hourly_performance` when at least one day was published.

**Owner:** data-engineering.

### Triage
- `check_schema` failed with *schema is behind*: run `adplatform clickhouse migrate` (a
  migration shipped with the code but was not applied), then clear the task.
- `publish_facts` failed with *does not match Gold*: the message lists the row-count and sum
  differences; nothing after the failed check was published. Look for a concurrent writer or a
  Gold file rewritten mid-run, then clear the task (the publish is idempotent).
- *in use by process N*: chDB allows one process per data directory; something outside the
  `clickhouse` pool holds it (a CLI run, a notebook). Let it finish and clear the task.
- Missing reference tables: they are written with the traffic (`adplatform generate`).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowSkipException

from adplatform.orchestration import CLICKHOUSE_POOL, Owner, Tag, dag_defaults
from adplatform.orchestration.assets import CLICKHOUSE_FACTS, GOLD_HOURLY

# The clickhouse pool has one slot locally: a publish goes before any queued report render, so
# fresh numbers are not held up by pages about older ones.
PRIORITY = 10

with DAG(
    dag_id="clickhouse_publish",
    schedule=GOLD_HOURLY,
    max_active_runs=1,
    doc_md=__doc__,
    params={
        "dates": Param(
            [],
            type="array",
            items={"type": "string", "format": "date"},
            description="Gold days to re-publish even if unchanged (YYYY-MM-DD); empty: the "
            "days whose Gold files changed since their last publish.",
        )
    },
    **dag_defaults(Owner.DATA_ENGINEERING, Tag.LAKEHOUSE, Tag.REPORTING),
):

    @task(pool=CLICKHOUSE_POOL, priority_weight=PRIORITY)
    def check_schema() -> None:
        """Refuse to publish into a schema that is behind (or ahead of) the migrations."""
        from adplatform.clickhouse.migrate import require_current_schema
        from adplatform.orchestration.hooks import ClickHouseHook

        with ClickHouseHook().open_client() as client:
            require_current_schema(client)

    @task(pool=CLICKHOUSE_POOL, priority_weight=PRIORITY)
    def publish_dimensions() -> dict[str, int]:
        from adplatform.clickhouse.publish import publish_dimensions
        from adplatform.orchestration.hooks import ClickHouseHook
        from adplatform.settings import get_settings

        with ClickHouseHook().open_client() as client:
            return publish_dimensions(client, get_settings())

    @task(pool=CLICKHOUSE_POOL, priority_weight=PRIORITY, outlets=[CLICKHOUSE_FACTS])
    def publish_facts(
        dimensions: dict[str, int], *, params: dict[str, Any], outlet_events: Any
    ) -> list[dict[str, Any]]:
        from datetime import date

        from adplatform.clickhouse.publish import publish_facts
        from adplatform.orchestration.hooks import ClickHouseHook
        from adplatform.settings import get_settings

        dates = [date.fromisoformat(d) for d in params["dates"]]
        with ClickHouseHook().open_client() as client:
            results = publish_facts(client, get_settings(), dates)
        if not results:
            raise AirflowSkipException("every Gold day is already published unchanged")
        published = [
            {"event_date": r.event_date.isoformat(), "rows": r.totals.rows, **r.totals.sums}
            for r in results
        ]
        outlet_events[CLICKHOUSE_FACTS].extra = {
            "dates": [p["event_date"] for p in published],
            "dimension_rows": dimensions,
        }
        return published

    dimensions = publish_dimensions()
    check_schema() >> dimensions
    publish_facts(dimensions)
