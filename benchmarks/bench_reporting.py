"""The report suite on chDB against DuckDB, on the same data in the same run.

Data: 30 days of synthetic Gold hourly performance, 20M rows (adplatform.testing.gold_hourly), and
20M raw events for a drill-down. chDB reads the published ClickHouse tables (the MergeTree fact
with its projections, the dimensions); DuckDB, what an analyst would pick instead, reads the same
rows loaded into its own tables. Both run the same report SQL files, only the parameter
placeholders translated ({start:Date} -> $start), with results fetched as Arrow; the drill-down
reads the same Parquet files with each engine's Parquet reader. Each query: one warm-up, then
REPEATS timed runs; p50 and p95 are reported, and the row counts must agree.

Publish throughput: rows/s of the idempotent publish (staging table, verification against Gold
before and after, partition swap, projections) against a bare insert of the same Parquet rows
into a plain MergeTree table, the engine's own ceiling here.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from adplatform.clickhouse.client import clickhouse_client
from adplatform.clickhouse.migrate import migrate
from adplatform.clickhouse.publish import (
    FACT_COLUMNS,
    gold_days,
    publish_dimensions,
    publish_facts,
    read_gold_day,
)
from adplatform.events.catalog import COUNTRIES, DEVICES, build_catalog
from adplatform.lakehouse.reference import write_reference_tables
from adplatform.lakehouse.tables import GOLD_HOURLY_PERFORMANCE, REFERENCE_TABLES, reference_path
from adplatform.reporting.reports import REPORTS, parse_request, report_window
from adplatform.testing.gold_hourly import write_sample_gold
from benchmarks.harness import Context, Result

ROWS = 20_000_000
DAYS = 30
EVENTS = 20_000_000
EVENT_FILES = 10
REPEATS = 9
TARGET = "chDB <= DuckDB (ratio <= 1)"
# A drill-down from a report into raw events: one campaign's day by site and hour.
DRILL_DOWN = """
SELECT
    site_id,
    EXTRACT(HOUR FROM event_time) AS hour,
    sum(CASE WHEN event_type = 'impression' THEN 1 ELSE 0 END) AS impressions,
    sum(CASE WHEN event_type = 'click' THEN 1 ELSE 0 END) AS clicks,
    count(DISTINCT user_id_hash) AS users,
    avg(CASE WHEN event_type = 'win' THEN price_micros END) / 1e3 AS avg_cpm_usd
FROM {events}
WHERE event_date = {day:Date} AND campaign_id = {campaign:String}
GROUP BY site_id, hour
ORDER BY impressions DESC, site_id, hour
"""


def duckdb_sql(sql: str) -> str:
    """The same SQL with ClickHouse's typed placeholders as DuckDB's named parameters."""
    return re.sub(r"\{(\w+):[^}]+\}", r"$\1", sql)


def timings(run: Callable[[], Any]) -> tuple[list[float], Any]:
    result = run()  # warm-up: caches, lazy loading
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return samples, result


def p95(samples: list[float]) -> float:
    return float(np.percentile(samples, 95))


def write_events(root: Path, day: date, campaigns: list[str], sites: list[str]) -> Path:
    """EVENTS raw events over ``day`` as Parquet, drawn vectorised; returns the folder."""
    rng = np.random.default_rng(11)
    kinds = ["bid_request", "bid", "win", "impression", "click", "conversion"]
    kind_share = np.array([0.40, 0.25, 0.12, 0.12, 0.009, 0.001])
    countries, devices = list(COUNTRIES), list(DEVICES)
    users = [f"u{n:06d}" for n in range(50_000)]
    start = np.datetime64(day.isoformat(), "ms")
    per_file = EVENTS // EVENT_FILES

    def labels(values: list[str], index: np.ndarray) -> pa.Array:
        dictionary = pa.array(values)
        return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), dictionary)

    folder = root / "events"
    folder.mkdir(parents=True, exist_ok=True)
    for part in range(EVENT_FILES):
        kind = rng.choice(len(kinds), per_file, p=kind_share / kind_share.sum())
        table = pa.table(
            {
                "event_time": pa.array(
                    start + rng.integers(0, 86_400_000, per_file).astype("timedelta64[ms]"),
                    pa.timestamp("ms", tz="UTC"),
                ),
                "event_date": pa.array([day] * per_file, pa.date32()),
                "event_type": labels(kinds, kind),
                "campaign_id": labels(campaigns, rng.integers(0, len(campaigns), per_file)),
                "site_id": labels(sites, rng.zipf(1.3, per_file) % len(sites)),
                "country": labels(countries, rng.integers(0, len(countries), per_file)),
                "device_type": labels(devices, rng.integers(0, len(devices), per_file)),
                "user_id_hash": labels(users, rng.zipf(1.2, per_file) % len(users)),
                "price_micros": rng.integers(200_000, 6_000_000, per_file),
            }
        )
        pq.write_table(table, folder / f"part-{part:03d}.parquet", compression="zstd")
    return folder


def load_duckdb(path: Path, settings: Any) -> Any:
    """DuckDB with the same rows as ClickHouse: Gold's fact columns and the dimensions."""
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA adplatform")
    columns = ", ".join(
        f"CAST({c} AS DATE) AS {c}"
        if c == "event_date"
        else f"CAST({c} AS UTINYINT) AS {c}"
        if c == "event_hour"
        else c
        for c in FACT_COLUMNS
    )
    gold = GOLD_HOURLY_PERFORMANCE.path(settings)
    con.execute(
        f"CREATE TABLE adplatform.hourly_performance AS SELECT {columns} "
        f"FROM read_parquet('{gold}/*/*/*.parquet', hive_partitioning = true)"
    )
    for name in REFERENCE_TABLES:
        con.execute(
            f"CREATE TABLE adplatform.dim_{name} AS "
            f"SELECT * FROM read_parquet('{reference_path(settings, name)}')"
        )
    return con


def run(ctx: Context) -> list[Result]:
    settings = ctx.settings
    catalog = build_catalog(7)
    write_reference_tables(settings, catalog)
    today = date.today()
    rows_per_hour = ROWS // (DAYS * 24)
    generate_seconds = -time.perf_counter()
    gold_rows = write_sample_gold(
        settings, catalog, today - timedelta(days=DAYS), DAYS, rows_per_hour
    )
    generate_seconds += time.perf_counter()
    results = []
    with clickhouse_client(settings) as client:
        migrate(client)
        publish_dimensions(client, settings)
        # The reference first, then dropped: its background merges must not slow the publish.
        client.command("CREATE TABLE adplatform.bare AS adplatform.hourly_performance")
        for projection in ("daily_campaign", "daily_creative_publisher", "daily_audience"):
            client.command(f"ALTER TABLE adplatform.bare DROP PROJECTION {projection}")
        bare_seconds = -time.perf_counter()
        for day in gold_days(settings).values():
            client.insert_arrow("adplatform.bare", read_gold_day(day))
        bare_seconds += time.perf_counter()
        client.command("DROP TABLE adplatform.bare SYNC")

        publish_seconds = -time.perf_counter()
        published = publish_facts(client, settings)
        publish_seconds += time.perf_counter()
        assert sum(r.totals.rows for r in published) == gold_rows
        results.append(
            Result(
                benchmark="reporting",
                metric="publish throughput (staging, verify, swap, projections)",
                value=gold_rows / publish_seconds,
                unit="rows/s",
                reference="bare insert of the same Parquet rows, no projections",
                reference_value=gold_rows / bare_seconds,
                details={"rows": gold_rows, "days": DAYS, "generate_seconds": generate_seconds},
            )
        )

        duck = load_duckdb(ctx.root / "reporting.duckdb", settings)
        request = parse_request(*report_window(today))
        for name, report in REPORTS.items():
            parameters = request.parameters_for(report)
            ch_samples, ch_rows = timings(
                lambda r=report, p=parameters: client.query_arrow(
                    r.sql, parameters=p, settings={"join_use_nulls": 1}
                )
            )
            duck_samples, duck_rows = timings(
                lambda r=report, p=parameters: duck.sql(
                    duckdb_sql(r.sql), params=p
                ).to_arrow_table()
            )
            results.extend(_compare(f"report {name}", ch_samples, duck_samples, ch_rows, duck_rows))

        events = write_events(
            ctx.root, today - timedelta(days=1), [c.campaign_id for c in catalog.campaigns],
            [s for p in catalog.publishers for s in p.sites],
        )  # fmt: skip
        parameters = {"day": today - timedelta(days=1), "campaign": "cmp-0001"}
        chdb_sql = DRILL_DOWN.replace("{events}", f"file('{events}/*.parquet', Parquet)")
        duck_sql = duckdb_sql(DRILL_DOWN.replace("{events}", f"read_parquet('{events}/*.parquet')"))
        ch_samples, ch_rows = timings(lambda: client.query_arrow(chdb_sql, parameters=parameters))
        duck_samples, duck_rows = timings(
            lambda: duck.sql(duck_sql, params=parameters).to_arrow_table()
        )
        results.extend(
            _compare("raw-event drill-down", ch_samples, duck_samples, ch_rows, duck_rows)
        )
        duck.close()
    return results


def _compare(
    metric: str, chdb: list[float], duck: list[float], chdb_rows: Any, duck_rows: Any
) -> list[Result]:
    if chdb_rows.num_rows != duck_rows.num_rows:
        raise AssertionError(
            f"{metric}: chDB returned {chdb_rows.num_rows} rows, DuckDB {duck_rows.num_rows}"
        )
    details = {"repeats": REPEATS, "rows": chdb_rows.num_rows}
    return [
        Result(
            benchmark="reporting",
            metric=f"{metric} p{q}",
            value=value(chdb) * 1000,
            unit="ms",
            reference=f"DuckDB p{q}",
            reference_value=value(duck) * 1000,
            higher_is_better=False,
            target=TARGET,
            details=details,
        )
        for q, value in ((50, statistics.median), (95, p95))
    ]
