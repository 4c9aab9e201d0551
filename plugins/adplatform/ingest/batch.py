"""One partition's batch: validated on the consumer thread, written as Parquet in staging.

The consumer thread only validates (the shared msgspec validator) and re-encodes each accepted
event as one canonical JSON line (``msgspec`` encodes a struct in well under a microsecond).
Arrow's C++ JSON reader then builds the Bronze columns from those lines off the GIL, on the
committer thread, which is several times cheaper for the consumer thread than converting
Python objects to Arrow arrays. The lines are the validator's own output, so Bronze holds
exactly what the validator accepted, with one column per schema field.
"""

from __future__ import annotations

import array
import io
import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from adplatform.events.generator import HOUR_MS
from adplatform.events.validator import Validator
from adplatform.ingest.commitlog import Entry, FileRef, writer_id
from adplatform.lakehouse.io import make_directories_durable, write_parquet_synced
from adplatform.lakehouse.tables import BRONZE_EVENTS, QUARANTINE_EVENTS, Table

_METADATA_COLUMNS = ("_topic", "_partition", "_offset", "_ingested_at", "_broker_time")
_EVENT_SCHEMA = pa.schema(
    [f for f in BRONZE_EVENTS.schema if f.name not in _METADATA_COLUMNS]
    + [pa.field("event_type", pa.string())]
)
_JSON_PARSE = pa_json.ParseOptions(explicit_schema=_EVENT_SCHEMA, unexpected_field_behavior="error")
# Lines are at most a few KiB (the validator caps payloads); 4 MiB blocks amortise the parser.
_JSON_READ = pa_json.ReadOptions(use_threads=False, block_size=4 << 20)


@dataclass(slots=True)
class Rejected:
    offset: int
    payload: bytes
    reason: str
    detail: str


@dataclass
class PartitionBatch:
    """Validated messages of one partition, offsets ``[start, end)``, not yet written."""

    topic: str
    partition: int
    start: int
    validated_at_ms: int
    end: int = -1
    consumed: int = 0
    lines: list[bytes] = field(default_factory=list)  # chunks of newline-terminated JSON
    offsets: array.array = field(default_factory=lambda: array.array("q"))  # accepted, in order
    broker_times_ms: array.array = field(default_factory=lambda: array.array("q"))  # per offset
    rejected: list[Rejected] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.end = self.start

    @property
    def accepted(self) -> int:
        return len(self.offsets)

    def add(
        self, validator: Validator, encoder: msgspec.json.Encoder, messages: list[Message]
    ) -> None:
        """Validate the next messages of this partition (in offset order) and keep the result."""
        offsets = cast(list[int], list(map(Message.offset, messages)))
        if offsets[0] < self.end:  # never twice: a redelivered prefix is already in the batch
            messages = [
                m for m, offset in zip(messages, offsets, strict=True) if offset >= self.end
            ]
            if not messages:
                return
            offsets = cast(list[int], list(map(Message.offset, messages)))
        payloads = cast(list[bytes], list(map(Message.value, messages)))
        if None in payloads:  # a tombstone is quarantined too
            payloads = [payload or b"" for payload in payloads]
        accepted, rejections = validator.validate_batch(payloads, self.validated_at_ms)
        self.consumed += len(messages)
        self.end = offsets[-1] + 1
        # The record timestamp: the broker's log-append time on the platform's topics (a topic
        # created without it has the producer's send time); the batch's clock when absent.
        stamps = [
            stamp if kind != TIMESTAMP_NOT_AVAILABLE else self.validated_at_ms
            for kind, stamp in map(Message.timestamp, messages)
        ]
        if rejections:
            self.rejected.extend(
                Rejected(offsets[i], payloads[i], rejection.reason.value, rejection.detail)
                for i, rejection in rejections
            )
            bad = {index for index, _ in rejections}
            offsets = [offset for index, offset in enumerate(offsets) if index not in bad]
            stamps = [stamp for index, stamp in enumerate(stamps) if index not in bad]
        if accepted:
            self.lines.append(encoder.encode_lines(accepted))
            self.offsets.extend(offsets)
            self.broker_times_ms.extend(stamps)


def file_name(topic: str, partition: int, start: int) -> str:
    """Kafka Connect's naming: one file name per (topic, partition, first offset) and table
    directory, so a replay of the same range replaces the file instead of adding one."""
    return f"{topic}+{partition}+{start:020d}.parquet"


def _table_dir(table: Table) -> Path:
    return Path(table.layer, table.name)


def bronze_table(batch: PartitionBatch) -> pa.Table:
    """The batch's accepted events with Bronze's columns (partition columns excluded)."""
    events = pa.concat_tables(
        pa_json.read_json(io.BytesIO(chunk), read_options=_JSON_READ, parse_options=_JSON_PARSE)
        for chunk in batch.lines
    )
    rows = events.num_rows
    ingested_at = pa.scalar(batch.validated_at_ms, pa.timestamp("ms", tz="UTC"))
    metadata = {
        "_topic": pa.repeat(pa.scalar(batch.topic), rows),
        "_partition": pa.repeat(pa.scalar(batch.partition, pa.int32()), rows),
        "_offset": pa.array(np.frombuffer(batch.offsets, dtype=np.int64)),
        "_ingested_at": pa.repeat(ingested_at, rows),
        "_broker_time": pa.array(
            np.frombuffer(batch.broker_times_ms, dtype=np.int64), pa.timestamp("ms", tz="UTC")
        ),
    }
    columns = [
        metadata[f.name] if f.name in metadata else events[f.name] for f in BRONZE_EVENTS.schema
    ]
    table = pa.Table.from_arrays(columns, schema=BRONZE_EVENTS.schema)
    return table.append_column("event_type", events["event_type"])


def _bronze_parts(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """Split by the Bronze partition (event_date, event_hour, event_type): (directory, rows).
    One stable sort and zero-copy slices; rows keep their offset order within a file."""
    event_types = pc.dictionary_encode(table["event_type"]).combine_chunks()
    hours = pc.divide(table["event_time_ms"], HOUR_MS).to_numpy()
    keys = event_types.indices.to_numpy().astype(np.int64) << 32 | hours
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    rows = table.drop_columns(["event_type"]).take(order)
    bounds = [0, *(np.flatnonzero(np.diff(keys)) + 1).tolist(), len(keys)]
    parts = []
    for first, after in itertools.pairwise(bounds):
        key = int(keys[first])
        when = datetime.fromtimestamp((key & 0xFFFFFFFF) * HOUR_MS / 1000, UTC)
        event_type = event_types.dictionary[key >> 32].as_py()
        directory = f"event_date={when:%Y-%m-%d}/event_hour={when.hour}/event_type={event_type}"
        parts.append((directory, rows.slice(first, after - first)))
    return parts


def quarantine_table(batch: PartitionBatch) -> pa.Table:
    rejected = batch.rejected
    ingested_at = pa.scalar(batch.validated_at_ms, pa.timestamp("ms", tz="UTC"))
    return pa.Table.from_arrays(
        [
            pa.array([r.reason for r in rejected], pa.string()),
            pa.array([r.detail for r in rejected], pa.string()),
            pa.array([r.payload for r in rejected], pa.binary()),
            pa.repeat(pa.scalar(batch.topic), len(rejected)),
            pa.repeat(pa.scalar(batch.partition, pa.int32()), len(rejected)),
            pa.array([r.offset for r in rejected], pa.int64()),
            pa.repeat(ingested_at, len(rejected)),
        ],
        schema=QUARANTINE_EVENTS.schema,
    )


def stage(batch: PartitionBatch, staging: Path, attempt: str, now_ms: int) -> Entry:
    """Write the batch's files, durably, into ``staging`` (a directory of its own); return the
    entry that will publish them."""
    make_directories_durable(staging)
    name = file_name(batch.topic, batch.partition, batch.start)
    files: list[FileRef] = []
    if batch.lines:
        for directory, part in _bronze_parts(bronze_table(batch)):
            write_parquet_synced(part, staging / f"{len(files)}.parquet")
            files.append(FileRef(str(_table_dir(BRONZE_EVENTS) / directory / name), part.num_rows))
    if batch.rejected:
        ingest_date = datetime.fromtimestamp(batch.validated_at_ms / 1000, UTC)
        write_parquet_synced(quarantine_table(batch), staging / f"{len(files)}.parquet")
        files.append(
            FileRef(
                str(_table_dir(QUARANTINE_EVENTS) / f"ingest_date={ingest_date:%Y-%m-%d}" / name),
                len(batch.rejected),
            )
        )
    return Entry(
        topic=batch.topic,
        partition=batch.partition,
        start=batch.start,
        end=batch.end,
        consumed=batch.consumed,
        accepted=batch.accepted,
        quarantined=len(batch.rejected),
        reasons=dict(Counter(r.reason for r in batch.rejected)),
        validated_at_ms=batch.validated_at_ms,
        committed_at_ms=now_ms,
        attempt=attempt,
        writer=writer_id(),
        files=tuple(files),
    )
