"""Writes Bronze as the ingest worker does, for the transform tests.

A stand-in until the ingest writer lands: payloads are checked by the one Validator, accepted
events land in ``event_date=/event_hour=/event_type=`` partitions with exactly the columns of
``BRONZE_EVENTS`` (plus lineage), rejected ones in the quarantine table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from adplatform.events.validator import Rejection, Validator
from adplatform.lakehouse.io import atomic_write_parquet
from adplatform.lakehouse.partitions import hour_partition
from adplatform.lakehouse.tables import BRONZE_EVENTS, QUARANTINE_EVENTS
from adplatform.settings import Settings

TOPIC = "ad-events"


@dataclass
class Delivery:
    accepted: int = 0
    quarantined: int = 0
    files: list[Path] = field(default_factory=list)


def write_bronze(
    settings: Settings,
    payloads: Iterable[bytes],
    *,
    ingested_at: datetime,
    batch: str,
    broker_time: datetime | None = None,
    partition: int = 0,
    first_offset: int = 0,
    without: tuple[str, ...] = (),
) -> Delivery:
    """Validate ``payloads`` as of ``ingested_at`` and write one file per partition named
    ``<batch>.parquet``, as if read from Kafka ``partition`` where they arrived at
    ``broker_time`` (default: as they were ingested); ``without`` drops columns (a writer from
    before a schema version)."""
    validator = Validator()
    now_ms = int(ingested_at.timestamp() * 1000)
    lineage = {
        "_topic": TOPIC,
        "_partition": partition,
        "_ingested_at": ingested_at,
        "_broker_time": broker_time or ingested_at,
    }
    partitions: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    rejected = []
    delivery = Delivery()
    for offset, payload in enumerate(payloads, start=first_offset):
        event = validator.validate(payload, now_ms)
        if isinstance(event, Rejection):
            rejected.append(
                {
                    "reason": event.reason.value,
                    "detail": event.detail,
                    "payload": payload,
                    **lineage,
                    "_offset": offset,
                }
            )
            continue
        row = msgspec.structs.asdict(event) | lineage | {"_offset": offset}
        hour = datetime.fromtimestamp(event.event_time_ms / 1000, UTC)
        partitions[(hour_partition(hour), event.event_type)].append(row)
    schema = pa.schema([f for f in BRONZE_EVENTS.schema if f.name not in without])
    for (hour_dir, event_type), rows in sorted(partitions.items()):
        path = (
            BRONZE_EVENTS.path(settings)
            / hour_dir
            / f"event_type={event_type}"
            / f"{batch}.parquet"
        )
        delivery.files.append(atomic_write_parquet(pa.Table.from_pylist(rows, schema=schema), path))
        delivery.accepted += len(rows)
    if rejected:
        path = (
            QUARANTINE_EVENTS.path(settings)
            / f"ingest_date={ingested_at:%Y-%m-%d}"
            / f"{batch}.parquet"
        )
        delivery.files.append(
            atomic_write_parquet(
                pa.Table.from_pylist(rejected, schema=QUARANTINE_EVENTS.schema), path
            )
        )
        delivery.quarantined = len(rejected)
    return delivery


def encode(events: Iterable[dict[str, Any]]) -> list[bytes]:
    return [msgspec.json.encode(e) for e in events]
