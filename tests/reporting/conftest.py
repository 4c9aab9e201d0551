"""A small, hand-checked market in the lake's exact layout, and a migrated ClickHouse for it.

Four campaigns of two advertisers. Baseline days D-4 .. D-1 repeat one row per campaign at
12:00; day D0 has the rows below (money in USD, stored as micros):

| row | campaign | creative | publisher | country | device  | hour | impr. | clicks | conv. | spend | revenue |
| 1   | cmp-a    | cr-a1    | pub-1     | US      | mobile  | 9    | 600   | 15     | 3     | 60    | 90      |
| 2   | cmp-a    | cr-a2    | pub-2     | DE      | desktop | 21   | 400   | 10     | 1     | 40    | 30      |
| 3   | cmp-b    | cr-b1    | pub-1     | US      | mobile  | 9    | 500   | 1      | 0     | 20    | 0       |
| 4   | cmp-c    | cr-c1    | pub-2     | US      | desktop | 21   | 2000  | 40     | 4     | 250   | 500     |
| 5   | (bid requests: pub-1 at 9 h: 6000, pub-2 at 21 h: 4000)                                          |

Baseline days (index i = 0..3 for D-4 .. D-1), all cr-*1 on pub-1, US, mobile, 12 h:
cmp-a 1000 impressions, clicks 20/30/20/30, spend 40/60/40/60; cmp-b 500 impressions,
clicks 4/6/4/6, spend 20; plus 10,000 bid requests on pub-1. cmp-c starts on D0; cmp-d never
spends. Budgets: cmp-a 100, cmp-b 50, cmp-c 200, cmp-d 30 USD a day.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from adplatform.clickhouse.client import clickhouse_client
from adplatform.clickhouse.migrate import migrate
from adplatform.lakehouse.io import atomic_write_parquet
from adplatform.lakehouse.tables import GOLD_HOURLY_PERFORMANCE, REFERENCE_TABLES, reference_path
from adplatform.settings import Settings, load_settings

USD = 1_000_000
# Far enough back that a 7-day baseline fits, recent enough that the 400-day TTL keeps it.
D0 = date.today() - timedelta(days=10)
BASELINE_DAYS = [D0 - timedelta(days=n) for n in (4, 3, 2, 1)]

REFERENCE = {
    "advertisers": [
        {"advertiser_id": "adv-1", "name": "Acme", "vertical": "retail", "currency": "USD"},
        {"advertiser_id": "adv-2", "name": "Globex", "vertical": "travel", "currency": "EUR"},
    ],
    "campaigns": [
        {
            "campaign_id": "cmp-a",
            "advertiser_id": "adv-1",
            "name": "Acme Spring",
            "daily_budget_micros": 100 * USD,
        },
        {
            "campaign_id": "cmp-b",
            "advertiser_id": "adv-1",
            "name": "Acme Promo",
            "daily_budget_micros": 50 * USD,
        },
        {
            "campaign_id": "cmp-c",
            "advertiser_id": "adv-2",
            "name": "Globex Launch",
            "daily_budget_micros": 200 * USD,
        },
        {
            "campaign_id": "cmp-d",
            "advertiser_id": "adv-2",
            "name": "Globex Idle",
            "daily_budget_micros": 30 * USD,
        },
    ],
    "line_items": [
        {"line_item_id": f"li-{c}1", "campaign_id": f"cmp-{c}", "base_bid_cpm": 2.0} for c in "abcd"
    ],
    "creatives": [
        {
            "creative_id": "cr-a1",
            "campaign_id": "cmp-a",
            "line_item_id": "li-a1",
            "ad_size": "300x250",
        },
        {
            "creative_id": "cr-a2",
            "campaign_id": "cmp-a",
            "line_item_id": "li-a1",
            "ad_size": "728x90",
        },
        {
            "creative_id": "cr-b1",
            "campaign_id": "cmp-b",
            "line_item_id": "li-b1",
            "ad_size": "320x50",
        },
        {
            "creative_id": "cr-c1",
            "campaign_id": "cmp-c",
            "line_item_id": "li-c1",
            "ad_size": "300x250",
        },
    ],
    "publishers": [
        {"publisher_id": "pub-1", "name": "News Daily", "floor_cpm_usd": 0.5, "site_count": 2},
        {"publisher_id": "pub-2", "name": "Game Hub", "floor_cpm_usd": 0.8, "site_count": 1},
    ],
}


def gold_row(**values: Any) -> dict[str, Any]:
    """A Gold row: '' dimensions and 0 counts unless given; ratios derived as Spark does."""
    row: dict[str, Any] = {}
    for field in GOLD_HOURLY_PERFORMANCE.schema:
        if pa.types.is_string(field.type):
            row[field.name] = ""
        elif pa.types.is_integer(field.type):
            row[field.name] = 0
    row.update(values)

    def ratio(numerator: float, denominator: float) -> float | None:
        return numerator / denominator if denominator else None

    row["ctr"] = ratio(row["clicks"], row["impressions"])
    row["cvr"] = ratio(row["conversions"], row["clicks"])
    row["ecpm_micros"] = ratio(row["spend_micros"] * 1000, row["impressions"])
    row["win_rate"] = ratio(row["wins"], row["bids"])
    row["fill_rate"] = ratio(row["impressions"], row["bid_requests"])
    return row


def delivery(
    campaign: str,
    creative: str,
    publisher: str,
    country: str,
    device: str,
    impressions: int,
    clicks: int,
    conversions: int,
    spend_usd: int,
    revenue_usd: int,
) -> dict[str, Any]:
    return gold_row(
        advertiser_id="adv-1" if campaign in ("cmp-a", "cmp-b") else "adv-2",
        campaign_id=campaign,
        line_item_id=f"li-{campaign[-1]}1",
        creative_id=creative,
        publisher_id=publisher,
        country=country,
        device_type=device,
        bids=2 * impressions,
        wins=impressions,
        impressions=impressions,
        clicks=clicks,
        conversions=conversions,
        spend_micros=spend_usd * USD,
        revenue_micros=revenue_usd * USD,
    )


def bid_requests(publisher: str, country: str, device: str, count: int) -> dict[str, Any]:
    return gold_row(publisher_id=publisher, country=country, device_type=device, bid_requests=count)


def gold_hour_path(settings: Settings, day: date, hour: int, name: str = "part-0") -> Path:
    return (
        GOLD_HOURLY_PERFORMANCE.path(settings)
        / f"event_date={day.isoformat()}"
        / f"event_hour={hour}"
        / f"{name}.parquet"
    )


def write_gold_hour(
    settings: Settings, day: date, hour: int, rows: list[dict[str, Any]], name: str = "part-0"
) -> Path:
    table = pa.Table.from_pylist(rows, schema=GOLD_HOURLY_PERFORMANCE.schema)
    return atomic_write_parquet(table, gold_hour_path(settings, day, hour, name))


def write_reference(settings: Settings) -> None:
    for name, schema in REFERENCE_TABLES.items():
        table = pa.Table.from_pylist(REFERENCE[name], schema=schema)
        atomic_write_parquet(table, reference_path(settings, name))


def write_market(settings: Settings) -> None:
    """The hand-checked market (module docstring) into the lake under ``settings``."""
    write_reference(settings)
    for i, day in enumerate(BASELINE_DAYS):
        write_gold_hour(
            settings,
            day,
            12,
            [
                delivery(
                    "cmp-a",
                    "cr-a1",
                    "pub-1",
                    "US",
                    "mobile",
                    1000,
                    (20, 30)[i % 2],
                    2,
                    (40, 60)[i % 2],
                    0,
                ),
                delivery("cmp-b", "cr-b1", "pub-1", "US", "mobile", 500, (4, 6)[i % 2], 0, 20, 0),
                bid_requests("pub-1", "US", "mobile", 10_000),
            ],
        )
    write_gold_hour(
        settings,
        D0,
        9,
        [
            delivery("cmp-a", "cr-a1", "pub-1", "US", "mobile", 600, 15, 3, 60, 90),
            delivery("cmp-b", "cr-b1", "pub-1", "US", "mobile", 500, 1, 0, 20, 0),
            bid_requests("pub-1", "US", "mobile", 6000),
        ],
    )
    write_gold_hour(
        settings,
        D0,
        21,
        [
            delivery("cmp-a", "cr-a2", "pub-2", "DE", "desktop", 400, 10, 1, 40, 30),
            delivery("cmp-c", "cr-c1", "pub-2", "US", "desktop", 2000, 40, 4, 250, 500),
            bid_requests("pub-2", "US", "desktop", 4000),
        ],
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Local settings under a private data root, its chDB directory included even when the
    environment names another ClickHouse (the session's ADP_CLICKHOUSE_DSN, for one)."""
    data_root = tmp_path / "data"
    return load_settings(data_root=data_root, clickhouse_dsn=f"chdb://{data_root / 'clickhouse'}")


@pytest.fixture
def lake(settings: Settings) -> Settings:
    """Settings whose lake holds the hand-checked market."""
    write_market(settings)
    return settings


@pytest.fixture
def client(settings: Settings) -> Iterator[Any]:
    """A client on this test's own chDB directory, migrated, closed after the test."""
    with clickhouse_client(settings) as opened:
        migrate(opened)
        yield opened
