"""Awkward input: empty hours, hours with only quarantined messages, empty files, skewed keys."""

from __future__ import annotations

from datetime import date

import pytest

from adplatform.lakehouse.io import atomic_write_parquet
from adplatform.lakehouse.partitions import list_hours
from adplatform.lakehouse.tables import (
    BRONZE_EVENTS,
    GOLD_CTR_TRAINING,
    GOLD_HOURLY_PERFORMANCE,
    QUARANTINE_EVENTS,
    SILVER_EVENTS,
)
from adplatform.settings import load_settings
from tests.transform.bronze import encode, write_bronze
from tests.transform.handmade import MOBILE_US, E, X, at, event, write_handmade_bronze
from tests.transform.run import read_table, run_transform


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_root=tmp_path / "data")


def test_empty_and_quarantine_only_hours_publish_nothing_and_pass_the_gates(spark, settings):
    write_handmade_bronze(settings)
    # 13:00 has no message at all. Every message of 14:00 was malformed (quarantined). 15:00
    # has a Bronze file with no rows (an ingest flush that found nothing).
    broken = [
        E["e01"]
        | {"event_time_ms": E["e01"]["event_time_ms"] + 4 * 3_600_000, "device_type": "toaster"}
    ]
    delivery = write_bronze(settings, encode(broken), ingested_at=at(250), batch="q")
    assert (delivery.accepted, delivery.quarantined) == (0, 1)
    assert list(QUARANTINE_EVENTS.path(settings).rglob("q.parquet"))
    empty = (
        BRONZE_EVENTS.path(settings)
        / "event_date=2026-03-02/event_hour=15/event_type=bid/x.parquet"
    )
    atomic_write_parquet(BRONZE_EVENTS.schema.empty_table(), empty)

    planned = run_transform(spark, settings, "day", date(2026, 3, 2), date(2026, 3, 2), gates=True)

    assert planned["hours"] == "2026-03-02T10..2026-03-02T12,2026-03-02T15"
    assert [h.hour for h in list_hours(SILVER_EVENTS.path(settings))] == [10, 11, 12]
    assert [h.hour for h in list_hours(GOLD_HOURLY_PERFORMANCE.path(settings))] == [10, 11]
    assert len(read_table(settings, GOLD_CTR_TRAINING)) == 5


def test_a_heavy_user_is_counted_exactly(spark, settings):
    # One user sees an ad every 45 s for three hours (240 impressions, 80 an hour) while 30
    # others see one each: the frequency feature is a running count that must not lose or
    # double a row when the heavy user's day is split by hour.
    heavy = [
        event(
            f"h{k:03d}",
            "impression",
            at(k * 0.75),
            f"rh{k}",
            "u-heavy",
            MOBILE_US | X,
            impression_id=f"ih{k}",
            clearing_price_cpm=1.0,
            currency="EUR",
        )
        for k in range(240)
    ]
    light = [
        event(
            f"l{k:03d}",
            "impression",
            at(k * 5 + 1),
            f"rl{k}",
            f"u-{k}",
            MOBILE_US | X,
            impression_id=f"il{k}",
            clearing_price_cpm=1.0,
            currency="EUR",
        )
        for k in range(30)
    ]
    write_bronze(settings, encode(heavy + light), ingested_at=at(190), batch="skew")
    run_transform(spark, settings, "skew")

    training = read_table(settings, GOLD_CTR_TRAINING).sort_values("event_time")
    heavy_rows = training[training["user_id_hash"] == "u-heavy"]
    assert heavy_rows["user_impressions_before"].tolist() == list(range(240))
    assert set(training.loc[training["user_id_hash"] != "u-heavy", "user_impressions_before"]) == {
        0
    }
    hourly = read_table(settings, GOLD_HOURLY_PERFORMANCE)
    # 80 heavy impressions an hour; the light ones at minutes 1, 6, ..., 146: 12, 12 and 6.
    assert hourly.groupby("event_hour")["impressions"].sum().to_dict() == {10: 92, 11: 92, 12: 86}
    # Each impression costs EUR 1.00 CPM = 1,080 micros.
    assert hourly["spend_micros"].sum() == 270 * 1080
