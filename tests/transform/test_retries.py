"""Retries and replays: the transform's numbers stay right however its steps are repeated,
reordered or interrupted, and whatever a replay of Bronze takes back."""

from __future__ import annotations

from datetime import date

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from adplatform.lakehouse.io import atomic_write_parquet
from adplatform.lakehouse.tables import BRONZE_EVENTS, GOLD_CTR_TRAINING, GOLD_HOURLY_PERFORMANCE
from adplatform.settings import load_settings
from tests.transform.handmade import write_handmade_bronze
from tests.transform.run import read_table, run_transform

DAY = date(2026, 3, 2)


@pytest.fixture
def settings(tmp_path):
    # The handmade traffic is from March: the freshness gate of incremental runs is for live
    # ingest, not for these tests.
    return load_settings(
        data_root=tmp_path / "data", transform_bronze_max_staleness_minutes=10_000_000
    )


def replay_without(settings, relative: str, event_id: str) -> None:
    """What a replay does when a validator fix rejects an event: the range's Bronze file is
    rewritten under its name without it."""
    path = BRONZE_EVENTS.path(settings) / relative
    table = pq.read_table(path)
    atomic_write_parquet(table.filter(pc.field("event_id") != event_id), path)


def test_a_replay_that_takes_back_a_click_unclicks_its_impression_hours_earlier(spark, settings):
    write_handmade_bronze(settings)
    run_transform(spark, settings, "first")
    # e17 (11:00:20) clicked i3 (10:59:50): Gold counts it in hour 10, with the impression.
    replay_without(
        settings, "event_date=2026-03-02/event_hour=11/event_type=click/c.parquet", "e17"
    )

    rerun = run_transform(spark, settings, "after-replay", gates=True)

    assert rerun["hours"] == "2026-03-02T11..2026-03-02T12"  # Bronze hour 11 changed
    hourly = read_table(settings, GOLD_HOURLY_PERFORMANCE)
    z = hourly[(hourly["event_hour"] == 10) & (hourly["campaign_id"] == "cmp-z")]
    assert z[["impressions", "clicks"]].values.tolist() == [[1, 0]]
    training = read_table(settings, GOLD_CTR_TRAINING).set_index("impression_id")
    assert training.loc["i3", "clicked"] == 0
