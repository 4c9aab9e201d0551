"""The Grafana dashboard: in sync with the report SQL, and every panel's query runs on ClickHouse
(with Grafana's macros expanded as its ClickHouse data source does) giving the report's rows."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, time

import yaml
from pandas.testing import assert_frame_equal

from adplatform.clickhouse.publish import publish_dimensions, publish_facts
from adplatform.reporting.grafana import DASHBOARD_PATH, PANELS, dashboard_json
from adplatform.reporting.reports import REPORTS, parse_request, run_report

from .conftest import D0


def test_the_committed_dashboard_is_built_from_the_report_sql():
    if os.environ.get("UPDATE_GOLDEN") == "1":
        DASHBOARD_PATH.parent.mkdir(parents=True, exist_ok=True)
        DASHBOARD_PATH.write_text(dashboard_json())
    assert DASHBOARD_PATH.read_text() == dashboard_json(), (
        "infra/grafana dashboard is stale: regenerate with UPDATE_GOLDEN=1 pytest "
        "tests/reporting/test_grafana.py"
    )
    dashboard = json.loads(DASHBOARD_PATH.read_text())
    assert {p["targets"][0]["datasource"]["type"] for p in dashboard["panels"]} == {
        "grafana-clickhouse-datasource"
    }
    assert {p["description"] for p in dashboard["panels"]} == {r.summary for r in REPORTS.values()}


def as_grafana_sends_it(sql: str) -> str:
    """Expand the macros and variables the way the data source does, for the day D0."""
    start = int(datetime.combine(D0, time(0), tzinfo=UTC).timestamp())
    end = int(datetime.combine(D0, time(23, 59, 59), tzinfo=UTC).timestamp())
    for macro, value in {
        "$__fromTime": f"toDateTime({start})",
        "$__toTime": f"toDateTime({end})",
        "${campaign:sqlstring}": "''",
        "${limit}": "10",
        "${threshold}": "3",
    }.items():
        sql = sql.replace(macro, value)
    assert "$" not in sql
    return sql


def test_every_panel_runs_and_tables_show_the_reports_rows(client, lake):
    publish_dimensions(client, lake)
    publish_facts(client, lake)
    dashboard = json.loads(DASHBOARD_PATH.read_text())

    for panel, (report, *_) in zip(dashboard["panels"], PANELS, strict=True):
        rows = client.query_arrow(as_grafana_sends_it(panel["targets"][0]["rawSql"])).to_pandas()
        if panel["type"] == "table":
            expected = run_report(client, REPORTS[report], parse_request(D0, D0))
            assert_frame_equal(rows, expected, check_dtype=False, obj=panel["title"])
        else:
            assert len(rows) > 0, panel["title"]
    pacing = next(p for p in dashboard["panels"] if p["title"].startswith("Pacing"))
    assert client.query(as_grafana_sends_it(pacing["targets"][0]["rawSql"])).result_rows == [
        ("Globex Launch", 125.0),
        ("Acme Spring", 100.0),
        ("Acme Promo", 40.0),
        ("Globex Idle", 0.0),
    ]


def test_provisioning_loads_the_dashboard_through_the_plugin():
    provisioning = DASHBOARD_PATH.parent.parent / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "clickhouse.yaml").read_text())
    [source] = datasources["datasources"]
    assert source["type"] == "grafana-clickhouse-datasource"
    assert source["jsonData"]["defaultDatabase"] == "adplatform"
    assert "password" not in source["jsonData"]  # secrets only in secureJsonData, from env
    providers = yaml.safe_load((provisioning / "dashboards" / "adplatform.yaml").read_text())
    assert providers["providers"][0]["type"] == "file"
