"""Publish Gold to ClickHouse so that a retry or a backfill never double counts.

The unit of publication is a day, the fact table's partition. A day is rebuilt from all its Gold
hours in a staging table, checked against Gold, swapped in with ``REPLACE PARTITION`` (atomic:
readers see the old day or the new one) and checked again. Publishing a day twice gives the
same table; a run that dies anywhere leaves the published day as it was, and the next run
starts its staging table afresh. Which days to publish is derived from the durable data itself:
a day is published when the fingerprint of its Gold files differs from the one recorded in
``adplatform.publish_log`` at its last publish, and a day ClickHouse holds whose Gold hours have
all gone (a rebuild emptied them) is cleared. Each publish stages in a table of its own, so two
publishers on one server (the CLI and the DAG) never touch each other's; a staging table whose
publisher was killed before dropping it is dropped by the next publish once it is
``STAGING_ABANDONED_AFTER`` old (its name carries its start time).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adplatform.clickhouse.client import DATABASE, ClickHouseError
from adplatform.clickhouse.migrate import require_current_schema
from adplatform.lakehouse.tables import (
    GOLD_COUNTS,
    GOLD_DIMENSIONS,
    GOLD_HOURLY_PERFORMANCE,
    REFERENCE_TABLES,
    reference_path,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from adplatform.settings import Settings

log = logging.getLogger(__name__)

FACT_TABLE = f"{DATABASE}.hourly_performance"
_STAGING = "staging"
# Far longer than any one day's publish: a staging table this old has lost its publisher.
STAGING_ABANDONED_AFTER = timedelta(hours=6)
MEASURES = (*GOLD_COUNTS, "spend_micros", "revenue_micros")
FACT_COLUMNS = ("event_date", "event_hour", *GOLD_DIMENSIONS, *MEASURES)


# The fact table's columns as read_gold_day returns them.
FACT_SCHEMA = pa.schema(
    [
        pa.field("event_date", pa.date32()),
        pa.field("event_hour", pa.uint8()),
        *[
            pa.field(name, GOLD_HOURLY_PERFORMANCE.schema.field(name).type)
            for name in FACT_COLUMNS[2:]
        ],
    ]
)


class PublishMismatch(ClickHouseError):
    """ClickHouse does not hold exactly what Gold holds."""


@dataclass(frozen=True)
class GoldDay:
    event_date: date
    files: tuple[tuple[int, Path], ...]  # (event_hour, file), sorted

    @property
    def fingerprint(self) -> str:
        """Changes whenever a Gold file of the day is added, removed or rewritten."""
        digest = hashlib.sha256()
        for hour, path in self.files:
            stat = path.stat()
            digest.update(f"{hour}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


@dataclass(frozen=True)
class Totals:
    rows: int
    sums: dict[str, int]

    def differences(self, other: Totals) -> list[str]:
        found = [] if self.rows == other.rows else [f"rows {self.rows} != {other.rows}"]
        return found + [
            f"{name} {self.sums[name]} != {other.sums[name]}"
            for name in MEASURES
            if self.sums[name] != other.sums[name]
        ]


@dataclass(frozen=True)
class DayResult:
    event_date: date
    hours: int
    totals: Totals
    seconds: float


def gold_days(settings: Settings) -> dict[date, GoldDay]:
    """Every day in Gold with its hourly files (hidden and temporary files ignored)."""
    root = GOLD_HOURLY_PERFORMANCE.path(settings)
    files: dict[date, list[tuple[int, Path]]] = {}
    for path in root.glob("event_date=*/event_hour=*/*.parquet"):
        if path.name.startswith((".", "_")):
            continue
        try:
            day = date.fromisoformat(path.parent.parent.name.removeprefix("event_date="))
            hour = int(path.parent.name.removeprefix("event_hour="))
        except ValueError:
            raise ClickHouseError(f"unexpected Gold partition directory {path.parent}") from None
        files.setdefault(day, []).append((hour, path))
    return {day: GoldDay(day, tuple(sorted(found))) for day, found in sorted(files.items())}


def read_gold_day(day: GoldDay) -> pa.Table:
    """The day's Gold rows with the fact table's columns and types (none for a day whose
    hours have all gone)."""
    columns = [*GOLD_DIMENSIONS, *MEASURES]
    if not day.files:
        return FACT_SCHEMA.empty_table()
    pieces = []
    for hour, path in day.files:
        try:
            piece = pq.read_table(path, columns=columns)
        except (pa.ArrowInvalid, KeyError, OSError) as error:
            raise ClickHouseError(f"cannot read Gold file {path}: {error}") from None
        pieces.append(
            piece.add_column(0, "event_hour", pa.array([hour] * piece.num_rows, pa.uint8()))
        )
    table = pa.concat_tables(pieces)
    dates = pa.array([day.event_date] * table.num_rows, pa.date32())
    return table.add_column(0, "event_date", dates).select(list(FACT_COLUMNS))


def gold_totals(table: pa.Table) -> Totals:
    return Totals(
        table.num_rows, {name: int(pc.sum(table[name]).as_py() or 0) for name in MEASURES}
    )


def clickhouse_totals(client: Client, table: str, event_date: date) -> Totals:
    sums = ", ".join(f"sum({name})" for name in MEASURES)
    row = client.query(
        f"SELECT count(), {sums} FROM {table} WHERE event_date = {{day:Date}}",
        parameters={"day": event_date},
    ).result_rows[0]
    return Totals(
        int(row[0]), {name: int(value) for name, value in zip(MEASURES, row[1:], strict=True)}
    )


def published_fingerprints(client: Client) -> dict[date, str]:
    rows = client.query(
        "SELECT event_date, gold_fingerprint FROM adplatform.publish_log FINAL"
    ).result_rows
    return {day: fingerprint for day, fingerprint in rows}


def clickhouse_days(client: Client) -> set[date]:
    """The days the fact table holds rows of."""
    return {
        row[0] for row in client.query(f"SELECT DISTINCT event_date FROM {FACT_TABLE}").result_rows
    }


def published_days(client: Client) -> list[dict[str, Any]]:
    """The latest publish of each day, oldest day first."""
    return list(
        client.query(
            "SELECT event_date, rows, impressions, clicks, spend_micros, published_at "
            "FROM adplatform.publish_log FINAL ORDER BY event_date"
        ).named_results()
    )


def days_to_publish(
    client: Client, settings: Settings, dates: list[date] | None = None
) -> list[GoldDay]:
    """The Gold days named in ``dates`` (a forced re-publish), else those changed since their
    last publish; a day ClickHouse holds or once published with no Gold hours left is cleared."""
    available = gold_days(settings)
    published = published_fingerprints(client)
    emptied = {
        d: GoldDay(d, ()) for d in (clickhouse_days(client) | published.keys()) - available.keys()
    }
    if dates:
        missing = [d.isoformat() for d in dates if d not in available and d not in emptied]
        if missing:
            raise ClickHouseError(
                f"no Gold data for {', '.join(missing)} under "
                f"{GOLD_HOURLY_PERFORMANCE.path(settings)}: run the transform for those days first"
            )
        return [available.get(d) or emptied[d] for d in sorted(set(dates))]
    candidates = available | emptied
    return [
        candidates[d] for d in sorted(candidates) if published.get(d) != candidates[d].fingerprint
    ]


def publish_day(client: Client, day: GoldDay) -> DayResult:
    """Replace the day's partition with Gold's rows, verified before and after the swap."""
    started = time.perf_counter()
    fingerprint = day.fingerprint  # before reading: a file rewritten meanwhile republishes next run
    rows = read_gold_day(day)
    expected = gold_totals(rows)
    staging = staging_table(day.event_date, datetime.now(UTC))
    client.command(f"CREATE TABLE {staging} AS {FACT_TABLE}")
    try:
        if rows.num_rows:
            client.insert_arrow(staging, rows)
        _verify(client, staging, day.event_date, expected)
        if rows.num_rows:
            swap = f"REPLACE PARTITION {{day:Date}} FROM {staging}"
        else:  # a day with no Gold hours left; REPLACE refuses a source without the day
            swap = "DROP PARTITION {day:Date}"
        client.command(f"ALTER TABLE {FACT_TABLE} {swap}", parameters={"day": day.event_date})
        _verify(client, FACT_TABLE, day.event_date, expected)
    finally:
        client.command(f"DROP TABLE IF EXISTS {staging}")
    client.insert(
        f"{DATABASE}.publish_log",
        [
            [
                day.event_date,
                fingerprint,
                len(day.files),
                expected.rows,
                expected.sums["impressions"],
                expected.sums["clicks"],
                expected.sums["spend_micros"],
                datetime.now(UTC),
            ]
        ],
        column_names=[
            "event_date",
            "gold_fingerprint",
            "gold_files",
            "rows",
            "impressions",
            "clicks",
            "spend_micros",
            "published_at",
        ],
    )
    hours = len({hour for hour, _ in day.files})
    return DayResult(day.event_date, hours, expected, time.perf_counter() - started)


def staging_table(event_date: date, started: datetime) -> str:
    """A publish's own staging table. Identifiers cannot be bound; this one is built from
    constants, a date, a time and a random suffix, never from input."""
    return (
        f"{FACT_TABLE}_{_STAGING}_{event_date:%Y%m%d}_{int(started.timestamp())}_{uuid.uuid4().hex}"
    )


def drop_abandoned_staging(client: Client, now: datetime) -> list[str]:
    """Drop the staging tables of publishes killed before their cleanup (``kill -9``, OOM):
    those started ``STAGING_ABANDONED_AFTER`` ago. Tables named otherwise are left alone."""
    prefix = f"{FACT_TABLE.split('.')[1]}_{_STAGING}_"
    names = client.query(
        "SELECT name FROM system.tables"
        " WHERE database = {db:String} AND startsWith(name, {p:String})",
        parameters={"db": DATABASE, "p": prefix},
    ).result_rows
    cutoff = (now - STAGING_ABANDONED_AFTER).timestamp()
    dropped = []
    for (name,) in names:
        started = name.removeprefix(prefix).split("_")
        if len(started) == 3 and started[1].isdigit() and int(started[1]) < cutoff:
            client.command(f"DROP TABLE IF EXISTS {DATABASE}.{name}")
            dropped.append(name)
    return dropped


def verify_day(client: Client, day: GoldDay) -> Totals:
    """Check that ClickHouse holds exactly the day's Gold rows and sums."""
    expected = gold_totals(read_gold_day(day))
    _verify(client, FACT_TABLE, day.event_date, expected)
    return expected


def _verify(client: Client, table: str, event_date: date, expected: Totals) -> None:
    differences = expected.differences(clickhouse_totals(client, table, event_date))
    if differences:
        raise PublishMismatch(
            f"{table} for {event_date} does not match Gold (Gold != ClickHouse): "
            f"{'; '.join(differences)}. Nothing after this check was published; inspect the "
            "table and re-run the publish"
        )


def publish_facts(
    client: Client,
    settings: Settings,
    dates: list[date] | None = None,
    on_day: Callable[[DayResult], None] | None = None,
) -> list[DayResult]:
    """Publish the changed (or the named) Gold days; refuses a schema behind the migrations."""
    require_current_schema(client)
    for name in drop_abandoned_staging(client, datetime.now(UTC)):
        log.warning("dropped %s, left by a publish killed before its cleanup", name)
    results = []
    for day in days_to_publish(client, settings, dates):
        result = publish_day(client, day)
        log.info(
            "published %s: %d rows from %d Gold hours in %.1fs",
            day.event_date,
            result.totals.rows,
            result.hours,
            result.seconds,
        )
        if on_day:
            on_day(result)
        results.append(result)
    return results


def publish_dimensions(client: Client, settings: Settings) -> dict[str, int]:
    """Replace every dimension table with the lake's reference data; returns rows per table."""
    require_current_schema(client)
    loaded = {}
    for name in REFERENCE_TABLES:
        path = reference_path(settings, name)
        if not path.exists():
            raise ClickHouseError(
                f"reference table {path} is missing: it is written with the traffic "
                "(`adplatform generate` or the ingest), so run that first"
            )
        rows = pq.read_table(path, schema=REFERENCE_TABLES[name])
        if rows.num_rows == 0:
            raise ClickHouseError(f"reference table {path} is empty: refusing to empty dim_{name}")
        target = f"{DATABASE}.dim_{name}"
        staging = f"{target}_staging"
        client.command(f"DROP TABLE IF EXISTS {staging}")
        client.command(f"CREATE TABLE {staging} AS {target}")
        client.insert_arrow(staging, rows)
        client.command(f"ALTER TABLE {target} REPLACE PARTITION tuple() FROM {staging}")
        client.command(f"DROP TABLE {staging}")
        count = client.query(f"SELECT count() FROM {target}").result_rows[0][0]
        if count != rows.num_rows:
            raise PublishMismatch(f"{target} has {count} rows, the lake's {path} {rows.num_rows}")
        loaded[name] = count
    return loaded
