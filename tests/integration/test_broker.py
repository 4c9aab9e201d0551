"""The real broker: topics, a generated round trip, and clear errors when it is away."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic

from adplatform.broker import BrokerUnreachable, admin_client, ensure_topics, topic_specs
from adplatform.events.generator import TrafficConfig
from adplatform.events.producer import produce_traffic
from adplatform.settings import load_settings

pytestmark = pytest.mark.integration


def test_topics_are_created_once_with_their_partitions(kafka):
    first = ensure_topics(kafka)
    assert ensure_topics(kafka) == []  # idempotent
    topics = admin_client(kafka).list_topics(timeout=10).topics
    for spec in topic_specs(kafka):
        assert spec.name in first or spec.name in topics
        assert len(topics[spec.name].partitions) == spec.partitions
    # The broker stamps each event as it appends it: the transform's late window reads that.
    admin, events = (
        admin_client(kafka),
        ConfigResource(ConfigResource.Type.TOPIC, kafka.events_topic),
    )
    config = admin.describe_configs([events])[events].result()
    assert config["message.timestamp.type"].value == "LogAppendTime"


def test_generated_traffic_round_trips_through_the_broker(kafka, tmp_path):
    topic = "roundtrip-test"
    ensure_topics(kafka)
    admin = admin_client(kafka)
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result()
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    config = TrafficConfig(
        seed=11, start=start, hours=2, requests=3000, malformed_rate=0.01, duplicate_rate=0.01
    )
    ledger_path = tmp_path / "ledger.parquet"
    summary = produce_traffic(
        kafka, config, ledger_path=ledger_path, show_progress=False, topic=topic
    )
    ledger = pq.read_table(ledger_path).to_pylist()
    assert len(ledger) == summary.messages
    assert summary.messages == summary.valid + summary.duplicates + summary.malformed
    assert all(row["offset"] >= 0 for row in ledger)  # every message acknowledged

    consumer = Consumer(
        kafka.kafka_client_config() | {"group.id": "roundtrip", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    received = {}
    while len(received) < summary.messages:
        batch = consumer.consume(1000, timeout=10)
        assert batch, f"only {len(received)} of {summary.messages} messages came back"
        for message in batch:
            received[(message.partition(), message.offset())] = message.value()
    consumer.close()
    assert set(received) == {(row["partition"], row["offset"]) for row in ledger}
    by_type = Counter(row["event_type"] for row in ledger)
    assert by_type == Counter(summary.by_type)


def test_an_unreachable_broker_is_a_clear_error(tmp_path):
    # The bootstrap itself: a session's ADP_KAFKA_BOOTSTRAP would win over a port.
    settings = load_settings(data_root=tmp_path, kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(BrokerUnreachable, match=r"127.0.0.1:1 is unreachable.*make up"):
        produce_traffic(
            settings, TrafficConfig(start=datetime(2026, 1, 1, tzinfo=UTC)), show_progress=False
        )
