"""Which hours a run rebuilds when Bronze changes, and what late data does to the results."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from adplatform.lakehouse.partitions import hour_partition, parse_hours, replace_partitions
from adplatform.lakehouse.runs import Plan, RunArea, commit, plan_hours
from adplatform.lakehouse.tables import GOLD_HOURLY_PERFORMANCE, SILVER_EVENTS
from adplatform.settings import load_settings
from adplatform.transform import pipeline
from adplatform.transform.jobs import stage_ctr_training, stage_gold_hourly, stage_silver
from tests.transform.bronze import encode, write_bronze
from tests.transform.handmade import MOBILE_US, E, X, at, event, write_handmade_bronze
from tests.transform.run import read_table, run_transform

DAY = date(2026, 3, 2)
H10, H11, H12 = (datetime(2026, 3, 2, h, tzinfo=UTC) for h in (10, 11, 12))


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_root=tmp_path / "data")


def test_an_incremental_plan_takes_new_hours_then_only_what_changed(settings):
    write_handmade_bronze(settings)
    first = plan_hours(settings)
    assert first.hours == [H10, H11, H12] and not first.backfill
    commit(settings, first)
    assert plan_hours(settings).hours == []
    # A late click for hour 11 lands: hour 11 and the later hours whose attribution can reach
    # back to it (here 12) are rebuilt; hour 10 is not.
    late = event(
        "e40", "click", at(80), "r6", "u-1", MOBILE_US | X, impression_id="i6", click_id="c9"
    )
    write_bronze(settings, encode([late]), ingested_at=at(130), batch="f", first_offset=100)
    again = plan_hours(settings)
    assert again.hours == [H11, H12]
    assert set(again.fingerprints) == {"2026-03-02T11"}


def test_a_backfill_takes_every_hour_of_its_days_even_unchanged(settings):
    write_handmade_bronze(settings)
    commit(settings, plan_hours(settings))
    backfill = plan_hours(settings, date(2026, 3, 2), date(2026, 3, 2))
    assert backfill.hours == [H10, H11, H12] and backfill.backfill
    assert plan_hours(settings, date(2026, 3, 3), date(2026, 3, 4)).hours == []
    with pytest.raises(ValueError, match="before it starts"):
        plan_hours(settings, date(2026, 3, 4), date(2026, 3, 3))


def test_a_plan_survives_its_json_form(settings):
    write_handmade_bronze(settings)
    plan = plan_hours(settings)
    assert Plan.from_json(plan.to_json()) == plan


def test_late_events_rebuild_their_hours_within_the_window_only(spark, settings):
    write_handmade_bronze(settings)
    run_transform(spark, settings, "first")
    late = [
        # A click on i4 (10:40) at 10:50, delivered at 12:00: within hour 10's click window
        # and within its late window (which closes at 11:00 + 4 h).
        event(
            "e41", "click", at(50), "r4", "u-3", MOBILE_US | X, impression_id="i4", click_id="c7"
        ),
        # An impression of 10:55 that reached the broker at 15:10: after hour 10's late window.
        E["e18"]
        | {
            "event_id": "e42",
            "impression_id": "i7",
            "event_time_ms": E["e18"]["event_time_ms"] + 900_000,
        },
    ]
    write_bronze(settings, encode(late[:1]), ingested_at=at(120), batch="g", first_offset=200)
    write_bronze(settings, encode(late[1:]), ingested_at=at(310), batch="h", first_offset=300)
    rerun = run_transform(spark, settings, "late")
    assert rerun["hours"] == "2026-03-02T10..2026-03-02T12"
    silver = read_table(settings, SILVER_EVENTS).set_index("event_id")
    assert silver.loc["e41", "attribution"] == "attributed"
    assert "e42" not in silver.index
    hourly = read_table(settings, GOLD_HOURLY_PERFORMANCE)
    x = hourly[(hourly["event_hour"] == 10) & (hourly["campaign_id"] == "cmp-x")].iloc[0]
    # Hand-computed: i1 and now i4 clicked, of the same two impressions as before.
    assert (x["impressions"], x["clicks"], x["ctr"]) == (2, 2, 1.0)
    assert run_transform(spark, settings, "quiet")["hour_count"] == 0


def test_bronze_that_lands_during_a_run_is_left_to_the_next_run(spark, settings):
    """Ingest keeps writing while a run works: the run's gates and its Spark job read the plan's
    snapshot, so files landing after the plan neither enter this run nor fail its Silver
    reconciliation, and they bring their hour back for the next run."""
    write_handmade_bronze(settings)
    planned = pipeline.plan_run(settings, "during", DAY, DAY)  # a backfill: no freshness gate
    run_dir, hours = planned["run_dir"], parse_hours(planned["hours"])
    area = RunArea(Path(run_dir))

    def lands(event_id: str, offset: int) -> None:
        click = event(event_id, "click", at(80), "r6", "u-1", MOBILE_US | X, impression_id="i6") | {
            "click_id": f"c-{event_id}"
        }
        write_bronze(
            settings, encode([click]), ingested_at=at(90), batch=event_id, first_offset=offset
        )

    lands("e50", 100)  # before the Spark job
    pipeline.check(settings, "bronze", run_dir, "during")
    stage_silver(spark, settings, hours, area)
    lands("e51", 200)  # between the Spark job and the Silver gate
    pipeline.check(settings, "silver", run_dir, "during")
    pipeline.publish_silver(settings, run_dir)
    assert {"e50", "e51"}.isdisjoint(read_table(settings, SILVER_EVENTS)["event_id"])

    stage_gold_hourly(spark, settings, hours, area)
    stage_ctr_training(spark, settings, hours, area)
    pipeline.check(settings, "gold", run_dir, "during")
    pipeline.publish_gold(settings, run_dir)
    pipeline.check(settings, "ctr_training", run_dir, "during")
    pipeline.publish_ctr_training(settings, run_dir)
    pipeline.finish(settings, run_dir)
    assert plan_hours(settings).hours == [H11, H12]


def test_a_silver_hour_rebuilt_alone_equals_the_same_hour_rebuilt_with_its_neighbours(
    spark, settings, tmp_path
):
    write_handmade_bronze(settings)
    run_transform(spark, settings, "all-at-once")
    together = read_table(settings, SILVER_EVENTS)
    for hour in (H12, H10, H11):  # one at a time, out of order
        area = RunArea(tmp_path / f"only-{hour:%H}")
        stage_silver(spark, settings, [hour], area)
        replace_partitions(
            area.staged(SILVER_EVENTS), SILVER_EVENTS.path(settings), [hour_partition(hour)]
        )
    # e.g. hour 11's click e17 still finds its impression in hour 10 (the lookback).
    pd.testing.assert_frame_equal(read_table(settings, SILVER_EVENTS), together)


def test_a_backfill_also_rebuilds_the_later_hours_that_read_what_changed(settings):
    """A late impression lands in hour 23 of a backfilled day; its click is in 00:00 of the next
    day. The backfill commits hour 23's new fingerprint, so it must rebuild 00:00 too, or the
    click stays unattributed for good."""
    night = datetime(2026, 3, 2, 23, 50, tzinfo=UTC)
    after_midnight = datetime(2026, 3, 3, 0, 5, tzinfo=UTC)
    write_handmade_bronze(settings)
    click = event(
        "e60", "click", after_midnight, "r60", "u-1", MOBILE_US | X, impression_id="i60"
    ) | {"click_id": "c60"}
    write_bronze(settings, encode([click]), ingested_at=after_midnight, batch="n", first_offset=500)
    commit(settings, plan_hours(settings))
    impression = E["e18"] | {
        "event_id": "e61",
        "impression_id": "i60",
        "event_time_ms": int(night.timestamp() * 1000),
    }
    write_bronze(
        settings, encode([impression]), ingested_at=after_midnight, batch="o", first_offset=600
    )

    backfill = plan_hours(settings, DAY, DAY)

    assert backfill.hours == [
        H10,
        H11,
        H12,
        night.replace(minute=0),
        after_midnight.replace(minute=0),
    ]
