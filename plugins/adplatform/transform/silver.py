"""Bronze → Silver: one clean, deduplicated, attributed row per event, money in USD micros.

Silver hour H is a pure function of Bronze: the events of hour H, plus the impressions and
clicks of the ``lookback`` hours before it (a conversion's click, and that click's impression,
may lie that far back). So rebuilding any set of hours, in any order, gives the same rows.

- Late events, on the broker's clock (``_broker_time``, the Kafka record's log-append time;
  ``_ingested_at`` for files from before that column): an event is accepted when it reached the
  broker within the late window after its hour ended, or, for an hour whose events first
  arrived after it ended (a historical load), after the first of them on its Kafka partition.
  Later ones stay in Bronze, counted as ``too_late``. The decision reads only the broker's
  stamps, which are non-decreasing along a Kafka partition: a stalled consumer, a replay or a
  rebuild with more files never changes it, so a published hour is final.
- Deduplication: one row per ``event_id`` across files, runs and hours: of the accepted copies,
  the one in the earliest hour, then the first to reach the broker (then the lowest Kafka
  coordinates) is kept, with its lineage. Copies up to ``lookback`` hours apart are seen (the
  hours a run reads anyway); copies elsewhere are counted per partition as ``kept_elsewhere``.
- Attribution: the first click on an impression within the click window is ``attributed``,
  later ones ``repeat``; a conversion is ``attributed`` when its click (either kind) is found
  within the conversion window. Clicks and conversions carry their impression's time.
- Currency: prices per mille and conversion values become integer USD micros with the fixed
  rates of :mod:`adplatform.events.currency` (half-even rounding, as ``to_micros``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from adplatform.events.currency import MICROS, USD_PER_UNIT
from adplatform.events.generator import HOUR_MS
from adplatform.events.schema import EventType
from adplatform.lakehouse.runs import Plan
from adplatform.lakehouse.tables import (
    ATTRIBUTED,
    BRONZE_EVENTS,
    REPEAT,
    SILVER_EVENTS,
    SILVER_OPTIONAL_STRINGS,
    UNATTRIBUTED,
)
from adplatform.lakehouse.windows import LOOKBACK_EVENT_TYPES, Windows
from adplatform.settings import Settings
from adplatform.transform.spark import spark_schema

PARTITION = ["event_date", "event_hour", "event_type"]
# What deduplication and the late window read of the lookback hours' other events.
_COPY_COLUMNS = [
    "event_id", "event_time_ms", "_topic", "_partition", "_offset", "_arrived_at", *PARTITION,
    "is_target",
]  # fmt: skip
_LOOKBACK_PARTITIONS = {f"event_type={t}" for t in LOOKBACK_EVENT_TYPES}
_CLICK, _CONVERSION, _IMPRESSION = EventType.CLICK, EventType.CONVERSION, EventType.IMPRESSION
# Bronze price columns → Silver money columns.
_MONEY = {
    "floor_price_cpm": "floor_price_cpm_micros",
    "bid_price_cpm": "bid_price_cpm_micros",
    "clearing_price_cpm": "clearing_price_cpm_micros",
    "conversion_value": "conversion_value_micros",
}


@dataclass(frozen=True)
class SilverResult:
    silver: DataFrame  # the Silver rows of the target hours
    counts: DataFrame  # per (hour, event type): distinct events and too-late ones
    cached: DataFrame  # the flagged Bronze both read: unpersist it when done


def read_bronze(spark: SparkSession, settings: Settings, plan: Plan) -> DataFrame:
    """The plan's Bronze snapshot, with ``is_target`` telling the hours it builds from the
    lookback hours before them. Of the lookback hours, attribution needs the impressions and
    clicks whole; of other events only what deduplication and the late window read."""
    root = BRONZE_EVENTS.path(settings)
    earlier = plan.bronze_paths(root, target=False)
    whole = [f for f in earlier if f.parent.name in _LOOKBACK_PARTITIONS]
    ids = [f for f in earlier if f.parent.name not in _LOOKBACK_PARTITIONS]
    return (
        _read(spark, root, plan.bronze_paths(root, target=True), True)
        .unionByName(_read(spark, root, whole, False))
        .unionByName(
            _read(spark, root, ids, False).select(*_COPY_COLUMNS), allowMissingColumns=True
        )
    )


def _read(spark: SparkSession, root: Path, files: list[Path], is_target: bool) -> DataFrame:
    schema = spark_schema(BRONZE_EVENTS)
    if files:
        paths = [str(f) for f in files]
        frame = spark.read.schema(schema).option("basePath", str(root)).parquet(*paths)
        table = f"/{BRONZE_EVENTS.layer}/{BRONZE_EVENTS.name}/"
        source = F.regexp_replace(F.col("_metadata.file_path"), f"^.*{table}", "")
    else:
        frame = spark.createDataFrame([], schema)
        source = F.lit("")
    return frame.select(
        "*",
        F.coalesce("_broker_time", "_ingested_at").alias("_arrived_at"),
        source.alias("_source_file"),
        F.lit(is_target).alias("is_target"),
    )


def deduplicate(bronze: DataFrame, windows: Windows) -> DataFrame:
    """Every Bronze row flagged: ``accepted`` (on time), ``kept`` (the copy that counts for its
    event), ``counted`` (whether any copy of its event counts) and ``kept_here`` (whether the
    counted copy is in this row's partition)."""
    stream = [*PARTITION, "_topic", "_partition"]  # one Kafka partition's events of one hour
    opened = bronze.groupBy(stream).agg(F.min("_arrived_at").alias("_opened_at"))
    hour = F.floor(F.col("event_time_ms") / HOUR_MS)  # hours since the epoch
    deadline = F.greatest((hour + 1) * HOUR_MS, F.unix_millis("_opened_at")) + F.lit(
        int(windows.late.total_seconds() * 1000)
    )
    copies = Window.partitionBy("event_id").orderBy(
        F.desc("accepted"), hour, "_arrived_at", "_topic", "_partition", "_offset"
    )
    flagged = bronze.join(F.broadcast(opened), stream).withColumn(
        "accepted", F.unix_millis("_arrived_at") <= deadline
    )
    return flagged.withColumns(
        {
            "kept": (F.row_number().over(copies) == 1) & F.col("accepted"),
            "counted": F.first("accepted").over(copies),
            "kept_here": F.struct(*PARTITION) == F.first(F.struct(*PARTITION)).over(copies),
        }
    ).drop("_opened_at")


def _usd_micros(amount: str, rate: Column) -> Column:
    # Same arithmetic as currency.to_micros: amount * rate * 1e6, rounded half-even.
    return F.bround(F.col(amount) * rate * F.lit(float(MICROS))).cast("long")


def normalise(events: DataFrame) -> DataFrame:
    """Event time as a timestamp, money as USD micros, "" for dimensions that do not apply."""
    rates = F.create_map(*[F.lit(v) for pair in USD_PER_UNIT.items() for v in pair])
    rate = rates[F.col("currency")]
    columns: dict[str, Column] = {
        "event_time": F.timestamp_millis("event_time_ms"),
        **{silver: _usd_micros(bronze, rate) for bronze, silver in _MONEY.items()},
        **{name: F.coalesce(F.col(name), F.lit("")) for name in SILVER_OPTIONAL_STRINGS},
    }
    return events.withColumns(columns)


def attribute_clicks(events: DataFrame, windows: Windows) -> DataFrame:
    """Every click with its attribution and its impression's time."""
    impressions = (
        events.filter(F.col("event_type") == _IMPRESSION)
        .groupBy("impression_id")  # the first impression, should an id ever repeat
        .agg(F.min("event_time").alias("_impression_time"))
    )
    clicks = events.filter(F.col("event_type") == _CLICK).join(impressions, "impression_id", "left")
    delay = F.unix_millis("event_time") - F.unix_millis("_impression_time")
    clicks = clicks.withColumn(
        "_in_window",
        F.coalesce(delay.between(0, int(windows.click.total_seconds() * 1000)), F.lit(False)),
    )
    order = Window.partitionBy("impression_id", "_in_window").orderBy("event_time", "event_id")
    return clicks.withColumns(
        {
            "attribution": F.when(~F.col("_in_window"), F.lit(UNATTRIBUTED))
            .when(F.row_number().over(order) == 1, F.lit(ATTRIBUTED))
            .otherwise(F.lit(REPEAT)),
            "impression_time": F.when(F.col("_in_window"), F.col("_impression_time")),
        }
    ).drop("_impression_time", "_in_window")


def attribute_conversions(events: DataFrame, clicks: DataFrame, windows: Windows) -> DataFrame:
    """Every conversion, attributed when its click (attributed or repeat) is in the window."""
    traced = (
        clicks.filter(F.col("attribution").isin(ATTRIBUTED, REPEAT))
        .groupBy("click_id")
        .agg(
            F.min("event_time").alias("_click_time"),
            F.min_by("impression_time", "event_time").alias("_impression_time"),
        )
    )
    conversions = events.filter(F.col("event_type") == _CONVERSION).join(traced, "click_id", "left")
    delay = F.unix_millis("event_time") - F.unix_millis("_click_time")
    in_window = F.coalesce(
        delay.between(0, int(windows.conversion.total_seconds() * 1000)), F.lit(False)
    )
    return conversions.withColumns(
        {
            "attribution": F.when(in_window, F.lit(ATTRIBUTED)).otherwise(F.lit(UNATTRIBUTED)),
            "impression_time": F.when(in_window, F.col("_impression_time")),
        }
    ).drop("_click_time", "_impression_time")


def build_silver(spark: SparkSession, settings: Settings, plan: Plan) -> SilverResult:
    windows = Windows.from_settings(settings)
    # Read once: the Silver rows and the per-partition counts both come from it.
    flagged = deduplicate(read_bronze(spark, settings, plan), windows).persist()
    counts = (
        flagged.filter("is_target")
        .groupBy(PARTITION)
        .agg(
            F.count_distinct("event_id").alias("distinct_events"),
            F.count_distinct(F.when(~F.col("counted"), F.col("event_id"))).alias("too_late"),
            F.count_distinct(
                F.when(F.col("counted") & ~F.col("kept_here"), F.col("event_id"))
            ).alias("kept_elsewhere"),
        )
    )
    attributable = F.col("is_target") | F.col("event_type").isin(*LOOKBACK_EVENT_TYPES)
    events = normalise(flagged.filter(F.col("kept") & attributable))
    clicks = attribute_clicks(events, windows)
    conversions = attribute_conversions(events, clicks, windows)
    others = events.filter(~F.col("event_type").isin(_CLICK, _CONVERSION)).withColumns(
        {"attribution": F.lit(""), "impression_time": F.lit(None).cast("timestamp")}
    )
    columns = [f.name for f in SILVER_EVENTS.schema] + PARTITION
    silver = (
        others.select(*columns, "is_target")
        .unionByName(clicks.select(*columns, "is_target"))
        .unionByName(conversions.select(*columns, "is_target"))
        .filter("is_target")
        .select(*columns)
    )
    return SilverResult(silver=silver, counts=counts, cached=flagged)


def write_silver(
    spark: SparkSession, settings: Settings, plan: Plan, output: Path
) -> dict[str, Any]:
    """Build Silver for the plan's hours into ``output`` (a staged copy of the table) and return the
    too-late counts the Silver gate reconciles against Bronze, and the attribution counts."""
    result = build_silver(spark, settings, plan)
    # The Spark Connect server outlives the job: its cache must not keep every run's Bronze.
    try:
        (
            result.silver.repartition(*PARTITION)
            .sortWithinPartitions("event_time", "event_id")
            .write.mode("overwrite")
            .partitionBy(*PARTITION)
            .parquet(str(output))
        )
        partitions = [row.asDict() for row in result.counts.orderBy(PARTITION).collect()]
        outcomes = (
            spark.read.schema(spark_schema(SILVER_EVENTS))
            .parquet(str(output))
            .filter(F.col("event_type").isin(_CLICK, _CONVERSION))
            .groupBy("event_type", "attribution")
            .count()
        )
        attribution = {f"{r.event_type}:{r.attribution}": r["count"] for r in outcomes.collect()}
        return {"partitions": partitions, "attribution": attribution}
    finally:
        result.cached.unpersist()
