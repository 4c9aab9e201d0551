"""Which Silver hours a run rebuilds, and the run's private staging area.

Incremental runs compare a fingerprint of every Bronze hour (its visible files, sizes and
modification times) with the fingerprints committed by the last published run. A changed hour
B, new or touched by late data, is rebuilt together with the hours whose attribution may reach
back to it (B+1 .. B+lookback) that have Bronze data. A backfill rebuilds every hour of a date
range that has Bronze or Silver data (an hour left with no input is emptied), and the later hours
reading its changed Bronze hours, as an incremental run would. Fingerprints are
committed only after Gold is published, so a failed run is simply planned again.

The plan also fixes the run's Bronze snapshot: the files it lists are the ones the Bronze gate
checks, the Spark job reads and the Silver gate reconciles against, while ingest keeps adding
files. Files that land later change their hour's fingerprint, so the next run takes them.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds

from adplatform.events.schema import EventType
from adplatform.lakehouse.io import atomic_write_bytes
from adplatform.lakehouse.partitions import (
    HOUR,
    data_files,
    fingerprint,
    format_hours,
    hour_of_partition,
    hour_partition,
    list_hours,
    parse_hours,
)
from adplatform.lakehouse.tables import ATTRIBUTED, BRONZE_EVENTS, SILVER_EVENTS, Table
from adplatform.lakehouse.windows import Windows
from adplatform.settings import Settings

STAGING_RETENTION = timedelta(days=7)  # failed runs' staged output, kept for triage
# The run area's record of the Gold hours the Silver it replaced fed (see publish_silver).
REPLACED_SILVER = "silver_replaced"


@dataclass(frozen=True)
class RunArea:
    """A run's private directory: staged tables, job summaries and the plan."""

    root: Path

    @classmethod
    def for_run(cls, settings: Settings, run_id: str) -> RunArea:
        return cls(settings.transform_staging_dir / re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id))

    def staged(self, table: Table) -> Path:
        return self.root / table.layer / table.name

    def write(self, name: str, content: dict[str, Any]) -> Path:
        path = self.root / f"{name}.json"
        atomic_write_bytes(json.dumps(content, indent=2, sort_keys=True).encode(), path)
        return path

    def plan(self, settings: Settings, hours: list[datetime]) -> Plan:
        """The plan the run's first step wrote; for a job run by hand in a directory of its
        own, a plan of ``hours`` over Bronze as it is now."""
        if (self.root / "plan.json").exists():
            return Plan.from_json(self.read("plan"))
        return Plan(hours, {}, backfill=True, bronze_files=bronze_snapshot(settings, hours))

    def has(self, name: str) -> bool:
        return (self.root / f"{name}.json").exists()

    def replaced_impression_hours(self) -> list[datetime]:
        """The Gold hours the Silver this run replaced counted clicks and conversions in
        (none for a job run by hand, which publishes nothing)."""
        if not self.has(REPLACED_SILVER):
            return []
        return parse_hours(self.read(REPLACED_SILVER)["impression_hours"])

    def read(self, name: str) -> dict[str, Any]:
        path = self.root / f"{name}.json"
        try:
            return dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path} is missing: the step that writes it has not run for this run"
            ) from None


@dataclass(frozen=True)
class Plan:
    hours: list[datetime]  # Silver hours to rebuild
    fingerprints: dict[str, str]  # Bronze hour -> fingerprint, committed after publication
    backfill: bool
    bronze_files: list[str]  # the snapshot the run reads, relative to the Bronze table

    def to_json(self) -> dict[str, Any]:
        return {
            "hours": format_hours(self.hours),
            "fingerprints": self.fingerprints,
            "backfill": self.backfill,
            "bronze_files": self.bronze_files,
        }

    @classmethod
    def from_json(cls, content: dict[str, Any]) -> Plan:
        return cls(
            parse_hours(content["hours"]),
            content["fingerprints"],
            content["backfill"],
            content["bronze_files"],
        )

    def bronze_paths(self, root: Path, *, target: bool) -> list[Path]:
        """The snapshot's files of the hours the run builds (``target``), or of the hours
        before them that attribution reads."""
        hours = set(self.hours)
        return [root / f for f in self.bronze_files if (_hour_of_file(f) in hours) is target]


def _hour_of_file(relative: str) -> datetime:
    return hour_of_partition("/".join(Path(relative).parts[:2]))


def bronze_snapshot(
    settings: Settings, hours: list[datetime], listed: dict[datetime, list[Path]] | None = None
) -> list[str]:
    """The Bronze files a run over ``hours`` reads, relative to the table: all of those hours and
    of the lookback hours before them (attribution reads their impressions and clicks,
    deduplication the ids of every event). ``listed``: each hour's files, when listed already."""
    root = BRONZE_EVENTS.path(settings)
    reach = Windows.from_settings(settings).lookback_hours
    lookback = {h - i * HOUR for h in hours for i in range(1, reach + 1)}
    files: list[str] = []
    for hour in sorted(set(hours) | lookback):
        found = (
            listed[hour]
            if listed is not None and hour in listed
            else data_files(root / hour_partition(hour))
        )
        files.extend(str(path.relative_to(root)) for path in found)
    return files


def _hour_key(hour: datetime) -> str:
    return f"{hour:%Y-%m-%dT%H}"


def _committed(settings: Settings) -> dict[str, str]:
    try:
        return dict(json.loads(settings.transform_state_file.read_text())["bronze_fingerprints"])
    except FileNotFoundError:
        return {}


def _day_range(start: date | None, end: date | None) -> tuple[datetime, datetime]:
    first_day, last_day = start or end, end or start
    if first_day is None or last_day is None:
        raise ValueError("a backfill needs a start date, an end date or both")
    if last_day < first_day:
        raise ValueError(f"backfill range ends ({last_day}) before it starts ({first_day})")
    return (
        datetime.combine(first_day, time.min, UTC),
        datetime.combine(last_day, time.max, UTC),
    )


def plan_hours(settings: Settings, start: date | None = None, end: date | None = None) -> Plan:
    """The Silver hours to rebuild: changed Bronze hours (incremental run), or every hour of the
    days from ``start`` to ``end`` (backfill; one of them alone means that one day)."""
    bronze_root = BRONZE_EVENTS.path(settings)
    listed = {h: data_files(bronze_root / hour_partition(h)) for h in list_hours(bronze_root)}
    current = {h: fingerprint(bronze_root / hour_partition(h), f) for h, f in listed.items()}
    backfill = start is not None or end is not None
    committed = _committed(settings)
    changed = {h for h, print_ in current.items() if committed.get(_hour_key(h)) != print_}
    reach = Windows.from_settings(settings).lookback_hours
    if backfill:
        first, last = _day_range(start, end)
        existing = current.keys() | set(list_hours(SILVER_EVENTS.path(settings)))
        hours = {h for h in existing if first <= h <= last}
        inputs = hours & current.keys()
        # This run commits the changed hours, so it also rebuilds the later hours reading them
        # (past the range's end): no incremental run would.
        dependent = {h + i * HOUR for h in inputs & changed for i in range(1, reach + 1)}
        hours |= dependent & current.keys()
    else:
        inputs = changed
        hours = {h + i * HOUR for h in inputs for i in range(reach + 1)} & current.keys()
    return Plan(
        sorted(hours),
        {_hour_key(h): current[h] for h in sorted(inputs)},
        backfill,
        bronze_snapshot(settings, sorted(hours), listed),
    )


def attributed_impression_hours(settings: Settings, hours: list[datetime]) -> list[datetime]:
    """The hours of the impressions that the live Silver clicks and conversions of ``hours``
    are attributed to: the Gold hours they count in."""
    root = SILVER_EVENTS.path(settings)
    files = [
        str(path)
        for hour in hours
        for kind in (EventType.CLICK, EventType.CONVERSION)
        for path in data_files(root / hour_partition(hour) / f"event_type={kind}")
    ]
    if not files:
        return []
    outcomes = ds.dataset(files, schema=SILVER_EVENTS.schema, format="parquet").to_table(
        columns=["impression_time"], filter=pc.field("attribution") == ATTRIBUTED
    )
    impression_hours = pc.unique(pc.floor_temporal(outcomes["impression_time"], unit="hour"))
    return sorted(impression_hours.to_pylist())


def commit(settings: Settings, plan: Plan) -> None:
    """Record the Bronze hours this run incorporated; the next run skips them until they change."""
    state = _committed(settings) | plan.fingerprints
    atomic_write_bytes(
        json.dumps({"bronze_fingerprints": dict(sorted(state.items()))}, indent=1).encode(),
        settings.transform_state_file,
    )


def remove_stale_runs(settings: Settings, keep: RunArea) -> list[Path]:
    """Delete staging areas of runs older than STAGING_RETENTION (failed runs, kept for triage)."""
    cutoff = (datetime.now(UTC) - STAGING_RETENTION).timestamp()
    removed = []
    root = settings.transform_staging_dir
    for area in root.iterdir() if root.is_dir() else []:
        if area != keep.root and area.stat().st_mtime < cutoff:
            shutil.rmtree(area, ignore_errors=True)
            removed.append(area)
    return removed
