"""Bronze → Silver: one clean, deduplicated, attributed row per event, money in USD micros.

Silver hour H is a pure function of Bronze: the events of hour H, plus the impressions and
clicks of the ``lookback`` hours before it (a conversion's click, and that click's impression,
may lie that far back). So rebuilding any set of hours, in any order, gives the same rows.

- Deduplication: one row per ``event_id`` across files and runs; the earliest ingested copy
  (then the lowest Kafka coordinates) is kept, with its lineage.
- Late events: a Bronze partition (hour, event type) accepts events ingested up to the late
  window after its first event; later copies stay in Bronze, counted as ``too_late``, so a
  published hour becomes final. Replays are not "late": only arrival order matters.
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
from adplatform.events.schema import EventType
from adplatform.lakehouse.tables import (
    ATTRIBUTED,
    BRONZE_EVENTS,
    REPEAT,
    SILVER_EVENTS,
    SILVER_OPTIONAL_STRINGS,
    UNATTRIBUTED,
)
from adplatform.settings import Settings
from adplatform.transform.plan import Plan
from adplatform.transform.spark import spark_schema
from adplatform.transform.windows import Windows

PARTITION = ["event_date", "event_hour", "event_type"]
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


def read_bronze(spark: SparkSession, settings: Settings, plan: Plan) -> DataFrame:
    """The plan's Bronze snapshot: the rows of its hours (every event type) and of the lookback
    hours before them (impressions and clicks), with ``is_target`` telling them apart."""
    root = BRONZE_EVENTS.path(settings)
    return _read(spark, root, plan.bronze_paths(root, target=True), True).unionByName(
        _read(spark, root, plan.bronze_paths(root, target=False), False)
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
    return frame.select("*", source.alias("_source_file"), F.lit(is_target).alias("is_target"))


def deduplicate(bronze: DataFrame, windows: Windows) -> DataFrame:
    """One row per event_id (the earliest ingested copy), flagged ``accepted`` unless it came
    later than the late window after its partition's first event."""
    first_copy = Window.partitionBy("event_id").orderBy(
        "_ingested_at", "_topic", "_partition", "_offset"
    )
    opened = bronze.groupBy(PARTITION).agg(F.min("_ingested_at").alias("_opened_at"))
    late_ms = int(windows.late.total_seconds() * 1000)
    return (
        bronze.withColumn("_copy", F.row_number().over(first_copy))
        .filter(F.col("_copy") == 1)
        .drop("_copy")
        .join(F.broadcast(opened), PARTITION)
        .withColumn(
            "accepted",
            F.unix_millis("_ingested_at") <= F.unix_millis("_opened_at") + F.lit(late_ms),
        )
        .drop("_opened_at")
    )


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
    kept = deduplicate(read_bronze(spark, settings, plan), windows).persist()
    counts = (
        kept.filter("is_target")
        .groupBy(PARTITION)
        .agg(
            F.count("*").alias("distinct_events"),
            F.count(F.when(~F.col("accepted"), 1)).alias("too_late"),
        )
    )
    events = normalise(kept.filter("accepted"))
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
    return SilverResult(silver=silver, counts=counts)


def write_silver(
    spark: SparkSession, settings: Settings, plan: Plan, output: Path
) -> dict[str, Any]:
    """Build Silver for the plan's hours into ``output`` (a staged copy of the table) and return the
    too-late counts the Silver gate reconciles against Bronze, and the attribution counts."""
    result = build_silver(spark, settings, plan)
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
