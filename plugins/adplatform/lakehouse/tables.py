"""The lakehouse tables: where each lives, how it is partitioned, and its columns.

This is the contract between the stages: the ingest worker writes Bronze, Spark reads Bronze
and writes Silver and Gold, ClickHouse publishing and CTR training read Gold. Every table is
Parquet under ``<data_root>/lake/<layer>/<name>/`` with Hive-style partition directories
(``event_date=2026-11-26/event_hour=13/...``), readable alike by Spark, chDB and DuckDB.

Conventions: money is integer micros of the reporting currency (USD); times are UTC; dimension
strings are never null (``""`` means "not applicable", e.g. the campaign of a bid request).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from adplatform.events.schema import ALL_FIELDS, Kind
from adplatform.settings import Settings

_ARROW_TYPES = {
    Kind.STRING: pa.string(),
    Kind.ENUM: pa.string(),
    Kind.INT: pa.int64(),
    Kind.PRICE: pa.float64(),
    Kind.PROBABILITY: pa.float64(),
}


@dataclass(frozen=True)
class Table:
    layer: str
    name: str
    grain: str
    schema: pa.Schema  # the columns stored in the files (partition columns excluded)
    partitioning: tuple[str, ...] = ()

    def path(self, settings: Settings) -> Path:
        return settings.lake_root / self.layer / self.name

    @property
    def qualified_name(self) -> str:
        return f"{self.layer}.{self.name}"


PARTITION_TYPES = {
    "event_date": pa.string(),
    "event_hour": pa.int32(),
    "event_type": pa.string(),
    "ingest_date": pa.string(),
}

BRONZE_EVENTS = Table(
    layer="bronze",
    name="ad_events",
    grain="one row per accepted Kafka message (topic, partition, offset); duplicates kept",
    schema=pa.schema(
        [pa.field(f.name, _ARROW_TYPES[f.kind]) for f in ALL_FIELDS if f.name != "event_type"]
        + [
            pa.field("_topic", pa.string(), nullable=False),
            pa.field("_partition", pa.int32(), nullable=False),
            pa.field("_offset", pa.int64(), nullable=False),
            pa.field("_ingested_at", pa.timestamp("ms", tz="UTC"), nullable=False),
            # The record's Kafka timestamp (log-append time): when the event reached the broker,
            # what the late window is measured against. Null in files from before the column.
            pa.field("_broker_time", pa.timestamp("ms", tz="UTC")),
        ]
    ),
    partitioning=("event_date", "event_hour", "event_type"),
)

QUARANTINE_EVENTS = Table(
    layer="quarantine",
    name="ad_events",
    grain="one row per rejected Kafka message",
    schema=pa.schema(
        [
            pa.field("reason", pa.string(), nullable=False),
            pa.field("detail", pa.string(), nullable=False),
            pa.field("payload", pa.binary(), nullable=False),
            pa.field("_topic", pa.string(), nullable=False),
            pa.field("_partition", pa.int32(), nullable=False),
            pa.field("_offset", pa.int64(), nullable=False),
            pa.field("_ingested_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        ]
    ),
    partitioning=("ingest_date",),
)

# Silver keeps every context column of the event; money is normalised to USD micros.
_SILVER_CONTEXT = (
    "request_id",
    "publisher_id",
    "site_id",
    "placement_id",
    "ad_size",
    "device_type",
    "os",
    "country",
    "region",
    "user_id_hash",
)
# "" when not applicable: the campaign of a bid request, the click of an impression, the deal
# of a v1 event (deal_id came with schema v2), the currency of a click.
SILVER_OPTIONAL_STRINGS = (
    "advertiser_id",
    "campaign_id",
    "line_item_id",
    "creative_id",
    "impression_id",
    "click_id",
    "deal_id",
    "currency",  # the bidder's original currency
)
# Prices per mille and the conversion value, in USD micros; null where the type has none.
SILVER_MONEY = (
    "floor_price_cpm_micros",
    "bid_price_cpm_micros",
    "clearing_price_cpm_micros",
    "conversion_value_micros",
)
# Attribution of clicks and conversions ("" for the other types).
ATTRIBUTED = "attributed"  # a click: the first click on its impression within the click window
REPEAT = "repeat"  # a click: a later click on an impression already clicked
UNATTRIBUTED = "unattributed"  # no impression (click) within the window: counted nowhere
ATTRIBUTION_VALUES = ("", ATTRIBUTED, REPEAT, UNATTRIBUTED)

SILVER_EVENTS = Table(
    layer="silver",
    name="ad_events",
    grain="one row per distinct accepted event (event_id), in the hour it happened; the "
    "earliest ingested copy is kept, events later than the late window are left out",
    schema=pa.schema(
        [
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("schema_version", pa.int64(), nullable=False),
            pa.field("event_time", pa.timestamp("ms", tz="UTC"), nullable=False),
            *[
                pa.field(name, pa.string(), nullable=False)
                for name in _SILVER_CONTEXT + SILVER_OPTIONAL_STRINGS
            ],
            *[pa.field(name, pa.int64()) for name in SILVER_MONEY],
            pa.field("sim_click_probability", pa.float64()),  # impressions of synthetic traffic
            pa.field("attribution", pa.string(), nullable=False),  # ATTRIBUTION_VALUES
            # Clicks and conversions: when the impression they are attributed to happened.
            pa.field("impression_time", pa.timestamp("ms", tz="UTC")),
            # Lineage of the copy kept: Kafka coordinates, ingest time, Bronze file (relative
            # to the Bronze table).
            pa.field("_topic", pa.string(), nullable=False),
            pa.field("_partition", pa.int32(), nullable=False),
            pa.field("_offset", pa.int64(), nullable=False),
            pa.field("_ingested_at", pa.timestamp("ms", tz="UTC"), nullable=False),
            pa.field("_source_file", pa.string(), nullable=False),
        ]
    ),
    partitioning=("event_date", "event_hour", "event_type"),
)

GOLD_DIMENSIONS = (
    "advertiser_id",
    "campaign_id",
    "line_item_id",
    "creative_id",
    "publisher_id",
    "country",
    "device_type",
)
GOLD_COUNTS = ("bid_requests", "bids", "wins", "impressions", "clicks", "conversions")

GOLD_HOURLY_PERFORMANCE = Table(
    layer="gold",
    name="hourly_performance",
    grain="one row per (event_date, event_hour, advertiser, campaign, line item, creative, "
    "publisher, country, device type); bid requests, bids, wins and impressions counted in the "
    "hour they happened, attributed clicks and conversions with their impression (its hour and "
    "dimensions), so that CTR is a true rate in [0, 1]",
    schema=pa.schema(
        [pa.field(name, pa.string(), nullable=False) for name in GOLD_DIMENSIONS]
        + [pa.field(name, pa.int64(), nullable=False) for name in GOLD_COUNTS]
        + [
            pa.field("spend_micros", pa.int64(), nullable=False),  # impression cost, USD micros
            pa.field("revenue_micros", pa.int64(), nullable=False),  # conversion value, USD µ
            # Ratios at this grain (null when the denominator is 0); re-derive from the sums
            # when aggregating.
            pa.field("ctr", pa.float64()),  # clicks / impressions
            pa.field("cvr", pa.float64()),  # conversions / clicks
            pa.field("ecpm_micros", pa.float64()),  # spend per 1000 impressions
            pa.field("win_rate", pa.float64()),  # wins / bids
            pa.field("fill_rate", pa.float64()),  # impressions / bid_requests
        ]
    ),
    partitioning=("event_date", "event_hour"),
)

GOLD_CTR_TRAINING = Table(
    layer="gold",
    name="ctr_training",
    grain="one row per impression, labelled with whether it was clicked",
    schema=pa.schema(
        [
            pa.field("impression_id", pa.string(), nullable=False),
            pa.field("event_time", pa.timestamp("ms", tz="UTC"), nullable=False),
            pa.field("hour_of_day", pa.int32(), nullable=False),
            pa.field("day_of_week", pa.int32(), nullable=False),  # 1 = Monday ... 7 = Sunday
            *[
                pa.field(name, pa.string(), nullable=False)
                for name in (
                    "advertiser_id",
                    "campaign_id",
                    "line_item_id",
                    "creative_id",
                    "publisher_id",
                    "site_id",
                    "placement_id",
                    "ad_size",
                    "device_type",
                    "os",
                    "country",
                    "region",
                    "user_id_hash",
                )
            ],
            # The user's impressions earlier in the same UTC day (frequency), never later ones.
            pa.field("user_impressions_before", pa.int64(), nullable=False),
            # What the impression cost: clearing CPM / 1000, USD micros.
            pa.field("clearing_price_micros", pa.int64(), nullable=False),
            pa.field("clicked", pa.int8(), nullable=False),  # the label
            # Evaluation only, never a feature: the generator's true click probability.
            pa.field("oracle_click_probability", pa.float64()),
        ]
    ),
    partitioning=("event_date",),
)

# Reference (dimension) data, written whole on each load.
REFERENCE_TABLES = {
    "advertisers": pa.schema(
        [
            ("advertiser_id", pa.string()),
            ("name", pa.string()),
            ("vertical", pa.string()),
            ("currency", pa.string()),
        ]
    ),
    "campaigns": pa.schema(
        [
            ("campaign_id", pa.string()),
            ("advertiser_id", pa.string()),
            ("name", pa.string()),
            ("daily_budget_micros", pa.int64()),
        ]
    ),
    "line_items": pa.schema(
        [
            ("line_item_id", pa.string()),
            ("campaign_id", pa.string()),
            ("base_bid_cpm", pa.float64()),
        ]
    ),
    "creatives": pa.schema(
        [
            ("creative_id", pa.string()),
            ("campaign_id", pa.string()),
            ("line_item_id", pa.string()),
            ("ad_size", pa.string()),
        ]
    ),
    "publishers": pa.schema(
        [
            ("publisher_id", pa.string()),
            ("name", pa.string()),
            ("floor_cpm_usd", pa.float64()),
            ("site_count", pa.int32()),
        ]
    ),
}


def reference_path(settings: Settings, name: str) -> Path:
    return settings.reference_dir / f"{name}.parquet"
