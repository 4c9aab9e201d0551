"""
### ad_reports_daily

**Purpose.** Render the reporting suite from ClickHouse for analysts and account managers:
daily campaign performance, pacing vs budget, top creatives, top publishers, CTR by
hour/device/country and anomaly flags. Each report lands as CSV, PNG charts and an HTML page in
`<data_root>/reports/<start>_<end>/` (with an `index.html`); by default the window is the 7 days
before the run.

Runs daily at 06:00 UTC, and again whenever `clickhouse_publish` republishes facts (late data,
backfills), so the pages never lag the numbers. Trigger with `end_date`, `days` and `campaign`
for another window; `adplatform report render` does the same from a shell.

**Owner:** analytics.

### Triage
- `resolve_request` failed: the message names the bad parameter (a date that is not
  YYYY-MM-DD, an inverted range, an unknown campaign); trigger again with a valid one.
- A `render` failed with *schema is behind*: run `adplatform clickhouse migrate`.
- *Gold has data for ... that ClickHouse does not hold yet*: a publish is pending for the
  window; the run that the next `clickhouse_publish` triggers renders it. Reports never show
  partial numbers.
- Empty reports: check that `clickhouse_publish` has run for the window
  (`adplatform clickhouse status` lists the published days).
- *in use by process N*: chDB allows one process per data directory; let the holder finish.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import (
    DAG,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    TriggerRule,
    get_current_context,
    task,
)

from adplatform.orchestration import CLICKHOUSE_POOL, Owner, Tag, dag_defaults
from adplatform.orchestration.assets import CLICKHOUSE_FACTS
from adplatform.reporting.reports import DEFAULT_DAYS, MAX_DAYS, REPORTS

with DAG(
    dag_id="ad_reports_daily",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"), assets=CLICKHOUSE_FACTS
    ),
    max_active_runs=1,
    doc_md=__doc__,
    params={
        "end_date": Param(
            None,
            type=["null", "string"],
            description="Last day of the window (YYYY-MM-DD); empty: the day before the run.",
        ),
        "days": Param(DEFAULT_DAYS, type="integer", minimum=1, maximum=MAX_DAYS),
        "campaign": Param("", type="string", description="One campaign id; empty: all."),
    },
    **dag_defaults(Owner.ANALYTICS, Tag.REPORTING),
):
    # No retries (see RETRYING_CANNOT_HELP in the DAG policy tests): a bad parameter stays bad,
    # and a window waiting for its publish is rendered by the run that publish triggers.
    @task(pool=CLICKHOUSE_POOL, retries=0)
    def resolve_request(*, params: dict[str, Any], dag_run: Any) -> dict[str, str]:
        """The report window and filters, validated (the campaign against ClickHouse)."""
        from adplatform.orchestration.hooks import ClickHouseHook
        from adplatform.reporting.reports import check_request, parse_request, report_window
        from adplatform.settings import get_settings

        start, end = report_window(
            dag_run.run_after.date(), end=params["end_date"], days=params["days"]
        )
        request = parse_request(start, end, params["campaign"])
        with ClickHouseHook().open_client() as client:
            check_request(client, request, get_settings())
        return {
            "start": request.start.isoformat(),
            "end": request.end.isoformat(),
            "campaign": request.campaign,
        }

    @task(pool=CLICKHOUSE_POOL, map_index_template="{{ report_name }}")
    def render(report_name: str, request: dict[str, str]) -> list[str]:
        from adplatform.orchestration.hooks import ClickHouseHook
        from adplatform.reporting.render import render_report
        from adplatform.reporting.reports import check_request, parse_request, run_report
        from adplatform.settings import get_settings

        get_current_context()["report_name"] = report_name  # type: ignore[typeddict-unknown-key]
        parsed = parse_request(**request)
        report = REPORTS[report_name]
        with ClickHouseHook().open_client() as client:
            check_request(client, parsed, get_settings())
            rows = run_report(client, report, parsed)
        out_dir = get_settings().reports_dir / parsed.slug
        return [str(p) for p in render_report(report, parsed, rows, out_dir)]

    @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
    def write_index(request: dict[str, str]) -> str:
        """Index what was rendered, even when one report failed (the run still fails); nothing
        when the request was refused."""
        from adplatform.reporting.render import write_index
        from adplatform.reporting.reports import parse_request
        from adplatform.settings import get_settings

        parsed = parse_request(**request)
        return str(write_index(parsed, get_settings().reports_dir / parsed.slug))

    request = resolve_request()
    rendered = render.partial(request=request).expand(report_name=list(REPORTS))
    rendered >> write_index(request)
