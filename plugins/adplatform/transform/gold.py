"""Silver → Gold: hourly performance rollups and the CTR training set.

Both start from the same view, every impression with its outcome (``impression_outcomes``):
whether it was clicked (an attributed first click), its attributed conversions and their value.
Clicks and conversions are therefore counted with their impression, in its hour and under its
dimensions, so CTR is a true rate in [0, 1] and the Gold clicks of an hour equal the clicked
impressions of that hour in the training set. Bid requests, bids, wins and impressions are
counted in the hour they happened.

When Silver hours change, the Gold hours to rebuild are those hours plus the hours of the
impressions their clicks and conversions are attributed to (``affected_hours``), and those the
replaced Silver attributed to (recorded by ``publish_silver`` before it swaps); the training
set is rebuilt for whole days, as its frequency feature counts within a UTC day.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from adplatform.events.schema import EventType
from adplatform.lakehouse.partitions import HOUR, hour_partition
from adplatform.lakehouse.tables import (
    ATTRIBUTED,
    GOLD_COUNTS,
    GOLD_CTR_TRAINING,
    GOLD_DIMENSIONS,
    GOLD_HOURLY_PERFORMANCE,
    SILVER_EVENTS,
)
from adplatform.lakehouse.windows import Windows
from adplatform.settings import Settings
from adplatform.transform.spark import spark_schema

HOUR_KEY = ["event_date", "event_hour"]
_OUTCOMES = (EventType.CLICK, EventType.CONVERSION)


def read_silver(
    spark: SparkSession, settings: Settings, hours: Iterable[datetime], event_types: Iterable[str]
) -> DataFrame:
    """The Silver rows of the given hours and event types (partition pruning by path)."""
    root = SILVER_EVENTS.path(settings)
    schema = spark_schema(SILVER_EVENTS)
    paths = [
        str(root / hour_partition(h) / f"event_type={t}")
        for h in sorted(set(hours))
        for t in event_types
    ]
    existing = [p for p in paths if Path(p).is_dir()]
    if not existing:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).option("basePath", str(root)).parquet(*existing)


def _impression_hour() -> Column:
    """The impression's hour as epoch seconds (no Python time zone conversions involved)."""
    return F.unix_seconds(F.date_trunc("hour", F.col("impression_time")))


def _epoch(hour: datetime) -> int:
    return int(hour.timestamp())


def affected_hours(
    spark: SparkSession, settings: Settings, silver_hours: Iterable[datetime]
) -> list[datetime]:
    """The Gold hours that rebuilt Silver hours feed: themselves, and the hours of the
    impressions their attributed clicks and conversions belong to."""
    hours = set(silver_hours)
    outcomes = read_silver(spark, settings, hours, _OUTCOMES).filter(
        F.col("attribution") == ATTRIBUTED
    )
    for row in outcomes.select(_impression_hour().alias("hour")).distinct().collect():
        hours.add(datetime.fromtimestamp(row.hour, UTC))
    return sorted(hours)


def impression_outcomes(
    spark: SparkSession, settings: Settings, hours: Iterable[datetime]
) -> DataFrame:
    """Every impression of ``hours`` with ``clicked`` (0/1), ``conversions`` and
    ``revenue_micros`` from the clicks and conversions attributed to it."""
    hours = sorted(set(hours))
    reach = Windows.from_settings(settings).lookback_hours
    later = {h + i * HOUR for h in hours for i in range(reach + 1)}
    # A literal set, not a joined DataFrame of hours: a local DataFrame would run a Python
    # worker on every evaluation.
    attributed = read_silver(spark, settings, later, _OUTCOMES).filter(
        (F.col("attribution") == ATTRIBUTED) & _impression_hour().isin([_epoch(h) for h in hours])
    )
    outcomes = attributed.groupBy("impression_id").agg(
        F.count(F.when(F.col("event_type") == EventType.CLICK, 1)).alias("_clicks"),
        F.count(F.when(F.col("event_type") == EventType.CONVERSION, 1)).alias("conversions"),
        F.coalesce(F.sum("conversion_value_micros"), F.lit(0)).alias("revenue_micros"),
    )
    impressions = read_silver(spark, settings, hours, [EventType.IMPRESSION])
    return (
        impressions.join(outcomes, "impression_id", "left")
        .withColumn("clicked", (F.coalesce(F.col("_clicks"), F.lit(0)) > 0).cast("byte"))
        .withColumn("conversions", F.coalesce(F.col("conversions"), F.lit(0)))
        .withColumn("revenue_micros", F.coalesce(F.col("revenue_micros"), F.lit(0)))
        .drop("_clicks")
    )


def _ratio(numerator: str, denominator: str, scale: int = 1) -> Column:
    return F.when(
        F.col(denominator) > 0, F.col(numerator) * F.lit(scale) / F.col(denominator)
    ).cast("double")


def hourly_performance(
    spark: SparkSession, settings: Settings, hours: Iterable[datetime]
) -> DataFrame:
    """GOLD_HOURLY_PERFORMANCE rows for ``hours``."""
    hours = sorted(set(hours))
    zero = F.lit(0).cast("long")
    auction = read_silver(
        spark, settings, hours, [EventType.BID_REQUEST, EventType.BID, EventType.WIN]
    ).select(
        *HOUR_KEY,
        *GOLD_DIMENSIONS,
        *[
            (F.col("event_type") == kind).cast("long").alias(f"{kind}s")
            for kind in (EventType.BID_REQUEST, EventType.BID, EventType.WIN)
        ],
        zero.alias("impressions"),
        zero.alias("clicks"),
        zero.alias("conversions"),
        zero.alias("cost_cpm_micros"),
        zero.alias("revenue_micros"),
    )
    served = impression_outcomes(spark, settings, hours).select(
        *HOUR_KEY,
        *GOLD_DIMENSIONS,
        zero.alias("bid_requests"),
        zero.alias("bids"),
        zero.alias("wins"),
        F.lit(1).cast("long").alias("impressions"),
        F.col("clicked").cast("long").alias("clicks"),
        F.col("conversions").cast("long"),
        F.col("clearing_price_cpm_micros").alias("cost_cpm_micros"),
        F.col("revenue_micros").cast("long"),
    )
    rollup = (
        auction.unionByName(served)
        .groupBy(*HOUR_KEY, *GOLD_DIMENSIONS)
        .agg(
            *[F.sum(name).alias(name) for name in GOLD_COUNTS],
            # Each impression costs its clearing CPM / 1000, rounded half up, as the training
            # set's clearing_price_micros: a row's spend is the sum of its impressions' costs.
            F.expr("sum((cost_cpm_micros + 500) div 1000)").alias("spend_micros"),
            F.sum("revenue_micros").alias("revenue_micros"),
        )
    )
    return rollup.select(
        *HOUR_KEY,
        *GOLD_DIMENSIONS,
        *GOLD_COUNTS,
        "spend_micros",
        "revenue_micros",
        _ratio("clicks", "impressions").alias("ctr"),
        _ratio("conversions", "clicks").alias("cvr"),
        _ratio("spend_micros", "impressions", 1000).alias("ecpm_micros"),
        _ratio("wins", "bids").alias("win_rate"),
        _ratio("impressions", "bid_requests").alias("fill_rate"),
    )


def ctr_training(spark: SparkSession, settings: Settings, days: Iterable[date]) -> DataFrame:
    """GOLD_CTR_TRAINING rows for whole UTC ``days``: one per impression, label ``clicked``."""
    hours = [
        datetime(d.year, d.month, d.day, tzinfo=UTC) + i * HOUR
        for d in sorted(set(days))
        for i in range(24)
    ]
    impressions = impression_outcomes(spark, settings, hours)
    # Frequency without one huge window per heavy user: rank within (user, hour), then add the
    # user's impressions in earlier hours of the day, so a hot key spreads over 24 tasks.
    user_hour = ["user_id_hash", *HOUR_KEY]
    within_hour = F.rank().over(Window.partitionBy(*user_hour).orderBy("event_time")) - 1
    earlier_hours = (
        impressions.groupBy(*user_hour)
        .count()
        .withColumn(
            "before_hour",
            F.coalesce(
                F.sum("count").over(
                    Window.partitionBy("user_id_hash", "event_date")
                    .orderBy("event_hour")
                    .rowsBetween(Window.unboundedPreceding, -1)
                ),
                F.lit(0),
            ),
        )
        .drop("count")
    )
    features = impressions.withColumn("_within_hour", within_hour).join(earlier_hours, user_hour)
    columns = {
        "hour_of_day": F.hour("event_time").cast("int"),
        "day_of_week": (F.weekday("event_time") + 1).cast("int"),  # 1 = Monday
        "user_impressions_before": (F.col("before_hour") + F.col("_within_hour")).cast("long"),
        # What the impression cost (clearing CPM / 1000, half up); Gold's spend sums these.
        "clearing_price_micros": F.expr("(clearing_price_cpm_micros + 500) div 1000"),
        "oracle_click_probability": F.col("sim_click_probability"),
    }
    return features.withColumns(columns).select(
        *[f.name for f in GOLD_CTR_TRAINING.schema], "event_date"
    )


def write_hourly_performance(
    spark: SparkSession, settings: Settings, hours: list[datetime], output: Path
) -> int:
    rows = hourly_performance(spark, settings, hours)
    # One file per hour, in no particular order: Spark's writer sorts by the partition columns
    # and drops any other sort, and readers (the ClickHouse load) order the rows themselves.
    (
        rows.repartition(*HOUR_KEY)
        .write.mode("overwrite")
        .partitionBy(*HOUR_KEY)
        .parquet(str(output))
    )
    return _count(spark, output, spark_schema(GOLD_HOURLY_PERFORMANCE))


def write_ctr_training(
    spark: SparkSession, settings: Settings, days: list[date], output: Path
) -> int:
    rows = ctr_training(spark, settings, days)
    (
        rows.repartition("event_date")
        .sortWithinPartitions("event_time", "impression_id")
        .write.mode("overwrite")
        .partitionBy("event_date")
        .parquet(str(output))
    )
    return _count(spark, output, spark_schema(GOLD_CTR_TRAINING))


def _count(spark: SparkSession, output: Path, schema: StructType) -> int:
    return spark.read.schema(schema).parquet(str(output)).count()
