"""Report parameters from users (CLI and DAG): hostile or malformed values are refused with a
clear message, and the `adplatform clickhouse` / `adplatform report` commands end to end."""

from __future__ import annotations

import csv
from datetime import date, timedelta

import pytest
from click.testing import CliRunner

from adplatform.cli import cli
from adplatform.reporting.reports import (
    REPORTS,
    ReportError,
    ReportRequest,
    parse_request,
    report_window,
)
from adplatform.settings import get_settings

from .conftest import D0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"start": "2026-11-01' OR 1=1 --", "end": "2026-11-02"}, "start \"2026-11-01' OR"),
        ({"start": "2026-02-30", "end": "2026-03-01"}, "'2026-02-30' is not a date"),
        ({"start": "20261101", "end": "2026-11-02"}, "use YYYY-MM-DD"),
        ({"start": "2026-11-27", "end": "2026-11-20"}, "inverted: start 2026-11-27 is after"),
        ({"start": "2024-01-01", "end": "2026-01-01"}, "covers 732 days; a report covers at most"),
        (
            {"start": "2026-11-01", "end": "2026-11-02", "campaign": "x'; DROP TABLE t; --"},
            "is not a campaign id",
        ),
        ({"start": "2026-11-01", "end": "2026-11-02", "campaign": "cmp 1"}, "not a campaign id"),
        ({"start": "2026-11-01", "end": "2026-11-02", "limit": "0"}, "limit '0' is out of range"),
        (
            {"start": "2026-11-01", "end": "2026-11-02", "limit": "1e9"},
            "limit '1e9' is not an integer",
        ),
        ({"start": "2026-11-01", "end": "2026-11-02", "limit": 2.5}, "limit 2.5 is not an integer"),
        ({"start": "2026-11-01", "end": "2026-11-02", "threshold": "nan"}, "out of range"),
        ({"start": "2026-11-01", "end": "2026-11-02", "threshold": "inf"}, "out of range"),
        ({"start": "2026-11-01", "end": "2026-11-02", "threshold": "3;"}, "is not a number"),
    ],
)
def test_malformed_or_hostile_parameters_are_refused(arguments, message):
    with pytest.raises(ReportError) as refused:
        parse_request(**arguments)
    assert message in str(refused.value)


def test_valid_parameters_are_typed():
    assert parse_request(" 2026-11-01 ", "2026-11-07", " cmp-0001 ", "25", "2.5") == ReportRequest(
        date(2026, 11, 1), date(2026, 11, 7), "cmp-0001", 25, 2.5
    )
    assert report_window(date(2026, 11, 27)) == (date(2026, 11, 20), date(2026, 11, 26))
    assert report_window(date(2026, 11, 27), end="2026-11-10", days=3) == (
        date(2026, 11, 8),
        date(2026, 11, 10),
    )


def test_every_report_binds_only_known_parameters():
    for report in REPORTS.values():
        assert {"start", "end", "campaign"} <= report.parameters
        assert report.parameters <= {"start", "end", "campaign", "limit", "threshold"}


@pytest.fixture
def cli_env(lake, monkeypatch):
    """The CLI pointed at the hand-checked lake (its own chDB directory)."""
    monkeypatch.setenv("ADP_DATA_ROOT", str(lake.data_root))
    monkeypatch.setenv("ADP_CLICKHOUSE_DSN", lake.clickhouse_dsn)
    get_settings.cache_clear()
    yield lake
    get_settings.cache_clear()


def invoke(*arguments):
    return CliRunner().invoke(cli, list(arguments))


def test_the_cli_migrates_publishes_and_renders_reports(cli_env):
    status = invoke("clickhouse", "status")
    assert status.exit_code == 1  # nothing migrated yet
    assert "pending" in status.output

    migrated = invoke("clickhouse", "migrate")
    assert migrated.exit_code == 0, migrated.output
    assert "0004_roles.sql: skipped: engine lacks access_management" in migrated.output

    published = invoke("clickhouse", "publish")
    assert published.exit_code == 0, published.output
    assert f"{D0}: 6 rows from 2 hours, verified against Gold" in published.output
    assert "already published unchanged" in invoke("clickhouse", "publish").output

    status = invoke("clickhouse", "status")
    assert status.exit_code == 0
    assert D0.isoformat() in status.output

    rendered = invoke("report", "render", "--start", str(D0), "--end", str(D0))
    assert rendered.exit_code == 0, rendered.output
    out = cli_env.reports_dir / f"{D0}_{D0}"
    assert sorted(p.name for p in out.glob("*.html")) == sorted(
        ["index.html", *(f"{name}.html" for name in REPORTS)]
    )
    with (out / "pacing.csv").open() as pacing:
        assert [(r["campaign_id"], r["status"]) for r in csv.DictReader(pacing)] == [
            ("cmp-c", "over_budget"),
            ("cmp-a", "on_pace"),
            ("cmp-b", "under_pacing"),
            ("cmp-d", "under_pacing"),
        ]

    one = invoke("report", "render", "top_creatives", "--end", str(D0), "--campaign", "cmp-a")
    assert one.exit_code == 0, one.output
    campaign_out = cli_env.reports_dir / f"{D0 - timedelta(days=6)}_{D0}_cmp-a"
    assert sorted(p.name for p in campaign_out.glob("*.csv")) == ["top_creatives.csv"]


def test_the_cli_refuses_bad_reports_with_one_line_and_writes_nothing(cli_env):
    invoke("clickhouse", "migrate")
    invoke("clickhouse", "publish")

    unknown = invoke("report", "render", "--end", str(D0), "--campaign", "cmp-z")
    assert unknown.exit_code == 1
    assert unknown.output.startswith("error: unknown campaign 'cmp-z' (4 known): did you mean")
    hostile = invoke("report", "render", "--end", str(D0), "--campaign", "a' OR '1'='1")
    assert hostile.exit_code == 1
    assert "is not a campaign id" in hostile.output
    inverted = invoke("report", "render", "--start", "2026-11-27", "--end", "2026-11-20")
    assert inverted.exit_code == 1
    assert "inverted" in inverted.output
    no_such = invoke("report", "render", "revenue_forecast")
    assert no_such.exit_code == 2
    assert "unknown report revenue_forecast; choose from campaign_performance" in no_such.output
    for result in (unknown, hostile, inverted, no_such):
        assert "Traceback" not in result.output
    assert not cli_env.reports_dir.exists()


def test_reports_of_days_gold_has_but_clickhouse_lacks_are_refused(cli_env):
    invoke("clickhouse", "migrate")
    early = invoke("report", "render", "--start", str(D0 - timedelta(days=1)), "--end", str(D0))
    assert early.exit_code == 1
    assert early.output.startswith(
        f"error: Gold has data for {D0 - timedelta(days=1)}, {D0} that ClickHouse does not hold "
        "yet, so the reports would show partial numbers"
    )
    assert not cli_env.reports_dir.exists()
    invoke("clickhouse", "publish")
    assert invoke("report", "render", "--end", str(D0)).exit_code == 0


def test_analysts_query_clickhouse_read_only_with_bound_values(cli_env):
    invoke("clickhouse", "migrate")
    invoke("clickhouse", "publish")
    sql = (
        "SELECT campaign_id, sum(clicks) AS clicks FROM adplatform.hourly_performance "
        "WHERE event_date = {day:Date} AND campaign_id != '' GROUP BY campaign_id ORDER BY 1"
    )
    rows = invoke("clickhouse", "query", sql, "--param", f"day={D0}", "--csv")
    assert rows.exit_code == 0, rows.output
    assert list(csv.reader(rows.output.splitlines())) == [
        ["campaign_id", "clicks"],
        ["cmp-a", "25"],
        ["cmp-b", "1"],
        ["cmp-c", "40"],
    ]
    table = invoke("clickhouse", "query", sql, "--param", f"day={D0}")
    assert "cmp-c" in table.output and "3 rows" in table.output

    dropped = invoke("clickhouse", "query", "DROP TABLE adplatform.hourly_performance")
    assert dropped.exit_code == 1
    assert dropped.output.startswith("error: query refused: ") and "READONLY" in dropped.output
    assert "Traceback" not in dropped.output
    unbound = invoke("clickhouse", "query", sql, "--param", "day")
    assert unbound.exit_code == 2
    assert "'day': use NAME=VALUE" in unbound.output
    still = invoke("clickhouse", "query", "SELECT count() FROM adplatform.hourly_performance")
    assert still.exit_code == 0, still.output


def test_a_bad_dsn_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("ADP_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("ADP_CLICKHOUSE_DSN", "clickhouse://db:9000")
    get_settings.cache_clear()
    result = invoke("clickhouse", "migrate")
    get_settings.cache_clear()
    assert result.exit_code == 1
    assert "unsupported ClickHouse DSN 'clickhouse://db:9000': use chdb:///path" in result.output
