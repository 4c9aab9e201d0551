"""Both DAGs end to end, in-process with dag.test(), on the hand-checked lake and a real chDB."""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest
from sqlalchemy import select

from adplatform.clickhouse.client import clickhouse_client
from adplatform.clickhouse.migrate import migrate
from adplatform.clickhouse.publish import FACT_TABLE, clickhouse_totals, gold_days, verify_day
from adplatform.connections import CLICKHOUSE
from adplatform.localstack import free_port
from adplatform.orchestration.assets import CLICKHOUSE_FACTS
from adplatform.reporting.reports import REPORTS
from adplatform.settings import Connection, get_settings
from tests.conftest import run_dag

from .conftest import D0

pytestmark = pytest.mark.slow


@pytest.fixture
def dag_env(airflow_db, lake, monkeypatch):
    """Airflow's tasks pointed at this test's lake and chDB directory: its ADP_* settings and
    the clickhouse_default connection, as stack_env exports the session's, but undone after
    the test; and the schema migrated, as a deploy would."""
    for name, value in {**lake.environment(), **lake.airflow_connections()}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with clickhouse_client(lake) as client:
        migrate(client)
    yield lake
    get_settings.cache_clear()


def facts_events(run_id):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == CLICKHOUSE_FACTS.uri, AssetEvent.source_run_id == run_id)
        ).all()


def task_states(run):
    return {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}


def test_publish_dag_loads_gold_exactly_once_and_emits_the_facts_asset(dag_env):
    first = run_dag("clickhouse_publish")

    assert first.state == "success", task_states(first)
    with clickhouse_client(dag_env) as client:
        for day in gold_days(dag_env).values():
            verify_day(client, day)
    [event] = facts_events(first.run_id)
    assert event.extra["dates"] == [d.isoformat() for d in gold_days(dag_env)]
    assert event.extra["dimension_rows"]["campaigns"] == 4

    second = run_dag("clickhouse_publish")  # Gold unchanged: nothing published, no event

    assert second.state == "success"
    assert task_states(second)[("publish_facts", -1)] == "skipped"
    assert facts_events(second.run_id) == []

    forced = run_dag("clickhouse_publish", conf={"dates": [D0.isoformat()]})

    assert forced.state == "success"
    assert facts_events(forced.run_id)[0].extra["dates"] == [D0.isoformat()]
    with clickhouse_client(dag_env) as client:
        assert clickhouse_totals(client, FACT_TABLE, D0).rows == 6  # replaced, not doubled
        verify_day(client, gold_days(dag_env)[D0])


def test_reports_dag_renders_every_report_for_the_window(dag_env):
    assert run_dag("clickhouse_publish").state == "success"

    run = run_dag("ad_reports_daily", conf={"end_date": D0.isoformat(), "days": 1})

    states = task_states(run)
    assert run.state == "success", states
    assert [states[("render", i)] for i in range(len(REPORTS))] == ["success"] * len(REPORTS)
    out = dag_env.reports_dir / f"{D0}_{D0}"
    for name in REPORTS:
        assert (out / f"{name}.csv").exists()
        assert (out / f"{name}.html").exists()
        assert list(out.glob(f"{name}-*.png"))
    index = (out / "index.html").read_text()
    assert all(f'href="{name}.html"' in index for name in REPORTS)
    with (out / "top_publishers.csv").open() as publishers:
        assert [
            (r["publisher_id"], r["impressions"], r["spend_usd"])
            for r in csv.DictReader(publishers)
        ] == [("pub-2", "2400", "290.0"), ("pub-1", "1100", "80.0")]


def test_reports_wait_for_the_publish_and_never_render_partial_numbers(dag_env):
    early = run_dag("ad_reports_daily", conf={"end_date": D0.isoformat(), "days": 1})

    states = task_states(early)
    assert early.state == "failed"
    assert states[("resolve_request", -1)] == "failed"
    assert states[("write_index", -1)] == "upstream_failed"
    assert not (dag_env.reports_dir / f"{D0}_{D0}").exists()
    # After the publish the same request renders: test_reports_dag_renders_every_report_...


def test_a_rotated_clickhouse_connection_reaches_every_clickhouse_task(dag_env, monkeypatch):
    """clickhouse_default is the tasks' only source of ClickHouse details. The old connection
    names a server that is gone (with the credentials it had; the embedded engine has no users,
    so its DSN is what a rotation changes): both DAGs fail on it although the ADP_* settings
    point at the live engine. Rotated, every task of both succeeds although the settings now
    name the dead server."""
    live = dag_env.connections()[CLICKHOUSE]
    dead = f"http://127.0.0.1:{free_port()}"

    def clickhouse_default(connection: Connection) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_CLICKHOUSE_DEFAULT", connection.to_json())

    clickhouse_default(replace(live, login="reporter", password="old", extra={"dsn": dead}))
    old_publish = run_dag("clickhouse_publish", retries=0)
    old_reports = run_dag("ad_reports_daily", conf={"end_date": D0.isoformat()}, retries=0)

    assert old_publish.state == old_reports.state == "failed"
    assert task_states(old_publish)[("check_schema", -1)] == "failed"
    assert task_states(old_reports)[("resolve_request", -1)] == "failed"
    with clickhouse_client(dag_env) as client:
        assert clickhouse_totals(client, FACT_TABLE, D0).rows == 0

    clickhouse_default(live)
    monkeypatch.setenv("ADP_CLICKHOUSE_DSN", dead)
    get_settings.cache_clear()
    publish = run_dag("clickhouse_publish")
    reports = run_dag("ad_reports_daily", conf={"end_date": D0.isoformat(), "days": 1})

    assert publish.state == "success", task_states(publish)
    assert set(task_states(publish).values()) == {"success"}
    assert reports.state == "success", task_states(reports)
    assert set(task_states(reports).values()) == {"success"}
    with clickhouse_client(dag_env) as client:
        verify_day(client, gold_days(dag_env)[D0])
