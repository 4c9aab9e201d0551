"""Simulated Gold CTR training partitions, straight from the traffic simulator.

For tests, the benchmark and trying the model without the lakehouse: production trains on the
partitions Spark writes. Each day is simulated by its own simulator, as a daily
``adplatform generate`` run produces it, without late, duplicate or malformed events (the
lakehouse removes those before Gold), and turned into exactly the rows and layout of
``GOLD_CTR_TRAINING``: one row per impression, labelled with whether it was clicked, carrying
the simulator's true click probability as the oracle.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import pyarrow as pa

from adplatform.events.catalog import build_catalog
from adplatform.events.currency import to_micros
from adplatform.events.generator import TrafficConfig, TrafficSimulator
from adplatform.lakehouse.io import atomic_write_parquet
from adplatform.lakehouse.tables import GOLD_CTR_TRAINING
from adplatform.settings import Settings


class _Impression(msgspec.Struct):
    """The fields of an impression event that Gold keeps (the rest are ignored)."""

    impression_id: str
    event_time_ms: int
    advertiser_id: str
    campaign_id: str
    line_item_id: str
    creative_id: str
    publisher_id: str
    site_id: str
    placement_id: str
    ad_size: str
    device_type: str
    os: str
    country: str
    region: str
    user_id_hash: str
    clearing_price_cpm: float
    currency: str
    sim_click_probability: float


class _Click(msgspec.Struct):
    impression_id: str


_CONTEXT_COLUMNS = [
    name
    for name in _Impression.__struct_fields__
    if name in GOLD_CTR_TRAINING.schema.names and name != "impression_id"
]


def simulated_day(day: date, requests: int, seed: int = 7) -> pa.Table:
    """One simulated UTC day of impressions as a Gold CTR training table."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    config = TrafficConfig(
        seed=seed,
        start=start,
        requests=requests,
        late_rate=0.0,
        duplicate_rate=0.0,
        malformed_rate=0.0,
    )
    impressions: list[_Impression] = []
    clicked: set[str] = set()
    for message in TrafficSimulator(config, build_catalog(seed)).messages():
        if message.event_type == "impression":
            impressions.append(msgspec.json.decode(message.payload, type=_Impression))
        elif message.event_type == "click":
            clicked.add(msgspec.json.decode(message.payload, type=_Click).impression_id)
    # An auction just before midnight may render just after it: that impression belongs to
    # the next day, which this simulator does not cover.
    day_end_ms = int((start + timedelta(days=1)).timestamp() * 1000)
    impressions = sorted(
        (e for e in impressions if e.event_time_ms < day_end_ms), key=lambda e: e.event_time_ms
    )
    seen_by_user: dict[str, int] = {}
    rows: dict[str, list[object]] = {name: [] for name in GOLD_CTR_TRAINING.schema.names}
    for event in impressions:
        when = datetime.fromtimestamp(event.event_time_ms / 1000, UTC)
        rows["impression_id"].append(event.impression_id)
        rows["event_time"].append(when)
        rows["hour_of_day"].append(when.hour)
        rows["day_of_week"].append(when.isoweekday())
        for name in _CONTEXT_COLUMNS:
            rows[name].append(getattr(event, name))
        seen = seen_by_user.get(event.user_id_hash, 0)
        rows["user_impressions_before"].append(seen)
        seen_by_user[event.user_id_hash] = seen + 1
        rows["clearing_price_micros"].append(
            to_micros(event.clearing_price_cpm / 1000, event.currency)
        )
        rows["clicked"].append(int(event.impression_id in clicked))
        rows["oracle_click_probability"].append(event.sim_click_probability)
    return pa.Table.from_pydict(rows, schema=GOLD_CTR_TRAINING.schema)


def write_simulated_ctr_training(
    settings: Settings, start: date, days: int, requests_per_day: int, seed: int = 7
) -> list[Path]:
    """Write ``days`` simulated days as Gold partitions ``event_date=YYYY-MM-DD/part-0.parquet``
    (replacing any there), and return their paths."""
    written = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        path = GOLD_CTR_TRAINING.path(settings) / f"event_date={day.isoformat()}" / "part-0.parquet"
        written.append(atomic_write_parquet(simulated_day(day, requests_per_day, seed), path))
    return written
