"""Hour partitions: naming, listing, compact hour lists, and atomic partition replacement.

Tables are Hive-partitioned by ``event_date=YYYY-MM-DD/event_hour=H`` (H unpadded, UTC). Jobs
write their output aside (a hidden staging directory on the same filesystem), quality gates
check it there, and only then is each partition swapped into the live table with renames: a
reader sees a partition's old files or its new ones, never a mix, and never a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from adplatform.lakehouse.io import atomic_write_bytes, fsync_directory

HOUR = timedelta(hours=1)
_HOUR_DIR = re.compile(r"^event_date=(\d{4}-\d{2}-\d{2})/event_hour=(\d{1,2})$")


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_partition(hour: datetime) -> str:
    """``event_date=2026-01-01/event_hour=7`` for 07:00 UTC."""
    return f"event_date={hour:%Y-%m-%d}/event_hour={hour.hour}"


def date_partition(day: date) -> str:
    return f"event_date={day:%Y-%m-%d}"


def hour_of_partition(relative: str) -> datetime:
    match = _HOUR_DIR.match(relative)
    if not match:
        raise ValueError(f"{relative!r} is not an event_date=.../event_hour=... partition")
    day, hour = match.groups()
    return datetime.fromisoformat(day).replace(hour=int(hour), tzinfo=UTC)


def visible(path: Path) -> bool:
    """Readers skip names starting with '.' or '_' (files being written, staging, markers)."""
    return not path.name.startswith((".", "_"))


def list_hours(table_dir: Path) -> list[datetime]:
    """The hour partitions present in a table, oldest first."""
    hours = []
    for day_dir in sorted(table_dir.glob("event_date=*")):
        for hour_dir in day_dir.glob("event_hour=*"):
            if visible(hour_dir) and hour_dir.is_dir():
                hours.append(hour_of_partition(f"{day_dir.name}/{hour_dir.name}"))
    return sorted(hours)


def data_files(directory: Path) -> list[Path]:
    """Visible Parquet files under ``directory`` (any depth), sorted."""
    if not directory.is_dir():
        return []
    return sorted(
        path
        for path in directory.rglob("*.parquet")
        if all(visible(Path(part)) for part in path.relative_to(directory).parts)
    )


def fingerprint(directory: Path, files: list[Path] | None = None) -> str:
    """Changes whenever a visible file under ``directory`` is added, removed or rewritten
    (``files``: its visible files, when they are listed already)."""
    digest = hashlib.sha1()
    for path in data_files(directory) if files is None else files:
        stat = path.stat()
        digest.update(f"{path.relative_to(directory)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# -- compact hour lists, for command lines and logs -----------------------------------------

_HOUR_FORMAT = "%Y-%m-%dT%H"


def format_hours(hours: Iterable[datetime]) -> str:
    """``2026-01-01T00..2026-01-01T23,2026-01-03T05``: consecutive hours as ranges."""
    ordered = sorted(set(hours))
    runs: list[tuple[datetime, datetime]] = []
    for hour in ordered:
        if runs and hour - runs[-1][1] == HOUR:
            runs[-1] = (runs[-1][0], hour)
        else:
            runs.append((hour, hour))
    return ",".join(
        f"{a:{_HOUR_FORMAT}}" if a == b else f"{a:{_HOUR_FORMAT}}..{b:{_HOUR_FORMAT}}"
        for a, b in runs
    )


def parse_hours(text: str) -> list[datetime]:
    """The inverse of :func:`format_hours`."""
    hours: list[datetime] = []
    for item in filter(None, text.split(",")):
        first, _, last = item.partition("..")
        try:
            start = datetime.strptime(first, _HOUR_FORMAT).replace(tzinfo=UTC)
            end = datetime.strptime(last or first, _HOUR_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(
                f"{item!r} is not an hour such as 2026-01-01T07 or a range "
                "2026-01-01T00..2026-01-01T23"
            ) from None
        if end < start:
            raise ValueError(f"{item!r}: the range ends before it starts")
        hours.extend(start + i * HOUR for i in range(int((end - start) / HOUR) + 1))
    return sorted(set(hours))


# -- publication ------------------------------------------------------------------------------


PUBLISH_JOURNAL = "_publish_journal.json"


def replace_partitions(staged_table: Path, live_table: Path, partitions: Iterable[str]) -> int:
    """Swap each partition (a relative path such as ``event_date=.../event_hour=...``) from the
    staged table into the live one; a partition the staged table lacks is removed from the live
    one (the hour is now empty). Returns how many partitions hold data afterwards.

    Per partition: the live directory is renamed aside (hidden), the staged one renamed into
    place, and the old one deleted. Renames within one filesystem are atomic, so a reader never
    sees a partial partition.

    Before the first rename, a journal in the staged table records durably which partitions
    have staged data. A retry (the task killed between two renames, or rerun after success)
    follows the journal, not the staged table, whose partitions the first attempt moved away:
    it swaps in what is still staged and keeps what was published, never taking a published
    partition for an emptied one. Rewriting the staged table (rerunning its job) drops the
    journal with it.
    """
    partitions = sorted(set(partitions))
    journal_path = staged_table / PUBLISH_JOURNAL
    if journal_path.exists():
        journal = json.loads(journal_path.read_text())
        if journal["partitions"] != partitions:
            raise ValueError(
                f"{journal_path} records a publish of other partitions than the ones asked "
                "for; rerun the job that stages this table, then publish again"
            )
    else:
        journal = {
            "partitions": partitions,
            "filled": [p for p in partitions if (staged_table / p).is_dir()],
        }
        atomic_write_bytes(json.dumps(journal, indent=1).encode(), journal_path)
    filled = set(journal["filled"])
    for partition in partitions:
        live = live_table / partition
        staged = staged_table / partition
        retired = live.with_name(f".retired-{uuid.uuid4().hex}-{live.name}")
        if partition not in filled:
            if live.exists():
                os.rename(live, retired)
        elif staged.exists():
            if live.exists():
                os.rename(live, retired)
            live.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged, live)
        elif not live.exists():
            raise FileNotFoundError(
                f"{live} was published by an earlier attempt of this publish and has been "
                "removed since; rerun the job that stages this table, then publish again"
            )
        if live.parent.exists():
            fsync_directory(live.parent)
            for leftover in live.parent.glob(f".retired-*-{live.name}"):
                shutil.rmtree(leftover, ignore_errors=True)
    return len(filled)
