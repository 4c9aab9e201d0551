"""Hour partitions: compact hour lists, and swapping staged partitions into a live table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adplatform.lakehouse.partitions import (
    data_files,
    format_hours,
    list_hours,
    parse_hours,
    replace_partitions,
)


def test_hour_lists_round_trip_in_compact_form():
    hours = [datetime(2026, 3, 2, h, tzinfo=UTC) for h in (10, 11, 12)]
    hours.append(datetime(2026, 3, 3, 5, tzinfo=UTC))
    text = format_hours(hours)
    assert text == "2026-03-02T10..2026-03-02T12,2026-03-03T05"
    assert parse_hours(text) == hours
    assert parse_hours("") == []
    with pytest.raises(ValueError, match="2026-03-02T1x"):
        parse_hours("2026-03-02T1x")
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_hours("2026-03-02T12..2026-03-02T10")


def _write(root, partition, name):
    (root / partition).mkdir(parents=True, exist_ok=True)
    (root / partition / name).write_text(name)


def test_replacing_partitions_swaps_staged_ones_in_and_empties_the_missing_ones(tmp_path):
    live, staged = tmp_path / "live", tmp_path / "staged"
    for hour in (10, 11, 12):
        _write(live, f"event_date=2026-03-02/event_hour={hour}", "old.parquet")
    _write(staged, "event_date=2026-03-02/event_hour=10", "new.parquet")

    filled = replace_partitions(
        staged, live, ["event_date=2026-03-02/event_hour=10", "event_date=2026-03-02/event_hour=11"]
    )

    assert filled == 1
    assert [p.relative_to(live).as_posix() for p in data_files(live)] == [
        "event_date=2026-03-02/event_hour=10/new.parquet",  # replaced
        "event_date=2026-03-02/event_hour=12/old.parquet",  # not part of the run: untouched
    ]  # hour 11 had no staged output: it is empty now
    assert [h.hour for h in list_hours(live)] == [10, 12]
    assert not [p for p in live.rglob("*") if p.name.startswith(".")]  # nothing retired left
