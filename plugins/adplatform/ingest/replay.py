"""Replay: re-ingest committed offsets of one partition from Kafka, replacing their files.

A replay never adds rows: it works range by range on the commit log's entries, re-reads each
range from the topic, validates it again with the entry's original clock (so "too old" means
what it meant then) and writes files under the same names (``<topic>+<partition>+<start>``),
which replace the old ones atomically; files the new verdicts no longer need are removed, and
the entry is rewritten with the new counts. Running it twice gives the same result. Use it to
restore deleted or damaged Bronze files, or to re-derive verdicts after a validator fix.
Offsets not committed yet are left to the ingest worker. The dead-letter topic is not re-sent.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import msgspec
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from adplatform.events.validator import Limits, Validator
from adplatform.ingest.batch import PartitionBatch, stage
from adplatform.ingest.commitlog import Entry, IngestError, PartitionLog
from adplatform.ingest.worker import CHUNK, DeadLetters, now_ms, roll_forward
from adplatform.settings import Settings

READ_TIMEOUT_SECONDS = 30.0
# A worker holds the partition's lease for one commit and publish (seconds); longer means stuck.
LEASE_WAIT_SECONDS = 120.0


@dataclass
class ReplayResult:
    partition: int
    first_offset: int  # the replay covers [first_offset, end_offset): whole committed ranges
    end_offset: int
    ranges: int = 0
    messages: int = 0
    accepted: int = 0
    quarantined: int = 0
    changed: int = 0  # ranges whose verdicts differ from the previous ingest
    files_removed: int = 0


def replay_partition(
    settings: Settings,
    partition: int,
    *,
    from_offset: int | None = None,
    from_time: datetime | None = None,
    client_config: dict[str, Any],
    on_range: Callable[[Entry, int], None] | None = None,
) -> ReplayResult:
    """Re-ingest the committed ranges of ``partition`` that end after ``from_offset`` (or the
    first offset at or after ``from_time``). ``client_config``: the Kafka connection's librdkafka
    settings, resolved by the caller. ``on_range(entry, total)`` reports progress."""
    if (from_offset is None) == (from_time is None):
        raise ValueError("give exactly one of from_offset and from_time")
    topic = settings.events_topic
    config = client_config | {
        "group.id": f"{settings.ingest_group_id}-replay",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    }
    plog = PartitionLog(settings.lake_root, topic, partition)
    consumer = Consumer(config)
    try:
        partitions = consumer.list_topics(topic, timeout=15).topics[topic].partitions
        if partition not in partitions:
            raise IngestError(
                f"{topic} has no partition {partition}: choose one of 0..{len(partitions) - 1}"
            )
        if from_time is not None:
            from_offset = _offset_at(consumer, topic, partition, from_time)
        assert from_offset is not None
        with plog.lease(wait_seconds=LEASE_WAIT_SECONDS):
            return _replay_entries(settings, plog, consumer, from_offset, client_config, on_range)
    finally:
        consumer.close()


def _replay_entries(
    settings: Settings,
    plog: PartitionLog,
    consumer: Consumer,
    from_offset: int,
    client_config: dict[str, Any],
    on_range: Callable[[Entry, int], None] | None,
) -> ReplayResult:
    """Under the partition's lease: no worker publishes over the files written here."""
    dead_letters = DeadLetters(client_config, settings.dead_letter_topic)
    for entry in plog.unpublished():  # finish a stopped worker's ranges before rewriting
        roll_forward(plog, entry, dead_letters)
    dead_letters.close()
    entries = [e for e in plog.entries() if e.end > from_offset]
    result = ReplayResult(
        plog.partition,
        entries[0].start if entries else from_offset,
        entries[-1].end if entries else from_offset,
    )
    validator = Validator(Limits.from_settings(settings))
    encoder = msgspec.json.Encoder()
    for entry in entries:
        replayed = _replay_range(consumer, plog, entry, validator, encoder)
        result.ranges += 1
        result.messages += replayed.consumed
        result.accepted += replayed.accepted
        result.quarantined += replayed.quarantined
        result.changed += (replayed.accepted, replayed.reasons) != (
            entry.accepted,
            entry.reasons,
        )
        result.files_removed += len(
            {f.path for f in entry.files} - {f.path for f in replayed.files}
        )
        if on_range:
            on_range(replayed, len(entries))
    return result


def _offset_at(consumer: Consumer, topic: str, partition: int, when: datetime) -> int:
    """The first offset whose message timestamp is at or after ``when``."""
    found = consumer.offsets_for_times(
        [TopicPartition(topic, partition, int(when.timestamp() * 1000))], timeout=15
    )[0]
    if found.error is not None:
        raise IngestError(f"cannot look up {when.isoformat()} in {topic}: {found.error}")
    if found.offset < 0:  # no message that late: nothing to replay
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
        return high
    return int(found.offset)


def _replay_range(
    consumer: Consumer,
    plog: PartitionLog,
    entry: Entry,
    validator: Validator,
    encoder: msgspec.json.Encoder,
) -> Entry:
    messages = _read_range(consumer, plog.topic, plog.partition, entry.start, entry.end)
    if len(messages) != entry.consumed:
        raise IngestError(
            f"partition {plog.partition} offsets {entry.start}..{entry.end - 1}: the topic now "
            f"holds {len(messages)} of the {entry.consumed} messages ingested from them (deleted "
            "by retention or compaction); a replay needs all of them, so nothing was changed"
        )
    batch = PartitionBatch(plog.topic, plog.partition, entry.start, entry.validated_at_ms)
    for first in range(0, len(messages), CHUNK):
        batch.add(validator, encoder, messages[first : first + CHUNK])
    staging = plog.replay_dir(entry.start)
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted replay
    replayed = msgspec.structs.replace(
        stage(batch, staging, entry.attempt, entry.committed_at_ms), replayed_at_ms=now_ms()
    )
    plog.publish(replayed, staging)
    for stale in {f.path for f in entry.files} - {f.path for f in replayed.files}:
        (plog.lake_root / stale).unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    plog.replace(replayed)
    return replayed


def _read_range(
    consumer: Consumer, topic: str, partition: int, start: int, end: int
) -> list[Message]:
    """Every message of ``[start, end)`` still in the topic."""
    consumer.assign([TopicPartition(topic, partition, start)])
    found: list[Message] = []
    deadline = time.monotonic() + READ_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for message in consumer.consume(CHUNK, timeout=1.0):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return found
                raise IngestError(f"reading {topic} partition {partition}: {error}")
            offset = cast(int, message.offset())
            if offset >= end:
                return found
            found.append(message)
            if offset == end - 1:
                return found
            deadline = time.monotonic() + READ_TIMEOUT_SECONDS
    raise IngestError(
        f"reading {topic} partition {partition} from offset {start} stalled for "
        f"{READ_TIMEOUT_SECONDS:.0f}s: is the broker up?"
    )
