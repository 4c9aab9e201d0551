"""Where ingest stands, per partition: committed position, lag, rows in Bronze and quarantine.

The committed position comes from the commit log (the truth); the consumer group's offset is
shown next to it because monitoring tools (Redpanda Console, Burrow, kafka-consumer-groups)
read that one, and the two should agree after every batch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from adplatform.ingest.commitlog import IngestError, PartitionLog
from adplatform.settings import Settings


@dataclass(frozen=True)
class PartitionStatus:
    partition: int
    committed_end: int  # next offset to ingest, from the commit log
    group_offset: int | None  # the consumer group's committed offset (monitoring only)
    log_start: int  # the topic's first retained offset
    log_end: int  # the topic's next offset
    commits: int
    accepted: int  # rows in Bronze from this partition
    quarantined: int
    unpublished: int  # committed ranges a stopped worker has not finished publishing
    last_commit_ms: int | None

    @property
    def lag(self) -> int:
        return max(0, self.log_end - self.committed_end)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"lag": self.lag}


def ingest_status(
    settings: Settings, group_id: str, client_config: dict[str, Any]
) -> list[PartitionStatus]:
    """``client_config``: the Kafka connection's librdkafka settings, resolved by the caller."""
    config = client_config | {
        "group.id": group_id,
        "enable.auto.commit": False,
    }
    consumer = Consumer(config)
    try:
        try:
            metadata = consumer.list_topics(settings.events_topic, timeout=15)
        except KafkaException as error:
            raise IngestError(
                f"Kafka at {config['bootstrap.servers']} is unreachable ({error.args[0]}): start "
                "the local stack with `make up`, or fix the Kafka connection (ADP_KAFKA_BOOTSTRAP)"
            ) from None
        topic = metadata.topics.get(settings.events_topic)
        if topic is None or topic.error is not None:
            raise IngestError(
                f"topic {settings.events_topic} does not exist: create it with `adplatform topics`"
            )
        partitions = sorted(topic.partitions)
        committed = _group_offsets(consumer, settings.events_topic, partitions)
        rows = []
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(settings.events_topic, partition), timeout=15
            )
            plog = PartitionLog(settings.lake_root, settings.events_topic, partition)
            entries = plog.entries()
            rows.append(
                PartitionStatus(
                    partition=partition,
                    committed_end=entries[-1].end if entries else 0,
                    group_offset=committed.get(partition),
                    log_start=low,
                    log_end=high,
                    commits=len(entries),
                    accepted=sum(e.accepted for e in entries),
                    quarantined=sum(e.quarantined for e in entries),
                    unpublished=len(plog.unpublished()),
                    last_commit_ms=entries[-1].committed_at_ms if entries else None,
                )
            )
        return rows
    finally:
        consumer.close()


_COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


def _group_offsets(consumer: Consumer, topic: str, partitions: list[int]) -> dict[int, int]:
    """The group's committed offsets (monitoring only): none while the broker's group
    coordinator is not ready (it loads on a fresh broker), rather than failing the status."""
    for attempt in range(5):
        try:
            found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=15)
            return {tp.partition: tp.offset for tp in found if tp.offset >= 0}
        except KafkaException as error:
            if error.args[0].code() not in _COORDINATOR_NOT_READY:
                raise
            time.sleep(0.5 * 2**attempt)
    return {}
