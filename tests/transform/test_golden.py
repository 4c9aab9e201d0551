"""Silver and Gold of the handmade dataset (tests/transform/handmade.py) against results worked
out by hand, and the same tables again after a rerun and a backfill."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from adplatform.lakehouse.tables import GOLD_CTR_TRAINING, GOLD_HOURLY_PERFORMANCE, SILVER_EVENTS
from adplatform.settings import load_settings
from tests.transform.handmade import X, Y, Z, write_handmade_bronze
from tests.transform.run import read_table, run_transform

DAY = date(2026, 3, 2)


def ts(hh_mm_ss: str) -> pd.Timestamp:
    return pd.Timestamp(f"2026-03-02T{hh_mm_ss}", tz="UTC")


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    settings = load_settings(data_root=tmp_path_factory.mktemp("golden"))
    write_handmade_bronze(settings)
    run_transform(spark, settings, "first")
    tables = {
        t.name: read_table(settings, t)
        for t in (SILVER_EVENTS, GOLD_HOURLY_PERFORMANCE, GOLD_CTR_TRAINING)
    }
    return settings, tables


def silver_rows(lake) -> pd.DataFrame:
    return lake[1]["ad_events"].set_index("event_id")


def test_silver_keeps_each_event_once_and_leaves_out_the_too_late_one(lake):
    silver = silver_rows(lake)
    # e01..e30 minus e19 (a bid request of 10:45 that reached the broker at 15:05, after its
    # hour's late window closed at 11:00 + 4 h); e02 and e05 were delivered two and three times.
    assert sorted(silver.index) == sorted(f"e{i:02d}" for i in range(1, 31) if i != 19)
    per_partition = silver.groupby(["event_hour", "event_type"]).size().to_dict()
    assert per_partition == {
        (10, "bid_request"): 4,
        (10, "bid"): 5,
        (10, "win"): 4,
        (10, "impression"): 4,
        (10, "click"): 2,
        (10, "conversion"): 1,
        (11, "bid_request"): 2,
        (11, "bid"): 1,
        (11, "win"): 1,
        (11, "impression"): 1,
        (11, "click"): 2,
        (11, "conversion"): 1,
        (12, "click"): 1,
    }


def test_silver_keeps_the_earliest_copy_with_its_lineage(lake):
    silver = silver_rows(lake)
    # e05 came in batches a (offset 4, 10:30), b (11:05) and e (15:05): batch a's copy wins.
    assert silver.loc["e05", ["_topic", "_partition", "_offset"]].tolist() == ["ad-events", 0, 4]
    assert silver.loc["e05", "_ingested_at"] == ts("10:30:00")
    assert silver.loc["e05", "_source_file"] == (
        "event_date=2026-03-02/event_hour=10/event_type=impression/a.parquet"
    )
    # e02: batch a, offset 1, not batch b's copy.
    assert silver.loc["e02", "_offset"] == 1
    # e18 is late (10:40 event, ingested 11:45) but inside the window: kept from batch c.
    assert silver.loc["e18", "_source_file"].endswith("event_type=impression/c.parquet")


def test_silver_attributes_clicks_and_conversions(lake):
    silver = silver_rows(lake)
    outcomes = silver[silver["attribution"] != ""][["attribution", "impression_time"]]
    i1, i3 = ts("10:05:02.400"), ts("10:59:50")
    assert outcomes.to_dict("index") == {
        "e06": {"attribution": "attributed", "impression_time": i1},  # first click on i1
        "e07": {"attribution": "repeat", "impression_time": i1},  # second click on i1
        "e08": {"attribution": "attributed", "impression_time": i1},  # converts on the repeat
        "e17": {"attribution": "attributed", "impression_time": i3},  # next hour, same impression
        "e21": {"attribution": "unattributed", "impression_time": pd.NaT},  # unknown impression
        "e22": {"attribution": "unattributed", "impression_time": pd.NaT},  # 130 min > 60 min
        "e23": {"attribution": "unattributed", "impression_time": pd.NaT},  # unknown click
    }
    others = silver[~silver["event_type"].isin(["click", "conversion"])]
    assert set(others["attribution"]) == {""}


def test_silver_money_is_usd_micros(lake):
    silver = silver_rows(lake)
    money = [
        "floor_price_cpm_micros",
        "bid_price_cpm_micros",
        "clearing_price_cpm_micros",
        "conversion_value_micros",
    ]

    def micros(event_id):
        return {k: int(v) for k, v in silver.loc[event_id, money].items() if not pd.isna(v)}

    assert micros("e01") == {"floor_price_cpm_micros": 1_000_000}  # USD 1.00
    assert micros("e02") == {"bid_price_cpm_micros": 2_700_000}  # EUR 2.50 x 1.08
    assert micros("e03") == {"bid_price_cpm_micros": 2_680_000}  # JPY 400 x 0.0067
    assert micros("e05") == {"clearing_price_cpm_micros": 2_160_000}  # EUR 2.00 x 1.08
    assert micros("e12") == {"clearing_price_cpm_micros": 1_675_000}  # JPY 250 x 0.0067
    assert micros("e16") == {"clearing_price_cpm_micros": 1_500_000}  # USD 1.50
    assert micros("e08") == {"conversion_value_micros": 54_000_000}  # EUR 50 x 1.08
    assert micros("e06") == {}  # a click has no price
    assert silver.loc["e12", "currency"] == "JPY"
    assert silver.loc["e06", "currency"] == ""


def test_silver_reads_files_from_before_and_after_schema_v2(lake):
    silver = silver_rows(lake)
    v2 = {"e14", "e15", "e16", "e17"}
    assert set(silver.index[silver["deal_id"] != ""]) == v2
    assert set(silver.loc[sorted(v2), "deal_id"]) == {"deal-z"}
    assert set(silver.index[silver["schema_version"] == 2]) == v2
    # Batch a was written without a deal_id column at all; its events read as "no deal".
    assert silver.loc["e05", "deal_id"] == ""
    # "" rather than null for dimensions that do not apply.
    assert silver.loc["e01", ["campaign_id", "impression_id", "click_id"]].tolist() == ["", "", ""]


NO_DEMAND = {"advertiser_id": "", "campaign_id": "", "line_item_id": "", "creative_id": ""}
US = {"publisher_id": "pub-1", "country": "US", "device_type": "mobile"}
DE = {"publisher_id": "pub-2", "country": "DE", "device_type": "desktop"}
NONE = float("nan")


def gold(
    hour,
    dims,
    bid_requests=0,
    bids=0,
    wins=0,
    impressions=0,
    clicks=0,
    conversions=0,
    spend=0,
    revenue=0,
    ctr=NONE,
    cvr=NONE,
    ecpm=NONE,
    win_rate=NONE,
    fill_rate=NONE,
):
    return {
        "event_date": "2026-03-02",
        "event_hour": hour,
        **dims,
        "bid_requests": bid_requests,
        "bids": bids,
        "wins": wins,
        "impressions": impressions,
        "clicks": clicks,
        "conversions": conversions,
        "spend_micros": spend,
        "revenue_micros": revenue,
        "ctr": ctr,
        "cvr": cvr,
        "ecpm_micros": ecpm,
        "win_rate": win_rate,
        "fill_rate": fill_rate,
    }


EXPECTED_HOURLY = [
    # Hour 10, no demand: bid requests e01, e09, e26 (pub-1) and e13 (pub-2); none filled.
    gold(10, NO_DEMAND | US, bid_requests=3, fill_rate=0.0),
    gold(10, NO_DEMAND | DE, bid_requests=1, fill_rate=0.0),
    # X on pub-1: bids e02, e25; wins e04, e20; impressions i1 (EUR 2.00) and i4 (EUR 1.00).
    # Spend: (2,160,000 + 1,080,000) CPM-micros / 1000 = 3,240 micros. i1 was clicked (the
    # second click is a repeat) and converted for EUR 50 = 54,000,000 micros.
    gold(
        10,
        X | US,
        bids=2,
        wins=2,
        impressions=2,
        clicks=1,
        conversions=1,
        spend=3240,
        revenue=54_000_000,
        ctr=0.5,
        cvr=1.0,
        ecpm=1_620_000.0,
        win_rate=1.0,
    ),
    # Y on pub-1: bids e03, e10; won r2 only; i2 (JPY 250 = 1,675,000 CPM-micros) never
    # clicked in time.
    gold(
        10,
        Y | US,
        bids=2,
        wins=1,
        impressions=1,
        spend=1675,
        ctr=0.0,
        ecpm=1_675_000.0,
        win_rate=0.5,
    ),
    # Z on pub-2: i3 (USD 1.50) clicked at 11:00:20, counted here with its impression.
    gold(
        10,
        Z | DE,
        bids=1,
        wins=1,
        impressions=1,
        clicks=1,
        spend=1500,
        ctr=1.0,
        cvr=0.0,
        ecpm=1_500_000.0,
        win_rate=1.0,
    ),
    # Hour 11: requests e24 and e27; X wins r6 at EUR 3.00 = 3,240,000 CPM-micros.
    gold(11, NO_DEMAND | US, bid_requests=2, fill_rate=0.0),
    gold(
        11,
        X | US,
        bids=1,
        wins=1,
        impressions=1,
        spend=3240,
        ctr=0.0,
        ecpm=3_240_000.0,
        win_rate=1.0,
    ),
    # Hour 12 holds only an unattributed click: no row.
]


def test_gold_hourly_performance_by_hand(lake):
    actual = lake[1]["hourly_performance"]
    expected = pd.DataFrame(EXPECTED_HOURLY)[actual.columns]
    expected = expected.sort_values(list(expected.columns)).reset_index(drop=True)
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False)


def test_ctr_training_set_by_hand(lake):
    actual = lake[1]["ctr_training"].set_index("impression_id")
    columns = [
        "event_time",
        "hour_of_day",
        "day_of_week",
        "user_id_hash",
        "user_impressions_before",
        "clearing_price_micros",
        "clicked",
        "oracle_click_probability",
        "event_date",
    ]
    expected = pd.DataFrame(
        [
            # u-1 sees i1, i2 and (at 11:30) i6; u-2 and u-3 one each. Monday = 1. The price
            # is what each impression cost: its clearing CPM in USD micros / 1000.
            ("i1", ts("10:05:02.400"), 10, 1, "u-1", 0, 2160, 1, 0.05, "2026-03-02"),
            ("i2", ts("10:20:01.200"), 10, 1, "u-1", 1, 1675, 0, 0.01, "2026-03-02"),
            ("i3", ts("10:59:50"), 10, 1, "u-2", 0, 1500, 1, 0.20, "2026-03-02"),
            ("i4", ts("10:40:03"), 10, 1, "u-3", 0, 1080, 0, 0.03, "2026-03-02"),
            ("i6", ts("11:30:01.800"), 11, 1, "u-1", 2, 3240, 0, 0.04, "2026-03-02"),
        ],
        columns=["impression_id", *columns],
    ).set_index("impression_id")
    pd.testing.assert_frame_equal(
        actual[columns].sort_index(), expected, check_dtype=False, check_index_type=False
    )
    assert actual.loc["i1", ["campaign_id", "placement_id", "os", "region"]].tolist() == [
        "cmp-x",
        "site-1-300x250",
        "ios",
        "CA",
    ]


def test_rerunning_and_backfilling_give_identical_tables(spark, lake):
    settings, first = lake
    again = run_transform(spark, settings, "again")
    assert again["hour_count"] == 0  # nothing changed in Bronze: nothing to do
    backfill = run_transform(spark, settings, "backfill", DAY, DAY)
    assert backfill["hours"] == "2026-03-02T10..2026-03-02T12"
    for table in (SILVER_EVENTS, GOLD_HOURLY_PERFORMANCE, GOLD_CTR_TRAINING):
        pd.testing.assert_frame_equal(read_table(settings, table), first[table.name])
    # Nothing left behind: no staging areas, no retired partitions.
    lake_root = settings.lake_root
    assert not any((lake_root / "_staging").iterdir())
    assert not [p for p in lake_root.rglob(".retired-*")]
