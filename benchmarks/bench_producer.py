"""Traffic generator + producer throughput vs a bare confluent-kafka producer loop.

Both send the same ~1M messages to the same local broker with the same producer settings; the
bare loop sends bytes serialized beforehand, so the ratio is the price of simulating,
serializing and accounting for the traffic.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from adplatform.broker import admin_client, producer_config
from adplatform.events.catalog import build_catalog
from adplatform.events.generator import TrafficConfig, TrafficSimulator
from adplatform.events.producer import produce_traffic
from benchmarks.harness import Context, Result, timed

REQUESTS = 250_000


def _bare_produce(settings, topic: str, payloads: Iterable[tuple[bytes, bytes]]) -> None:
    producer = Producer(producer_config(settings))
    for key, payload in payloads:
        while True:
            try:
                producer.produce(topic, payload, key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def run(ctx: Context) -> list[Result]:
    settings = ctx.service("kafka")
    admin = admin_client(settings)
    for topic in ("bench-generator", "bench-bare"):
        admin.create_topics([NewTopic(topic, settings.topic_partitions, 1)])[topic].result()
    start = (datetime.now(UTC) - timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    config = TrafficConfig(seed=1, start=start, requests=REQUESTS)
    summary = produce_traffic(settings, config, show_progress=False, topic="bench-generator")
    payloads = [
        (m.key, m.payload) for m in TrafficSimulator(config, build_catalog(config.seed)).messages()
    ]
    bare_seconds, _ = timed(lambda: _bare_produce(settings, "bench-bare", payloads))
    bare_rate = len(payloads) / bare_seconds
    return [
        Result(
            benchmark="producer",
            metric="generator+producer throughput",
            value=summary.rate,
            unit="msg/s",
            reference="bare producer loop (pre-serialized)",
            reference_value=bare_rate,
            details={
                "messages": summary.messages,
                "generator_seconds": summary.seconds,
                "bare_seconds": bare_seconds,
            },
        )
    ]
