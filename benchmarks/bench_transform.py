"""Silver → Gold hourly rollup on 10M events: Spark vs the same rollup in SQL on chDB.

Spark runs as the transform's jobs do: a Spark Connect client of the local stack's Spark
Connect server (local[2]), started by the benchmark. Both engines read the same Silver-shaped
Parquet files (a day of synthetic events, written directly with numpy and pyarrow) and write
the rollup as Parquet; the two outputs are compared (rows and every sum) so the benchmark also
checks that the engines agree. Spark's first run (JIT-cold) is reported with the server's
start-up. Then the engines take turns, chDB (in a fresh process) and Spark, twice: on a shared
machine both see the same load, and each engine's figure is its best run. Memory is each
engine's peak resident set (the server's JVM; the chDB process, Python included).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adplatform.events.catalog import COUNTRIES, DEVICES
from adplatform.lakehouse.partitions import HOUR
from adplatform.lakehouse.tables import ATTRIBUTED, REPEAT, SILVER_EVENTS, SILVER_MONEY
from adplatform.settings import Settings
from benchmarks.harness import Context, Result, timed

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

EVENTS = 10_000_000
DAY = datetime(2026, 1, 5, tzinfo=UTC)
HOURS = [DAY + i * HOUR for i in range(24)]
ROUNDS = 2  # steady-state runs of each engine; each engine's figure is its best
SQL = Path(__file__).parent / "sql" / "hourly_performance.sql"
# Share of each event type (clicks and conversions follow from impressions).
SHARES = {"bid": 0.41, "win": 0.165, "impression": 0.15}
CLICK_RATE, CONVERSION_RATE, REPEAT_RATE = 0.02, 0.1, 0.1
SUMS = ["bid_requests", "bids", "wins", "impressions", "clicks", "conversions", "spend_micros"]


def _dictionary(indices: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int32)), pa.array(values))


def _context(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Who served what where, skewed like the catalog's market: 216 creatives (72 line items,
    36 campaigns, 12 advertisers), Pareto-like publishers, the catalog's country/device mix."""
    country_share = np.array([share for share, _ in COUNTRIES.values()])
    device_share = np.array([share for share, _ in DEVICES.values()])
    return {
        "creative": rng.zipf(1.3, n) % 216,
        "publisher": rng.zipf(1.2, n) % 40,
        "country": rng.choice(len(COUNTRIES), n, p=country_share / country_share.sum()),
        "device": rng.choice(len(DEVICES), n, p=device_share / device_share.sum()),
    }


def write_silver(settings: Settings, events: int, seed: int = 5) -> int:
    """Silver-shaped Parquet for one day: every contract column, realistic keys and links."""
    rng = np.random.default_rng(seed)
    counts = {kind: int(events * share) for kind, share in SHARES.items()}
    counts["click"] = int(counts["impression"] * CLICK_RATE)
    counts["conversion"] = int(counts["click"] * CONVERSION_RATE)
    counts["bid_request"] = events - sum(counts.values())
    start_ms = int(DAY.timestamp() * 1000)

    impression_ms = start_ms + rng.integers(0, 86_400_000, counts["impression"])
    clicked = rng.choice(counts["impression"], counts["click"], replace=False)
    converted = rng.choice(clicked, counts["conversion"])
    impression_context = _context(rng, counts["impression"])
    rows = 0
    offset = 0
    for kind, n in counts.items():
        if kind in ("impression", "click", "conversion"):
            source = {
                "impression": np.arange(n),
                "click": clicked,
                "conversion": converted,
            }[kind]
            context = {k: v[source] for k, v in impression_context.items()}
            linked_ms = impression_ms[source]
            delay = {"impression": 0, "click": 20_000, "conversion": 1_800_000}[kind]
            event_ms = np.minimum(
                linked_ms + rng.exponential(delay, n).astype(np.int64) if delay else linked_ms,
                start_ms + 86_399_999,
            )
            impression_ids = pc.cast(pa.array(source), pa.string())
        else:
            context = _context(rng, n)
            event_ms = start_ms + rng.integers(0, 86_400_000, n)
            linked_ms = None
            impression_ids = pc.cast(
                pa.array(np.arange(n) + 10**9 if kind == "win" else np.zeros(0)), pa.string()
            )
        table = _silver_table(kind, n, offset, event_ms, linked_ms, impression_ids, context, rng)
        pq.write_to_dataset(
            table,
            SILVER_EVENTS.path(settings),
            partition_cols=list(SILVER_EVENTS.partitioning),
            max_rows_per_group=1_000_000,
        )
        rows += n
        offset += n
    return rows


def _silver_table(
    kind: str,
    n: int,
    offset: int,
    event_ms: np.ndarray,
    linked_ms: np.ndarray | None,
    impression_ids: pa.Array,
    context: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> pa.Table:
    demand = kind != "bid_request"
    creative = context["creative"]
    ids = {
        "advertiser_id": (creative // 18, 12, "adv"),
        "campaign_id": (creative // 6, 36, "cmp"),
        "line_item_id": (creative // 3, 72, "li"),
        "creative_id": (creative, 216, "cr"),
    }
    zeros = np.zeros(n, np.int32)
    columns: dict[str, pa.Array] = {
        "event_id": pc.cast(pa.array(np.arange(offset, offset + n)), pa.string()),
        "schema_version": pa.array(np.ones(n, np.int64)),
        "event_time": pa.array(event_ms, pa.timestamp("ms", tz="UTC")),
        "publisher_id": _dictionary(context["publisher"], [f"pub-{i}" for i in range(40)]),
        "country": _dictionary(context["country"], list(COUNTRIES)),
        "device_type": _dictionary(context["device"], list(DEVICES)),
        "impression_id": impression_ids if len(impression_ids) else _dictionary(zeros, [""]),
        "attribution": _dictionary(zeros, [""]),
        "impression_time": pa.nulls(n, pa.timestamp("ms", tz="UTC")),
    }
    for name, (index, size, prefix) in ids.items():
        values = [f"{prefix}-{i}" for i in range(size)]
        columns[name] = _dictionary(index, values) if demand else _dictionary(zeros, [""])
    if kind in ("click", "conversion"):
        status = np.where(rng.random(n) < REPEAT_RATE, 1, 0) if kind == "click" else zeros
        columns["attribution"] = _dictionary(status, [ATTRIBUTED, REPEAT])
        columns["impression_time"] = pa.array(linked_ms, pa.timestamp("ms", tz="UTC"))
    money = {
        "bid_request": "floor_price_cpm_micros",
        "bid": "bid_price_cpm_micros",
        "win": "clearing_price_cpm_micros",
        "impression": "clearing_price_cpm_micros",
        "conversion": "conversion_value_micros",
    }
    for name in SILVER_MONEY:
        priced = money.get(kind) == name
        columns[name] = (
            pa.array(rng.integers(100_000, 5_000_000, n)) if priced else pa.nulls(n, pa.int64())
        )
    hours = (event_ms - int(DAY.timestamp() * 1000)) // 3_600_000
    partition = {
        "event_date": _dictionary(zeros, [f"{DAY:%Y-%m-%d}"]),
        "event_hour": pa.array(hours.astype(np.int32)),
        "event_type": _dictionary(zeros, [kind]),
    }
    filler = _dictionary(zeros, ["x"])
    arrays = []
    for field in SILVER_EVENTS.schema:
        if field.name in columns:
            arrays.append(columns[field.name])
        elif pa.types.is_string(field.type):
            arrays.append(filler)
        elif field.name == "_partition":
            arrays.append(pa.array(zeros))
        elif field.name == "_ingested_at":
            arrays.append(pa.array(event_ms, pa.timestamp("ms", tz="UTC")))
        else:
            arrays.append(pa.nulls(n, field.type))
    names = [f.name for f in SILVER_EVENTS.schema] + list(partition)
    return pa.Table.from_arrays(arrays + list(partition.values()), names=names)


def _peak_rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def _spark_session(ctx: Context) -> SparkSession:
    """The Spark Connect server started (as `make up` starts it) and a client session on it."""
    from adplatform.transform.spark import connect_session

    return connect_session(ctx.service("spark-connect"))


def _jvm_pid(ctx: Context) -> int:
    """The server's JVM: the java process in the service's process group."""
    group = ctx.stack.services["spark-connect"].pid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it exited
            continue
        name, rest = text.split("(", 1)[1].rsplit(")", 1)
        if name == "java" and int(rest.split()[2]) == group:  # fields: state, ppid, pgrp
            return int(stat.parent.name)
    raise RuntimeError("the Spark Connect server's JVM is not running")


def _spark_rollup(spark: SparkSession, settings: Settings, target: Path) -> None:
    from adplatform.transform.gold import hourly_performance

    frame = hourly_performance(spark, settings, HOURS)
    frame.write.mode("overwrite").parquet(str(target))


@functools.cache
def _chdb_client(output: str) -> Any:
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=f"chdb://{output}/chdb")


def _chdb_rollup(silver: str, output: str) -> float:
    """One run of the SQL rollup on chDB, in the benchmark's chDB process; its seconds."""
    client = _chdb_client(output)
    query = SQL.read_text()
    target = Path(output) / "chdb.parquet"
    target.unlink(missing_ok=True)
    seconds, _ = timed(
        lambda: client.command(
            f"INSERT INTO FUNCTION file({{target:String}}, Parquet) {query}",
            parameters={"target": str(target), "silver": silver},
        )
    )
    return seconds


def _totals(path: Path) -> dict[str, int]:
    table = pq.read_table(path, columns=SUMS)
    return {"rows": table.num_rows} | {c: int(pc.sum(table[c]).as_py()) for c in SUMS}


def run(ctx: Context) -> list[Result]:
    settings = ctx.settings
    generation, rows = timed(lambda: write_silver(settings, EVENTS))
    output = ctx.root / "rollups"
    silver = f"{SILVER_EVENTS.path(settings)}/**/*.parquet"
    spark_runs: list[float] = []
    chdb_runs: list[float] = []
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as chdb:
        startup, spark = timed(lambda: _spark_session(ctx))
        try:
            first, _ = timed(lambda: _spark_rollup(spark, settings, output / "first"))
            for _ in range(ROUNDS):  # in turns, so that both engines see the same load
                chdb_runs.append(chdb.submit(_chdb_rollup, silver, str(output)).result())
                spark_runs.append(
                    timed(lambda: _spark_rollup(spark, settings, output / "steady"))[0]
                )
            spark_memory = _peak_rss_mb(_jvm_pid(ctx))
        finally:
            spark.stop()
        chdb_memory = chdb.submit(_peak_rss_mb).result()
    spark_steady, chdb_seconds = min(spark_runs), min(chdb_runs)
    spark_totals, chdb_totals = _totals(output / "steady"), _totals(output / "chdb.parquet")
    if spark_totals != chdb_totals:
        raise AssertionError(f"the engines disagree: Spark {spark_totals}, chDB {chdb_totals}")
    details: dict[str, Any] = {
        "events": rows,
        "gold_rows": spark_totals["rows"],
        "generation_seconds": round(generation, 2),
        "spark_startup_seconds": round(startup, 2),
        "spark_first_run_seconds": round(first, 2),
        "spark_steady_runs_seconds": [round(s, 2) for s in spark_runs],
        "chdb_runs_seconds": [round(s, 2) for s in chdb_runs],
        "cpus": os.cpu_count(),
    }
    common: dict[str, Any] = {
        "benchmark": "transform",
        "reference": "chDB, same SQL rollup",
        "details": details,
    }
    return [
        Result(
            metric="Spark Silver→Gold steady state",
            value=rows / spark_steady,
            unit="events/s",
            reference_value=rows / chdb_seconds,
            target="Spark within 4x of chDB (ratio >= 0.25)",
            **common,
        ),
        Result(
            metric="Spark Silver→Gold incl. session start-up",
            value=startup + first,
            unit="s",
            reference_value=chdb_seconds,
            higher_is_better=False,
            **common,
        ),
        Result(
            metric="Spark Silver→Gold steady state, wall time",
            value=spark_steady,
            unit="s",
            reference_value=chdb_seconds,
            higher_is_better=False,
            target="<= 4x",
            **common,
        ),
        Result(
            metric="peak memory (Spark JVM vs the chDB process)",
            value=spark_memory,
            unit="MB",
            reference_value=chdb_memory,
            higher_is_better=False,
            **common,
        ),
    ]
