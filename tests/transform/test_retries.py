"""Retries and replays: the transform's numbers stay right however its steps are repeated,
reordered or interrupted, and whatever a replay of Bronze takes back.

After each ordeal the totals agree layer by layer: Bronze's distinct events (less the one too
late) = Silver's rows; Silver's auction events, impressions, attributed clicks and conversions,
spend and revenue = Gold's sums = ClickHouse's (the real publish into a real chDB).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from adplatform.clickhouse.client import clickhouse_client
from adplatform.clickhouse.migrate import migrate
from adplatform.clickhouse.publish import FACT_TABLE, MEASURES, publish_facts
from adplatform.lakehouse.io import atomic_write_parquet
from adplatform.lakehouse.partitions import parse_hours
from adplatform.lakehouse.runs import RunArea
from adplatform.lakehouse.tables import (
    ATTRIBUTED,
    BRONZE_EVENTS,
    GOLD_CTR_TRAINING,
    GOLD_HOURLY_PERFORMANCE,
    SILVER_EVENTS,
)
from adplatform.settings import load_settings
from adplatform.transform import pipeline
from adplatform.transform.jobs import stage_ctr_training, stage_gold_hourly, stage_silver
from tests.transform.bronze import encode, write_bronze
from tests.transform.handmade import E, at, write_handmade_bronze
from tests.transform.run import read_table, run_transform

DAY = date(2026, 3, 2)


@pytest.fixture
def settings(tmp_path):
    # The handmade traffic is from March: the freshness gate of incremental runs is for live
    # ingest, not for these tests.
    data_root = tmp_path / "data"
    return load_settings(
        data_root=data_root,
        clickhouse_dsn=f"chdb://{data_root / 'clickhouse'}",
        transform_bronze_max_staleness_minutes=10_000_000,
    )


class Interrupted(Exception):
    """The worker died here: nothing after this point of the step ran."""


@contextmanager
def dying_after(renames: int) -> Iterator[None]:
    """The step in this block dies after ``renames`` renames (its on-disk state is what a killed
    worker leaves; tests/transform/test_partitions.py kills a real process)."""
    real_rename, done = os.rename, 0

    def rename(source: object, target: object) -> None:
        nonlocal done
        if done == renames:
            raise Interrupted(f"after {renames} rename(s)")
        done += 1
        real_rename(source, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "rename", rename)
        yield


# The handmade day's totals, worked out by hand (tests/transform/test_golden.py): every event but
# the too-late bid request e19; clicks e06 (i1) and e17 (i3); conversion e08 (EUR 50);
# spend 2160 + 1675 + 1500 + 1080 + 3240 micros.
HANDMADE = {
    "bid_requests": 6,
    "bids": 6,
    "wins": 5,
    "impressions": 5,
    "clicks": 2,
    "conversions": 1,
    "spend_micros": 9655,
    "revenue_micros": 54_000_000,
}
TOO_LATE = {"bid_request": 1}


def silver_totals(settings) -> dict[str, int]:
    silver = read_table(settings, SILVER_EVENTS)
    count = silver.groupby("event_type").size()
    attributed = silver[silver["attribution"] == ATTRIBUTED].groupby("event_type").size()
    impressions = silver[silver["event_type"] == "impression"]
    return {
        "bid_requests": int(count.get("bid_request", 0)),
        "bids": int(count.get("bid", 0)),
        "wins": int(count.get("win", 0)),
        "impressions": len(impressions),
        "clicks": int(attributed.get("click", 0)),
        "conversions": int(attributed.get("conversion", 0)),
        "spend_micros": int(((impressions["clearing_price_cpm_micros"] + 500) // 1000).sum()),
        "revenue_micros": int(
            silver.loc[silver["attribution"] == ATTRIBUTED, "conversion_value_micros"].sum()
        ),
    }


def assert_layers_agree(settings, expected: dict[str, int]) -> None:
    """Bronze = Silver = Gold = ClickHouse, and all equal ``expected``."""
    bronze = read_table(settings, BRONZE_EVENTS).groupby("event_type")["event_id"].nunique()
    silver_rows = read_table(settings, SILVER_EVENTS).groupby("event_type").size()
    assert (bronze - silver_rows).loc[lambda left_out: left_out > 0].to_dict() == TOO_LATE
    assert silver_totals(settings) == expected
    gold = read_table(settings, GOLD_HOURLY_PERFORMANCE)
    assert {name: int(gold[name].sum()) for name in MEASURES} == expected
    training = read_table(settings, GOLD_CTR_TRAINING)
    assert (len(training), int(training["clicked"].sum())) == (
        expected["impressions"],
        expected["clicks"],
    )
    with clickhouse_client(settings) as client:
        migrate(client)
        publish_facts(client, settings)
        publish_facts(client, settings)  # a retried publish changes nothing
        sums = ", ".join(f"sum({name})" for name in MEASURES)
        row = client.query(f"SELECT {sums} FROM {FACT_TABLE}").result_rows[0]
    assert dict(zip(MEASURES, map(int, row), strict=True)) == expected


def replay_without(settings, relative: str, event_id: str) -> None:
    """What a replay does when a validator fix rejects an event: the range's Bronze file is
    rewritten under its name without it."""
    path = BRONZE_EVENTS.path(settings) / relative
    table = pq.read_table(path)
    atomic_write_parquet(table.filter(pc.field("event_id") != event_id), path)


def test_gold_spend_is_the_sum_of_the_training_sets_impression_costs(spark, settings):
    # Two impressions at a clearing CPM of USD 1.0005: each costs 1000.5 micros, 1001 rounded.
    impressions = [
        E["e16"] | {"event_id": f"e7{n}", "impression_id": f"i7{n}", "clearing_price_cpm": 1.0005}
        for n in (1, 2)
    ]
    write_bronze(settings, encode(impressions), ingested_at=at(65), batch="p")

    run_transform(spark, settings, "pennies", DAY, DAY)

    hourly = read_table(settings, GOLD_HOURLY_PERFORMANCE)
    training = read_table(settings, GOLD_CTR_TRAINING)
    assert training["clearing_price_micros"].tolist() == [1001, 1001]
    assert hourly["spend_micros"].sum() == training["clearing_price_micros"].sum() == 2002


def test_every_step_run_twice_or_interrupted_between_renames_gives_the_same_numbers(
    spark, settings, tmp_path
):
    write_handmade_bronze(settings)
    planned = pipeline.plan_run(settings, "twice")
    pipeline.plan_run(settings, "twice")  # a retried plan starts the run afresh
    run_dir, hours = planned["run_dir"], parse_hours(planned["hours"])
    area = RunArea(Path(run_dir))
    for _ in range(2):
        stage_silver(spark, settings, hours, area)
    pipeline.check(settings, "silver", run_dir, "twice")
    # Silver is published, dying after each rename in turn, and retried to its end each time
    # (the staged run is restored between tries: a publish is only ever retried, not restaged).
    pristine = tmp_path / "pristine"
    shutil.copytree(area.root, pristine)
    renames = 2 * len(hours)  # each hour's old partition aside, its new one in
    for died_after in range(renames):
        shutil.rmtree(area.root)
        shutil.copytree(pristine, area.root)
        with pytest.raises(Interrupted), dying_after(died_after):
            pipeline.publish_silver(settings, run_dir)
        pipeline.publish_silver(settings, run_dir)
        pipeline.publish_silver(settings, run_dir)  # retried after success
        assert silver_totals(settings) == HANDMADE, died_after
    for _ in range(2):
        stage_gold_hourly(spark, settings, hours, area)
    pipeline.check(settings, "gold", run_dir, "twice")
    with pytest.raises(Interrupted), dying_after(1):
        pipeline.publish_gold(settings, run_dir)
    for _ in range(2):
        pipeline.publish_gold(settings, run_dir)
    stage_ctr_training(spark, settings, hours, area)
    for _ in range(2):
        pipeline.publish_ctr_training(settings, run_dir)
    for _ in range(2):
        pipeline.finish(settings, run_dir)
    assert_layers_agree(settings, HANDMADE)
    assert pipeline.plan_run(settings, "next")["hour_count"] == 0


def test_replays_and_reruns_keep_every_layer_equal(spark, settings):
    write_handmade_bronze(settings)
    run_transform(spark, settings, "first")
    assert_layers_agree(settings, HANDMADE)
    # A replay rewrites a file with the same events: its hours are rebuilt, nothing changes.
    replay_without(settings, "event_date=2026-03-02/event_hour=10/event_type=click/a.parquet", "")
    assert run_transform(spark, settings, "same-replay")["hour_count"] > 0
    assert_layers_agree(settings, HANDMADE)
    # A replay takes e17 back: i3 (hour 10) loses its click everywhere.
    replay_without(
        settings, "event_date=2026-03-02/event_hour=11/event_type=click/c.parquet", "e17"
    )
    run_transform(spark, settings, "replay", gates=True)
    assert_layers_agree(settings, HANDMADE | {"clicks": 1})
    # A backfill over it all, out of the usual order, changes nothing.
    run_transform(spark, settings, "backfill", DAY, DAY)
    assert_layers_agree(settings, HANDMADE | {"clicks": 1})


# -- late data on the broker's clock ----------------------------------------------------------


def test_a_stalled_ingest_makes_nothing_late_that_reached_the_broker_in_time(spark, settings):
    # Ingest stalls after the first batch for over the late window (Airflow down) and drains
    # its backlog at 16:00, past 10:30 + 4 h: the events reached the broker in time, so they
    # all count, and the gates reconcile.
    write_handmade_bronze(settings, stalled_until=at(360))
    run_transform(spark, settings, "drained", gates=True)
    assert_layers_agree(settings, HANDMADE)


def test_an_hour_loaded_after_its_end_keeps_its_decisions_as_more_files_arrive(spark, settings):
    # Hour 10 of March 2 reaches the broker on March 5 (a historical load). Kafka partition 1's
    # events open at 09:30, so its bid request of 13:20 is within the late window; partition 0's,
    # which reached the broker at 09:00, land in Bronze only after the first run.
    load = at(3 * 24 * 60 - 60)  # March 5, 09:00
    bid_request = E["e01"]
    deliveries = [
        ("p1-first", 1, load + timedelta(minutes=30), "h1"),
        ("p1-last", 1, load + timedelta(minutes=260), "h2"),
        ("p0", 0, load, "h0"),
    ]
    kept = []
    for batch, partition, arrived, event_id in deliveries:
        write_bronze(
            settings,
            encode([bid_request | {"event_id": event_id}]),
            ingested_at=arrived,
            batch=batch,
            partition=partition,
        )
        run_transform(spark, settings, batch, gates=True)
        kept.append(sorted(read_table(settings, SILVER_EVENTS)["event_id"]))
    assert kept == [["h1"], ["h1", "h2"], ["h0", "h1", "h2"]]


# -- duplicates across hours ------------------------------------------------------------------


def restamped(event_id: str, minutes: float) -> dict:
    """A copy of a handmade event that a producer's retry stamped ``minutes`` later."""
    return E[event_id] | {"event_time_ms": E[event_id]["event_time_ms"] + int(minutes * 60_000)}


def test_an_event_copied_into_a_later_hour_counts_once(spark, settings):
    # Copies in hour 11 of a bid (e02) and an impression (e05) of hour 10.
    write_handmade_bronze(settings)
    write_bronze(
        settings, encode([restamped("e02", 60), restamped("e05", 60)]), ingested_at=at(130),
        batch="copies", first_offset=100,
    )  # fmt: skip
    run_transform(spark, settings, "first", gates=True)
    assert_layers_agree(settings, HANDMADE)
    silver = read_table(settings, SILVER_EVENTS).set_index("event_id")
    assert silver.loc[["e02", "e05"], "event_hour"].tolist() == [10, 10]


def test_an_earlier_hours_copy_arriving_later_moves_the_event_there(spark, settings):
    # The copy in hour 11 is published first; the original in hour 10 (delivered twice, in
    # batches a and b) arrives afterwards (a lagging Kafka partition): the event moves to hour 10
    # and leaves hour 11.
    write_handmade_bronze(settings)
    bids = BRONZE_EVENTS.path(settings) / "event_date=2026-03-02/event_hour=10/event_type=bid"
    originals = {path: pq.read_table(path) for path in (bids / "a.parquet", bids / "b.parquet")}
    for path, table in originals.items():
        atomic_write_parquet(table.filter(pc.field("event_id") != "e02"), path)
    write_bronze(
        settings, encode([restamped("e02", 60)]), ingested_at=at(130), batch="copies",
        first_offset=100,
    )  # fmt: skip
    run_transform(spark, settings, "copy-first", gates=True)
    assert read_table(settings, SILVER_EVENTS).set_index("event_id").loc["e02", "event_hour"] == 11
    for path, table in originals.items():
        atomic_write_parquet(table, path)
    run_transform(spark, settings, "original-later", gates=True)
    assert_layers_agree(settings, HANDMADE)
    assert read_table(settings, SILVER_EVENTS).set_index("event_id").loc["e02", "event_hour"] == 10
