"""The lakehouse gates: Bronze before Spark reads it, Silver and Gold before they are published.

Each gate reads, with pyarrow, only the partitions a run touches (Silver and Gold from the run's
staging area, before publication) and checks:

- schema: every file's columns and types against the table contract (``tables.py``);
- keys: not null, and unique where the grain says so (event_id in Silver, impression_id in the
  training set, the dimension tuple of an hourly row);
- ranges: money >= 0, CTR and probabilities in [0, 1], hour of day, day of week, labels;
- reconciliation between layers, counted independently of the Spark jobs: Silver rows plus
  too-late events = distinct Bronze event ids per partition; Gold bid requests, bids, wins and
  impressions per hour = Silver's; Gold clicks per hour = Silver's attributed clicks by their
  impression's hour; training rows and clicked rows per hour = Silver's impressions and those
  attributed clicks;
- freshness (scheduled runs): the newest Bronze event was ingested recently (ingest is alive).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path

import great_expectations.expectations as gxe
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from adplatform.events.schema import CURRENCIES, SCHEMAS
from adplatform.lakehouse.partitions import (
    HOUR,
    data_files,
    date_partition,
    hour_partition,
    parse_hours,
)
from adplatform.lakehouse.runs import Plan, RunArea
from adplatform.lakehouse.tables import (
    ATTRIBUTED,
    ATTRIBUTION_VALUES,
    BRONZE_EVENTS,
    GOLD_COUNTS,
    GOLD_CTR_TRAINING,
    GOLD_DIMENSIONS,
    GOLD_HOURLY_PERFORMANCE,
    PARTITION_TYPES,
    SILVER_EVENTS,
    SILVER_MONEY,
    Table,
)
from adplatform.lakehouse.windows import Windows
from adplatform.quality.gate import Check, GateReport, run_gate
from adplatform.settings import Settings

HOUR_KEY = ["event_date", "event_hour"]
_BRONZE_PRICES = ("floor_price_cpm", "bid_price_cpm", "clearing_price_cpm", "conversion_value")
# Bronze columns that files written before a schema version (or before ingest recorded the
# broker's time) existed may lack.
_ADDED_AFTER_V1 = frozenset(
    f.name for fields in SCHEMAS.values() for f in fields if f not in SCHEMAS[1]
) | {"_broker_time"}


# -- reading ---------------------------------------------------------------------------------


def _files(root: Path, partitions: Iterable[str]) -> list[Path]:
    return [f for p in sorted(set(partitions)) for f in data_files(root / p)]


def read_frame(table: Table, root: Path, files: list[Path], columns: list[str]) -> pd.DataFrame:
    """``columns`` of ``files`` (partition columns from their paths), typed by the contract."""
    partition_schema = pa.schema([(n, PARTITION_TYPES[n]) for n in table.partitioning])
    schema = pa.unify_schemas([table.schema, partition_schema])
    dataset = ds.dataset(
        [str(f) for f in files],
        schema=schema,
        format="parquet",
        partitioning=ds.partitioning(partition_schema, flavor="hive"),
        partition_base_dir=str(root),
    )
    return dataset.to_table(columns=columns).to_pandas()


def schema_problems(
    table: Table, root: Path, files: list[Path], may_be_absent: frozenset[str] = frozenset()
) -> pd.DataFrame:
    """One row per file: its departures from the contract (named with the file, so the gate's
    message and Data Docs show them), or null when it matches."""
    expected = {f.name: f.type for f in table.schema}
    rows = []
    for path in files:
        actual = {f.name: f.type for f in pq.read_schema(path)}
        problems = [
            f"{name} missing"
            for name in expected
            if name not in actual and name not in may_be_absent
        ]
        problems += [
            f"{name} is {actual[name]}, expected {expected[name]}"
            for name in expected
            if name in actual and not actual[name].equals(expected[name])
        ]
        problems += [f"unexpected column {name}" for name in actual if name not in expected]
        file = str(path.relative_to(root))
        rows.append(
            {"file": file, "problem": f"{file}: {'; '.join(problems)}" if problems else None}
        )
    return pd.DataFrame(rows, columns=["file", "problem"])


def _schema_check(name: str, problems: pd.DataFrame) -> Check:
    return Check(name, problems, [gxe.ExpectColumnValuesToBeNull(column="problem")])


def _not_null(*columns: str) -> list[gxe.Expectation]:
    return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def _at_least_zero(*columns: str) -> list[gxe.Expectation]:
    return [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in columns]


def _equal(frame_columns: Iterable[tuple[str, str]]) -> list[gxe.Expectation]:
    return [gxe.ExpectColumnPairValuesToBeEqual(column_A=a, column_B=b) for a, b in frame_columns]


def _hour_of(frame: pd.DataFrame) -> pd.Series:
    return (
        frame["event_date"].astype(str) + "T" + frame["event_hour"].astype(int).map("{:02d}".format)
    )


def _hour_labels(hours: Iterable[datetime]) -> list[str]:
    return [f"{h:%Y-%m-%dT%H}" for h in sorted(hours)]


# -- Bronze ----------------------------------------------------------------------------------


def bronze_checks(settings: Settings, plan: Plan, now: datetime) -> list[Check]:
    root = BRONZE_EVENTS.path(settings)
    files = plan.bronze_paths(root, target=True)
    problems = schema_problems(BRONZE_EVENTS, root, files, _ADDED_AFTER_V1)
    checks = [_schema_check("bronze_schema", problems)]
    if problems["problem"].notna().any():
        return checks  # the data cannot be read as the contract says; nothing more to learn
    keys = ["event_id", "event_time_ms", "request_id", "publisher_id", "user_id_hash"]
    lineage = ["_topic", "_partition", "_offset", "_ingested_at"]
    events = read_frame(
        BRONZE_EVENTS,
        root,
        files,
        [*keys, "currency", *_BRONZE_PRICES, *lineage, *BRONZE_EVENTS.partitioning],
    )
    day_start = pd.to_datetime(events["event_date"], utc=True) - pd.Timestamp(0, tz="UTC")
    hour_start_ms = day_start // pd.Timedelta(milliseconds=1) + events["event_hour"] * 3_600_000
    events["ms_into_partition_hour"] = events["event_time_ms"] - hour_start_ms
    checks.append(
        Check(
            "bronze_events",
            events,
            [
                *_not_null(*keys, *lineage),
                *_at_least_zero(*_BRONZE_PRICES),
                gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=sorted(CURRENCIES)),
                # Each event sits in the partition of the hour it happened.
                gxe.ExpectColumnValuesToBeBetween(
                    column="ms_into_partition_hour", min_value=0, max_value=3_599_999
                ),
            ],
        )
    )
    if not plan.backfill:  # a backfill reprocesses history on purpose; freshness is moot
        newest = events["_ingested_at"].max()
        age = None if pd.isna(newest) else (now - newest.to_pydatetime()).total_seconds() / 60
        freshness = pd.DataFrame({"newest_ingested_at": [newest], "age_minutes": [age]})
        checks.append(
            Check(
                "bronze_freshness",
                freshness,
                [
                    gxe.ExpectColumnValuesToBeBetween(
                        column="age_minutes",
                        max_value=settings.transform_bronze_max_staleness_minutes,
                    )
                ],
            )
        )
    return checks


# -- Silver ----------------------------------------------------------------------------------


def silver_checks(settings: Settings, plan: Plan, area: RunArea) -> list[Check]:
    staged_root = area.staged(SILVER_EVENTS)
    partitions = [hour_partition(h) for h in plan.hours]
    files = _files(staged_root, partitions)
    problems = schema_problems(SILVER_EVENTS, staged_root, files)
    checks = [_schema_check("silver_schema", problems)]
    if problems["problem"].notna().any():
        return checks
    keys = ["event_id", "event_time", "request_id", "publisher_id", "user_id_hash"]
    lineage = ["_topic", "_partition", "_offset", "_ingested_at", "_source_file"]
    silver = read_frame(
        SILVER_EVENTS,
        staged_root,
        files,
        [
            *keys,
            "impression_id",
            "currency",
            *SILVER_MONEY,
            "attribution",
            *lineage,
            *SILVER_EVENTS.partitioning,
        ],
    )
    impressions = silver[silver["event_type"] == "impression"]
    checks.append(
        Check(
            "silver_events",
            silver,
            [
                gxe.ExpectColumnValuesToBeUnique(column="event_id"),
                *_not_null(*keys, *lineage),
                *_at_least_zero(*SILVER_MONEY),
                gxe.ExpectColumnValuesToBeInSet(
                    column="attribution", value_set=list(ATTRIBUTION_VALUES)
                ),
                gxe.ExpectColumnValuesToBeInSet(
                    column="currency", value_set=["", *sorted(CURRENCIES)]
                ),
            ],
        )
    )
    checks.append(
        Check(
            "silver_impressions",
            impressions,
            [
                gxe.ExpectColumnValuesToBeUnique(column="impression_id"),
                gxe.ExpectColumnValuesToNotBeInSet(column="impression_id", value_set=[""]),
                *_not_null("clearing_price_cpm_micros"),
            ],
        )
    )
    checks.append(
        Check(
            "silver_vs_bronze",
            _silver_vs_bronze(settings, plan, area, silver),
            _equal([("bronze_distinct_events", "silver_rows_and_left_out")]),
        )
    )
    return checks


def _silver_vs_bronze(
    settings: Settings, plan: Plan, area: RunArea, silver: pd.DataFrame
) -> pd.DataFrame:
    root = BRONZE_EVENTS.path(settings)
    bronze = read_frame(
        BRONZE_EVENTS,
        root,
        plan.bronze_paths(root, target=True),  # what the Spark job read, not what came since
        ["event_id", *BRONZE_EVENTS.partitioning],
    )
    key = list(BRONZE_EVENTS.partitioning)
    left_out = ["too_late", "kept_elsewhere"]
    counts = pd.DataFrame(area.read("silver")["partitions"], columns=[*key, *left_out])
    frame = (
        bronze.groupby(key, observed=True)["event_id"]
        .nunique()
        .rename("bronze_distinct_events")
        .to_frame()
        .join(silver.groupby(key, observed=True).size().rename("silver_rows"), how="outer")
        .join(counts.set_index(key)[left_out], how="left")
        .fillna(0)
        .astype("int64")
        .reset_index()
    )
    frame["silver_rows_and_left_out"] = frame["silver_rows"] + frame[left_out].sum(axis=1)
    return frame


# -- Gold ------------------------------------------------------------------------------------


def _read_staged(
    table: Table, area: RunArea, partitions: Iterable[str], check_name: str
) -> tuple[Check, pd.DataFrame | None]:
    """The schema check of a table's staged partitions, and their rows if the schema holds."""
    root = area.staged(table)
    files = _files(root, partitions)
    problems = schema_problems(table, root, files)
    if problems["problem"].notna().any():
        return _schema_check(check_name, problems), None
    columns = [f.name for f in table.schema] + list(table.partitioning)
    return _schema_check(check_name, problems), read_frame(table, root, files, columns)


def gold_checks(settings: Settings, area: RunArea) -> list[Check]:
    """Gold hourly performance, reconciled with Silver hour by hour."""
    hours = parse_hours(area.read("gold_hourly")["hours"])
    schema, hourly = _read_staged(
        GOLD_HOURLY_PERFORMANCE, area, map(hour_partition, hours), "gold_hourly_schema"
    )
    if hourly is None:
        return [schema]
    measures = [*GOLD_COUNTS, "spend_micros", "revenue_micros"]
    checks = [
        schema,
        Check(
            "gold_hourly_performance",
            hourly,
            [
                gxe.ExpectCompoundColumnsToBeUnique(column_list=[*HOUR_KEY, *GOLD_DIMENSIONS]),
                *_not_null(*HOUR_KEY, *GOLD_DIMENSIONS, *measures),
                *_at_least_zero(*measures, "cvr", "ecpm_micros", "win_rate", "fill_rate"),
                gxe.ExpectColumnValuesToBeBetween(column="ctr", min_value=0, max_value=1),
            ],
        ),
    ]
    gold = (
        hourly.assign(hour=_hour_of(hourly))
        .groupby("hour")[["bid_requests", "bids", "wins", "impressions", "clicks"]]
        .sum()
        .add_prefix("gold_")
    )
    reconciliation = _silver_counts(settings, hours).join(gold).fillna(0).astype("int64")
    checks.append(
        Check(
            "gold_vs_silver",
            reconciliation.reset_index(),
            _equal(
                [
                    ("silver_bid_requests", "gold_bid_requests"),
                    ("silver_bids", "gold_bids"),
                    ("silver_wins", "gold_wins"),
                    ("silver_impressions", "gold_impressions"),
                    ("silver_attributed_clicks", "gold_clicks"),
                ]
            ),
        )
    )
    return checks


def ctr_training_checks(settings: Settings, area: RunArea) -> list[Check]:
    """The CTR training set: one row per impression, labels that match Silver's clicks."""
    staged = area.read("gold_ctr")
    days = [date.fromisoformat(d) for d in staged["days"]]
    schema, ctr = _read_staged(
        GOLD_CTR_TRAINING, area, map(date_partition, days), "gold_ctr_schema"
    )
    if ctr is None:
        return [schema]
    checks = [
        schema,
        Check(
            "gold_ctr_training",
            ctr,
            [
                gxe.ExpectColumnValuesToBeUnique(column="impression_id"),
                *_not_null("impression_id", "event_time", "user_id_hash", "clicked"),
                gxe.ExpectColumnValuesToBeInSet(column="clicked", value_set=[0, 1]),
                gxe.ExpectColumnValuesToBeBetween(column="hour_of_day", min_value=0, max_value=23),
                gxe.ExpectColumnValuesToBeBetween(column="day_of_week", min_value=1, max_value=7),
                *_at_least_zero("user_impressions_before", "clearing_price_micros"),
                gxe.ExpectColumnValuesToBeBetween(
                    column="oracle_click_probability", min_value=0, max_value=1
                ),
            ],
        ),
    ]
    hours = parse_hours(staged["hours"])
    training = ctr.assign(hour=ctr["event_time"].dt.strftime("%Y-%m-%dT%H")).groupby("hour")
    reconciliation = (
        _silver_counts(settings, hours)
        .join(training.size().rename("training_rows"))
        .join(training["clicked"].sum().rename("training_clicks"))
        .fillna(0)
        .astype("int64")
    )
    checks.append(
        Check(
            "ctr_training_vs_silver",
            reconciliation.reset_index(),
            _equal(
                [
                    ("silver_impressions", "training_rows"),
                    ("silver_attributed_clicks", "training_clicks"),
                ]
            ),
        )
    )
    return checks


def _silver_counts(settings: Settings, hours: list[datetime]) -> pd.DataFrame:
    """Per hour, Silver's bid requests, bids, wins and impressions, and its attributed clicks
    by their impression's hour (clicks land up to the click window later)."""
    root = SILVER_EVENTS.path(settings)
    click_reach = Windows.from_settings(settings).click_hours
    silver = read_frame(
        SILVER_EVENTS,
        root,
        _files(root, (hour_partition(h) for h in hours)),
        ["event_type", *HOUR_KEY],
    )
    clicks_span = {h + i * HOUR for h in hours for i in range(click_reach + 1)}
    clicks = read_frame(
        SILVER_EVENTS,
        root,
        _files(root, (f"{hour_partition(h)}/event_type=click" for h in clicks_span)),
        ["attribution", "impression_time"],
    )
    clicks = clicks[clicks["attribution"] == ATTRIBUTED]
    frame = pd.DataFrame(index=pd.Index(_hour_labels(hours), name="hour"))
    by_type = silver.assign(hour=_hour_of(silver)).groupby(["hour", "event_type"]).size().unstack()
    for kind in ("bid_request", "bid", "win", "impression"):
        frame[f"silver_{kind}s"] = by_type.get(kind, 0)
    frame["silver_attributed_clicks"] = clicks.groupby(
        clicks["impression_time"].dt.strftime("%Y-%m-%dT%H")
    ).size()
    return frame


# -- the gates -------------------------------------------------------------------------------


def check_bronze(
    settings: Settings, plan: Plan, run_name: str, now: datetime | None = None
) -> GateReport:
    checks = bronze_checks(settings, plan, now or datetime.now(UTC))
    return run_gate(settings, "bronze", run_name, checks)


def check_silver(settings: Settings, plan: Plan, area: RunArea, run_name: str) -> GateReport:
    return run_gate(settings, "silver", run_name, silver_checks(settings, plan, area))


def check_gold(settings: Settings, area: RunArea, run_name: str) -> GateReport:
    return run_gate(settings, "gold", run_name, gold_checks(settings, area))


def check_ctr_training(settings: Settings, area: RunArea, run_name: str) -> GateReport:
    return run_gate(settings, "ctr_training", run_name, ctr_training_checks(settings, area))
