"""The Gold → ClickHouse publish: exact totals however often it runs, fails or is retried."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from adplatform.clickhouse.client import ClickHouseError
from adplatform.clickhouse.migrate import SchemaBehind
from adplatform.clickhouse.publish import (
    FACT_TABLE,
    MEASURES,
    PublishMismatch,
    clickhouse_totals,
    gold_days,
    gold_totals,
    publish_dimensions,
    publish_facts,
    read_gold_day,
    staging_table,
    verify_day,
)
from adplatform.lakehouse.tables import GOLD_HOURLY_PERFORMANCE

from .conftest import BASELINE_DAYS, D0, delivery, gold_hour_path, write_gold_hour


def assert_clickhouse_equals_gold(client, settings):
    """Every Gold day, and nothing else, is in ClickHouse with exactly Gold's rows and sums."""
    days = gold_days(settings)
    for day in days.values():
        assert clickhouse_totals(client, FACT_TABLE, day.event_date) == gold_totals(
            read_gold_day(day)
        )
    published = client.query(f"SELECT DISTINCT event_date FROM {FACT_TABLE}").result_rows
    assert {row[0] for row in published} == set(days)


def whole_gold_sums(settings):
    table = pq.read_table(GOLD_HOURLY_PERFORMANCE.path(settings))
    return {name: sum(table[name].to_pylist()) for name in MEASURES}


def test_a_publish_loads_exactly_what_gold_holds(client, lake):
    results = publish_facts(client, lake)

    assert [r.event_date for r in results] == [*BASELINE_DAYS, D0]
    assert_clickhouse_equals_gold(client, lake)
    # Independently of the publish's own accounting: the whole of Gold, summed by pyarrow.
    sums = ", ".join(f"sum({m})" for m in MEASURES)
    totals = client.query(f"SELECT {sums} FROM {FACT_TABLE}").result_rows[0]
    assert dict(zip(MEASURES, totals, strict=True)) == whole_gold_sums(lake)
    d0 = next(r for r in results if r.event_date == D0)
    assert (d0.hours, d0.totals.rows, d0.totals.sums["impressions"]) == (2, 6, 3500)


def test_publishing_twice_or_forcing_a_republish_never_double_counts(client, lake):
    publish_facts(client, lake)

    assert publish_facts(client, lake) == []  # nothing changed in Gold: nothing to do
    forced = publish_facts(client, lake, [D0, BASELINE_DAYS[0]])

    assert [r.event_date for r in forced] == [BASELINE_DAYS[0], D0]
    assert_clickhouse_equals_gold(client, lake)
    parts = client.query(
        "SELECT count() FROM system.tables WHERE database = 'adplatform' AND name LIKE '%staging%'"
    ).result_rows
    assert parts == [(0,)]  # staging tables are dropped


def test_a_rewritten_gold_hour_replaces_the_day_instead_of_adding_to_it(client, lake):
    publish_facts(client, lake)
    # Late events: Spark rewrites D0 21h with one more click and a new file name.
    gold_hour_path(lake, D0, 21).unlink()
    write_gold_hour(
        lake,
        D0,
        21,
        [delivery("cmp-c", "cr-c1", "pub-2", "US", "desktop", 2000, 41, 4, 250, 500)],
        name="part-1",
    )

    results = publish_facts(client, lake)

    assert [r.event_date for r in results] == [D0]
    assert_clickhouse_equals_gold(client, lake)
    clicks = client.query(
        f"SELECT sum(clicks) FROM {FACT_TABLE} WHERE event_date = {{d:Date}}",
        parameters={"d": D0},
    ).result_rows
    assert clicks == [(15 + 1 + 41,)]  # rows 1 and 3 of 9h, and the rewritten 21h


def test_a_publish_that_fails_midway_is_completed_exactly_by_the_next_run(client, lake):
    good = gold_hour_path(lake, D0, 21).read_bytes()
    gold_hour_path(lake, D0, 21).write_bytes(b"not parquet: a half-copied file")

    with pytest.raises(ClickHouseError, match=r"cannot read Gold file .*event_hour=21"):
        publish_facts(client, lake)

    # The days before the broken one are published and exact; D0 is not published at all.
    for day in BASELINE_DAYS:
        assert clickhouse_totals(client, FACT_TABLE, day).rows == 3
    assert clickhouse_totals(client, FACT_TABLE, D0).rows == 0

    gold_hour_path(lake, D0, 21).write_bytes(good)
    results = publish_facts(client, lake)

    assert [r.event_date for r in results] == [D0]
    assert_clickhouse_equals_gold(client, lake)


def test_a_crash_between_staging_and_swap_or_before_logging_leaves_no_double_count(client, lake):
    publish_facts(client, lake)
    # A run died after filling its staging table (here with junk) but before the swap ...
    staging = f"{FACT_TABLE}_staging_{D0:%Y%m%d}"
    client.command(f"CREATE TABLE {staging} AS {FACT_TABLE}")
    client.command(f"INSERT INTO {staging} (event_date, impressions) VALUES ('{D0}', 999999)")
    # ... and another after the swap but before recording the publish.
    client.command("TRUNCATE TABLE adplatform.publish_log")

    results = publish_facts(client, lake)

    assert len(results) == 5  # with no record, every day is published again, by replacement
    assert_clickhouse_equals_gold(client, lake)


def test_verification_reports_every_difference_from_gold(client, lake):
    publish_facts(client, lake)
    day = gold_days(lake)[D0]
    verify_day(client, day)
    client.command(
        f"INSERT INTO {FACT_TABLE} (event_date, campaign_id, impressions, clicks) "
        f"VALUES ('{D0}', 'cmp-rogue', 10, 2)"
    )

    with pytest.raises(PublishMismatch) as failure:
        verify_day(client, day)

    assert "rows 6 != 7" in str(failure.value)
    assert "impressions 3500 != 3510" in str(failure.value)
    assert "clicks 66 != 68" in str(failure.value)
    publish_facts(client, lake, [D0])  # re-publishing the day restores it
    assert_clickhouse_equals_gold(client, lake)


def test_a_publish_refuses_a_schema_behind_the_migrations(client, lake):
    client.command("DELETE FROM adplatform.schema_migrations WHERE version = 3")

    with pytest.raises(SchemaBehind, match="adplatform clickhouse migrate"):
        publish_facts(client, lake)
    with pytest.raises(SchemaBehind):
        publish_dimensions(client, lake)
    assert client.query(f"SELECT count() FROM {FACT_TABLE}").result_rows == [(0,)]


def test_a_named_day_without_gold_is_refused(client, lake):
    missing = D0.replace(year=D0.year - 1)
    with pytest.raises(ClickHouseError, match=f"no Gold data for {missing}"):
        publish_facts(client, lake, [missing])


def test_a_day_whose_gold_hours_all_disappear_is_cleared(client, lake):
    publish_facts(client, lake)
    # A rebuild emptied every hour of D0 (a replay took its traffic back).
    for hour in (9, 21):
        shutil.rmtree(gold_hour_path(lake, D0, hour).parent)

    results = publish_facts(client, lake)

    assert [(r.event_date, r.totals.rows) for r in results] == [(D0, 0)]
    assert_clickhouse_equals_gold(client, lake)
    assert clickhouse_totals(client, FACT_TABLE, D0).rows == 0
    assert publish_facts(client, lake) == []  # cleared once, then nothing to do
    # Naming the day clears it again rather than refusing it: it was published before.
    assert [r.totals.rows for r in publish_facts(client, lake, [D0])] == [0]


def test_a_publish_leaves_another_publishers_staging_table_alone_and_drops_abandoned_ones(
    client, lake
):
    # Another publisher (the CLI while the DAG runs) is filling its staging table for D0; one
    # killed a day ago (kill -9: no cleanup) left its own behind.
    now = datetime.now(UTC)
    theirs = staging_table(D0, now - timedelta(minutes=5))
    abandoned = staging_table(D0, now - timedelta(days=1))
    for table in (theirs, abandoned):
        client.command(f"CREATE TABLE {table} AS {FACT_TABLE}")
        client.command(f"INSERT INTO {table} (event_date, impressions) VALUES ('{D0}', 7)")

    publish_facts(client, lake)

    assert client.query(f"SELECT sum(impressions) FROM {theirs}").result_rows == [(7,)]
    assert client.query(f"EXISTS TABLE {abandoned}").result_rows == [(0,)]
    assert_clickhouse_equals_gold(client, lake)


def test_dimensions_are_replaced_whole_from_the_reference_tables(client, lake):
    assert publish_dimensions(client, lake) == {
        "advertisers": 2,
        "campaigns": 4,
        "line_items": 4,
        "creatives": 4,
        "publishers": 2,
    }
    assert publish_dimensions(client, lake)["campaigns"] == 4  # replaced, not appended
    assert client.query(
        "SELECT name, daily_budget_micros FROM adplatform.dim_campaigns ORDER BY campaign_id"
    ).result_rows == [
        ("Acme Spring", 100_000_000),
        ("Acme Promo", 50_000_000),
        ("Globex Launch", 200_000_000),
        ("Globex Idle", 30_000_000),
    ]
