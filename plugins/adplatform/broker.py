"""The Kafka-API broker as the platform uses it: client configs, topics, reachability.

Topics are declared here, once, with their partitions and retention; `ensure_topics` creates
what is missing and is safe to run any number of times. The same code runs against the local
Apache Kafka broker and against Redpanda in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from adplatform.connections import Source, kafka_client_config
from adplatform.settings import Settings


class BrokerUnreachable(RuntimeError):
    pass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    retention_ms = str(settings.topic_retention_hours * 3_600_000)
    common = {"retention.ms": retention_ms, "compression.type": "producer"}
    return [
        # The broker stamps each event as it appends it: the transform's late window is measured
        # on that clock, which neither a producer's nor a stalled consumer's can move.
        TopicSpec(
            settings.events_topic,
            settings.topic_partitions,
            settings.topic_replication,
            common | {"message.timestamp.type": "LogAppendTime"},
        ),
        # Quarantined events keep their raw bytes: keep them four times longer for forensics.
        TopicSpec(
            settings.dead_letter_topic,
            1,
            settings.topic_replication,
            common | {"retention.ms": str(settings.topic_retention_hours * 4 * 3_600_000)},
        ),
    ]


def admin_client(kafka: Source) -> AdminClient:
    """``kafka``: the settings, or in an Airflow task the Kafka connection's conn_id."""
    return AdminClient(kafka_client_config(kafka))


def check_reachable(kafka: Source, timeout: float = 10.0) -> None:
    """Raise a one-line, actionable error when no broker answers."""
    bootstrap = kafka_client_config(kafka)["bootstrap.servers"]
    try:
        metadata = admin_client(kafka).list_topics(timeout=timeout)
    except KafkaException as error:
        raise BrokerUnreachable(
            f"Kafka broker at {bootstrap} is unreachable ({error.args[0]}): start the local "
            "stack with `make up`, or set ADP_KAFKA_BOOTSTRAP (Airflow: kafka_default)"
        ) from None
    if not metadata.brokers:
        raise BrokerUnreachable(f"Kafka at {bootstrap} reports no brokers")


def ensure_topics(
    settings: Settings, kafka: Source | None = None, timeout: float = 30.0
) -> list[str]:
    """Create the platform's topics that do not exist yet; returns the names created. The
    broker: ``kafka`` (a conn_id in Airflow), or the settings'."""
    kafka = kafka or settings
    admin = admin_client(kafka)
    check_reachable(kafka)
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(s.name, s.partitions, s.replication, config=s.config) for s in missing],
        operation_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as error:
            if error.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another process raced us
                raise
    return created


def producer_config(kafka: Source) -> dict[str, Any]:
    """Idempotent, batched producer: a retried send never duplicates a message on the topic."""
    return kafka_client_config(kafka) | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
    }
