"""Hour partitions: compact hour lists, and swapping staged partitions into a live table."""

from __future__ import annotations

import subprocess
import sys
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


_KILLED_PUBLISH = """
import os, signal, sys
from pathlib import Path
import adplatform.lakehouse.partitions as partitions

allowed = int(sys.argv[3])
real_rename = os.rename

def rename_then_die(source, target):
    global allowed
    if allowed == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    allowed -= 1
    real_rename(source, target)

partitions.os.rename = rename_then_die
partitions.replace_partitions(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[4:])
"""

_PARTITIONS = [f"event_date=2026-03-02/event_hour={hour}" for hour in (10, 11, 12)]


def _live_contents(live):
    return sorted(p.relative_to(live).as_posix() for p in data_files(live))


def _stage_a_run(tmp_path):
    """Live hours 10 and 11 hold old data; the run rebuilt 10 and 12, and emptied 11."""
    live, staged = tmp_path / "live", tmp_path / "staged"
    for hour in (10, 11):
        _write(live, f"event_date=2026-03-02/event_hour={hour}", "old.parquet")
    for hour in (10, 12):
        _write(staged, f"event_date=2026-03-02/event_hour={hour}", "new.parquet")
    return live, staged


_PUBLISHED = [
    "event_date=2026-03-02/event_hour=10/new.parquet",
    "event_date=2026-03-02/event_hour=12/new.parquet",
]


def test_a_retried_publish_keeps_what_the_first_attempt_published(tmp_path):
    live, staged = _stage_a_run(tmp_path)
    assert replace_partitions(staged, live, _PARTITIONS) == 2
    assert _live_contents(live) == _PUBLISHED

    # The task is retried (a lost heartbeat after success, a cleared task): nothing changes.
    assert replace_partitions(staged, live, _PARTITIONS) == 2
    assert _live_contents(live) == _PUBLISHED


def test_a_publish_killed_between_any_two_renames_completes_on_the_retry(tmp_path):
    renames = 4  # hour 10: old aside, new in; hour 11: old aside; hour 12: new in
    for allowed in range(renames + 1):
        live, staged = _stage_a_run(tmp_path / str(allowed))
        killed = subprocess.run(
            [
                sys.executable,
                "-c",
                _KILLED_PUBLISH,
                str(staged),
                str(live),
                str(allowed),
                *_PARTITIONS,
            ],
            check=False,
        )
        # Killed after `allowed` renames (the last attempt runs to its end).
        assert killed.returncode == (-9 if allowed < renames else 0), allowed
        assert replace_partitions(staged, live, _PARTITIONS) == 2, allowed
        assert _live_contents(live) == _PUBLISHED, allowed
        assert replace_partitions(staged, live, _PARTITIONS) == 2, allowed  # and once more
        assert _live_contents(live) == _PUBLISHED, allowed
        assert not [p for p in live.rglob("*") if p.name.startswith(".")], allowed
