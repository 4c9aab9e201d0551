"""Which Silver hours a run rebuilds, and the run's private staging area.

Incremental runs compare a fingerprint of every Bronze hour (its visible files, sizes and
modification times) with the fingerprints committed by the last published run. A changed hour
B, new or touched by late data, is rebuilt together with the hours whose attribution may reach
back to it (B+1 .. B+lookback) that have Bronze data. A backfill rebuilds every hour of a date
range that has Bronze or Silver data (an hour left with no input is emptied). Fingerprints are
committed only after Gold is published, so a failed run is simply planned again.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from adplatform.lakehouse.io import atomic_write_bytes
from adplatform.lakehouse.partitions import (
    HOUR,
    fingerprint,
    format_hours,
    hour_partition,
    list_hours,
    parse_hours,
)
from adplatform.lakehouse.tables import BRONZE_EVENTS, SILVER_EVENTS, Table
from adplatform.settings import Settings
from adplatform.transform.windows import Windows

STAGING_RETENTION = timedelta(days=7)  # failed runs' staged output, kept for triage


def _state_file(settings: Settings) -> Path:
    return settings.lake_root / "_state" / "transform.json"


def _staging_root(settings: Settings) -> Path:
    return settings.lake_root / "_staging"


@dataclass(frozen=True)
class RunArea:
    """A run's private directory: staged tables, job summaries and the plan."""

    root: Path

    @classmethod
    def for_run(cls, settings: Settings, run_id: str) -> RunArea:
        return cls(_staging_root(settings) / re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id))

    def staged(self, table: Table) -> Path:
        return self.root / table.layer / table.name

    def write(self, name: str, content: dict[str, Any]) -> Path:
        path = self.root / f"{name}.json"
        atomic_write_bytes(json.dumps(content, indent=2, sort_keys=True).encode(), path)
        return path

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

    def to_json(self) -> dict[str, Any]:
        return {
            "hours": format_hours(self.hours),
            "fingerprints": self.fingerprints,
            "backfill": self.backfill,
        }

    @classmethod
    def from_json(cls, content: dict[str, Any]) -> Plan:
        return cls(parse_hours(content["hours"]), content["fingerprints"], content["backfill"])


def _hour_key(hour: datetime) -> str:
    return f"{hour:%Y-%m-%dT%H}"


def _committed(settings: Settings) -> dict[str, str]:
    try:
        return dict(json.loads(_state_file(settings).read_text())["bronze_fingerprints"])
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
    current = {h: fingerprint(bronze_root / hour_partition(h)) for h in list_hours(bronze_root)}
    backfill = start is not None or end is not None
    if backfill:
        first, last = _day_range(start, end)
        existing = current.keys() | set(list_hours(SILVER_EVENTS.path(settings)))
        hours = {h for h in existing if first <= h <= last}
        inputs = hours & current.keys()
    else:
        committed = _committed(settings)
        inputs = {h for h, print_ in current.items() if committed.get(_hour_key(h)) != print_}
        reach = Windows.from_settings(settings).lookback_hours
        hours = {h + i * HOUR for h in inputs for i in range(reach + 1)} & current.keys()
    return Plan(sorted(hours), {_hour_key(h): current[h] for h in sorted(inputs)}, backfill)


def commit(settings: Settings, plan: Plan) -> None:
    """Record the Bronze hours this run incorporated; the next run skips them until they change."""
    state = _committed(settings) | plan.fingerprints
    atomic_write_bytes(
        json.dumps({"bronze_fingerprints": dict(sorted(state.items()))}, indent=1).encode(),
        _state_file(settings),
    )


def remove_stale_runs(settings: Settings, keep: RunArea) -> list[Path]:
    """Delete staging areas of runs older than STAGING_RETENTION (failed runs, kept for triage)."""
    cutoff = (datetime.now(UTC) - STAGING_RETENTION).timestamp()
    removed = []
    root = _staging_root(settings)
    for area in root.iterdir() if root.is_dir() else []:
        if area != keep.root and area.stat().st_mtime < cutoff:
            shutil.rmtree(area, ignore_errors=True)
            removed.append(area)
    return removed
