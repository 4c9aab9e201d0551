"""The Grafana dashboard, built from the report SQL files so both show the same numbers.

Each panel runs a report's SQL with its bound parameters replaced by Grafana's macros and
variables (``{start:Date}`` becomes the dashboard's time range); chart panels select from the
report as a subquery. The result is committed as infra/grafana/dashboards/adplatform-reporting.json
and checked against this builder by the tests (UPDATE_GOLDEN=1 regenerates it).

Grafana interpolates variables into the SQL text, so its data source must log in as a user with
the read-only ``adplatform_reader`` role (migration 0004); the campaign text box goes through
``sqlstring`` quoting, and limit and threshold only offer fixed choices.
"""

from __future__ import annotations

import json
import re
from typing import Any

from adplatform.reporting.reports import REPORTS
from adplatform.settings import REPO_ROOT

DASHBOARD_PATH = REPO_ROOT / "infra" / "grafana" / "dashboards" / "adplatform-reporting.json"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
GRAFANA_VALUES = {
    "start": "toDate($__fromTime)",
    "end": "toDate($__toTime)",
    "campaign": "${campaign:sqlstring}",
    "limit": "${limit}",
    "threshold": "${threshold}",
}
_PLACEHOLDER = re.compile(r"\{(\w+):[^}]+\}")

# (report, panel title, visualization, SQL around the report's rows, width, height, unit)
PANELS: list[tuple[str, str, str, str, int, int, str]] = [
    (
        "campaign_performance",
        "Spend per day by campaign",
        "timeseries",
        "SELECT toDateTime(event_date) AS time, campaign, spend_usd FROM ({report}) ORDER BY time",
        14,
        9,
        "currencyUSD",
    ),
    (
        "pacing",
        "Pacing on the last day (% of daily budget)",
        "barchart",
        "SELECT campaign, pacing_pct FROM (SELECT campaign, round(100 * pacing, 1) AS pacing_pct "
        "FROM ({report}) ORDER BY event_date DESC LIMIT 1 BY campaign_id) "
        "ORDER BY pacing_pct DESC",
        10,
        9,
        "percent",
    ),
    ("campaign_performance", "Daily campaign performance", "table", "{report}", 24, 9, ""),
    ("top_creatives", "Top creatives", "table", "{report}", 12, 8, ""),
    (
        "top_publishers",
        "Top publishers by spend",
        "barchart",
        "SELECT publisher, spend_usd FROM ({report})",
        12,
        8,
        "currencyUSD",
    ),
    *[
        (
            "ctr_breakdown",
            f"CTR by {label}",
            "barchart",
            f"SELECT value AS {dimension}, round(100 * ctr, 3) AS ctr_pct "
            f"FROM ({{report}}) WHERE dimension = '{dimension}'",
            8,
            8,
            "percent",
        )
        for dimension, label in (
            ("hour", "hour of day (UTC)"),
            ("device_type", "device type"),
            ("country", "country"),
        )
    ],
    ("anomalies", "Anomaly flags", "table", "{report}", 24, 8, ""),
]


def grafana_sql(sql: str) -> str:
    """A report's SQL with Grafana's macros and variables in place of its parameters."""
    return _PLACEHOLDER.sub(lambda match: GRAFANA_VALUES[match.group(1)], sql.strip())


def _panel(
    panel_id: int, x: int, y: int, spec: tuple[str, str, str, str, int, int, str]
) -> dict[str, Any]:
    report, title, kind, template, width, height, unit = spec
    sql = template.format(report="\n" + grafana_sql(REPORTS[report].sql) + "\n")
    query_type = "timeseries" if kind == "timeseries" else "table"
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": REPORTS[report].summary,
        "gridPos": {"h": height, "w": width, "x": x, "y": y},
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
        "options": {"xTickLabelRotation": -45} if kind == "barchart" else {},
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "editorType": "sql",
                "queryType": query_type,
                "format": 0 if query_type == "timeseries" else 1,
                # The reports run with join_use_nulls = 1 (missing dimension rows are NULL).
                "rawSql": f"{sql}\nSETTINGS join_use_nulls = 1",
            }
        ],
    }


def _variables() -> list[dict[str, Any]]:
    def choices(name: str, label: str, values: list[str], default: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "custom",
            "query": ",".join(values),
            "current": {"text": default, "value": default},
            "options": [{"text": v, "value": v, "selected": v == default} for v in values],
        }

    return [
        {
            "name": "datasource",
            "label": "ClickHouse",
            "type": "datasource",
            "query": "grafana-clickhouse-datasource",
        },
        {
            "name": "campaign",
            "label": "Campaign id (empty: all)",
            "type": "textbox",
            "query": "",
            "current": {"text": "", "value": ""},
        },
        choices("limit", "Top N", ["10", "25", "50", "100"], "10"),
        choices("threshold", "Anomaly |z|", ["2", "3", "4", "5"], "3"),
    ]


def build_dashboard() -> dict[str, Any]:
    panels, x, y, row_height = [], 0, 0, 0
    for panel_id, spec in enumerate(PANELS, start=1):
        width, height = spec[4], spec[5]
        if x + width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel(panel_id, x, y, spec))
        x, row_height = x + width, max(row_height, height)
    return {
        "uid": "adplatform-reporting",
        "title": "adplatform · campaign reporting",
        "description": "The ClickHouse reports of adplatform (plugins/adplatform/reporting/sql).",
        "tags": ["adplatform", "reporting"],
        "timezone": "utc",
        "editable": True,
        "schemaVersion": 41,
        "version": 1,
        "refresh": "",
        "time": {"from": "now-7d/d", "to": "now-1d/d"},
        "annotations": {"list": []},
        "templating": {"list": _variables()},
        "panels": panels,
    }


def dashboard_json() -> str:
    return json.dumps(build_dashboard(), indent=2) + "\n"
