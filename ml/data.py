"""Reading the Gold CTR training set: which partitions, checked against the contract, only rows
whose label has settled, split by time into train, validation and holdout."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adplatform.lakehouse.tables import GOLD_CTR_TRAINING
from adplatform.settings import Settings
from ml.errors import TrainingDataError

LABEL = "clicked"
ORACLE = "oracle_click_probability"
MIN_CLICKS = 20  # below this no metric, let alone a model, means anything


@dataclass(frozen=True)
class DataVersion:
    """Which Gold partitions a model was trained on, and a fingerprint of their files."""

    partitions: tuple[str, ...]  # event_date values, oldest first
    rows: int
    fingerprint: str  # sha256 over every file's name and content

    def describe(self) -> str:
        first, last = self.partitions[0], self.partitions[-1]
        return f"{first}..{last} ({len(self.partitions)} partitions, {self.rows:,} rows)"


def partition_dates(settings: Settings) -> list[date]:
    root = GOLD_CTR_TRAINING.path(settings)
    dates = []
    for directory in root.glob("event_date=*"):
        try:
            dates.append(date.fromisoformat(directory.name.removeprefix("event_date=")))
        except ValueError:
            continue  # not a partition (a writer's staging folder, say)
    return sorted(dates)


def label_settle_time(settings: Settings) -> timedelta:
    """How long after an impression its label may still change: a click comes within the click
    window and reaches Bronze up to the late window after its hour opened."""
    return timedelta(
        minutes=settings.transform_click_window_minutes + settings.transform_late_window_minutes
    )


def _newest_event_time(root: Path, day: date) -> datetime | None:
    """The newest impression in the day's Gold partition (None when it holds none)."""
    times = [
        pc.max(pq.read_table(path, columns=["event_time"])["event_time"]).as_py()
        for path in (root / f"event_date={day.isoformat()}").glob("*.parquet")
        if not path.name.startswith((".", "_"))
    ]
    return max((t for t in times if t is not None), default=None)


def load_training_set(
    settings: Settings, end: date | None, lookback_days: int
) -> tuple[pd.DataFrame, DataVersion]:
    """The Gold rows of the ``lookback_days`` partitions up to ``end`` (default: the newest)
    whose label has settled, sorted by time, with the partitions they came from.

    A row's label has settled when Gold holds impressions at least the label settle time
    newer (:func:`label_settle_time`): its clicks have had time to arrive and be counted. The
    newest hours of Gold are left out, so the holdout never counts an open label as
    unclicked."""
    root = GOLD_CTR_TRAINING.path(settings)
    available = partition_dates(settings)
    if not available:
        raise TrainingDataError(
            f"no Gold CTR training partitions under {root}: the ad_lakehouse_ctr_training_set "
            "DAG writes them (after each transform run); run it in Airflow, or `make demo`"
        )
    end = end or available[-1]
    start = end - timedelta(days=lookback_days - 1)
    chosen = [d for d in available if start <= d <= end]
    if not chosen:
        raise TrainingDataError(
            f"no Gold CTR training partitions between {start} and {end} under {root} "
            f"(there are {available[0]}..{available[-1]}): pick another end date"
        )
    tables, digest = [], hashlib.sha256()
    for day in chosen:
        for path in sorted((root / f"event_date={day.isoformat()}").glob("*.parquet")):
            if path.name.startswith((".", "_")):
                continue
            digest.update(f"{day}/{path.name}".encode())
            digest.update(path.read_bytes())
            tables.append(_read_on_contract(path))
    table = pa.concat_tables(tables) if tables else GOLD_CTR_TRAINING.schema.empty_table()
    frame = table.to_pandas().sort_values("event_time", kind="stable", ignore_index=True)
    newest = _newest_event_time(root, available[-1])
    if newest is not None:
        settled_until = newest - label_settle_time(settings)
        digest.update(f"settled until {settled_until.isoformat()}".encode())
        frame = frame[frame["event_time"] <= settled_until].reset_index(drop=True)
    version = DataVersion(tuple(d.isoformat() for d in chosen), len(frame), digest.hexdigest())
    check_trainable(frame, version)
    return frame, version


def _read_on_contract(path: Path) -> pa.Table:
    table = pq.read_table(path)
    missing = [n for n in GOLD_CTR_TRAINING.schema.names if n not in table.column_names]
    if missing:
        raise TrainingDataError(
            f"{path} lacks the columns {', '.join(missing)} of the Gold CTR training contract "
            "(plugins/adplatform/lakehouse/tables.py): rebuild the partition"
        )
    try:
        return table.select(GOLD_CTR_TRAINING.schema.names).cast(GOLD_CTR_TRAINING.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise TrainingDataError(
            f"{path} does not fit the Gold CTR training contract: {error}"
        ) from None


def check_trainable(frame: pd.DataFrame, version: DataVersion) -> None:
    """Refuse data no model should be trained on: empty, one class, or too few clicks."""
    where = f"the Gold CTR training set {version.describe()}"
    if frame.empty:
        raise TrainingDataError(f"{where} is empty: check that the Gold job wrote impressions")
    clicks = int(frame[LABEL].sum())
    if clicks == 0 or clicks == len(frame):
        label = "no clicks" if clicks == 0 else "only clicks"
        raise TrainingDataError(
            f"{where} has {label} ({len(frame):,} impressions): the label is degenerate; "
            "check click attribution in Silver before retraining"
        )
    if clicks < MIN_CLICKS:
        raise TrainingDataError(
            f"{where} has only {clicks} clicks (at least {MIN_CLICKS} needed): "
            "train on a longer lookback"
        )


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame


def split_by_time(frame: pd.DataFrame, validation: float = 0.1, holdout: float = 0.1) -> Split:
    """The earliest rows train, the next validate (early stopping), the latest are held out.

    The cuts fall between distinct timestamps, so no instant is on both sides of a cut."""
    times = frame["event_time"]
    train_end = times.iloc[int(len(frame) * (1 - validation - holdout))]
    holdout_start = times.iloc[int(len(frame) * (1 - holdout))]
    split = Split(
        train=frame[times < train_end],
        validation=frame[(times >= train_end) & (times < holdout_start)],
        holdout=frame[times >= holdout_start],
    )
    for name in ("train", "validation", "holdout"):
        part = getattr(split, name)
        if part.empty or part[LABEL].nunique() < 2:
            raise TrainingDataError(
                f"the {name} split ({len(part):,} rows, from {times.iloc[0]} to "
                f"{times.iloc[-1]}) has a single class: train on more data"
            )
    return split
