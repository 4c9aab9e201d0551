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
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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


def plan_hours(settings: Settings, start: date | None = None, end: date | None = None) -> Plan:
    """The Silver hours to rebuild: changed Bronze hours (incremental), or a date range."""
    bronze_root = BRONZE_EVENTS.path(settings)
    bronze_hours = list_hours(bronze_root)
    current = {_hour_key(h): fingerprint(bronze_root / hour_partition(h)) for h in bronze_hours}
    if start is not None or end is not None:
        first = datetime.combine(start or end or date.min, datetime.min.time(), UTC)
        last = datetime.combine(end or start or date.max, datetime.max.time(), UTC)
        if last < first:
            raise ValueError(f"backfill range ends ({end}) before it starts ({start})")
        candidates = set(bronze_hours) | set(list_hours(SILVER_EVENTS.path(settings)))
        hours = sorted(h for h in candidates if first <= h <= last)
        return Plan(
            hours,
            {_hour_key(h): current[_hour_key(h)] for h in hours if _hour_key(h) in current},
            True,
        )
    committed = _committed(settings)
    changed = [h for h in bronze_hours if committed.get(_hour_key(h)) != current[_hour_key(h)]]
    reach = Windows.from_settings(settings).lookback_hours
    present = set(bronze_hours)
    hours = sorted({h + i * HOUR for h in changed for i in range(reach + 1)} & present)
    return Plan(hours, {_hour_key(h): current[_hour_key(h)] for h in changed}, False)


def commit(settings: Settings, plan: Plan) -> None:
    """Record the Bronze hours this run incorporated; the next run skips them until they change."""
    state = _committed(settings) | plan.fingerprints
    atomic_write_bytes(
        json.dumps({"bronze_fingerprints": dict(sorted(state.items()))}, indent=1).encode(),
        _state_file(settings),
    )


def remove_stale_runs(settings: Settings, keep: RunArea) -> list[Path]:
    """Delete staging areas of runs older than STAGING_RETENTION (failed runs, kept for triage)."""
    cutoff = time.time() - STAGING_RETENTION.total_seconds()
    removed = []
    root = _staging_root(settings)
    for area in root.iterdir() if root.is_dir() else []:
        if area != keep.root and area.stat().st_mtime < cutoff:
            shutil.rmtree(area, ignore_errors=True)
            removed.append(area)
    return removed
