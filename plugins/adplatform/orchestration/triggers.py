"""Event-driven ingest: an asset watcher that fires when the events topic has a backlog.

The triggerer runs one instance for as long as the ingest DAG is unpaused. Every
``poll_interval`` seconds it reads a few numbers from the broker, never the messages: the
topic's end offsets, the ingest consumer group's committed offsets, and whether the group has a
member. It fires when messages wait beyond the group's position, nobody in the group is
consuming, and the group has moved since the last event (or ``refire_seconds`` have passed, in
case that event's run consumed nothing). So a new message starts a run within seconds, steady
traffic gets one event per run and back-to-back runs, and a quiet topic gets none; the cost
does not grow with the traffic.

Why not the Kafka provider's message-queue trigger: it reads the messages themselves and fires
one asset event per message (its ``AwaitMessageTrigger`` stops after each, and the triggerer
starts it again), so on a topic of hundreds of messages a second it would be a second consumer
that never catches up, writing a metadata-database row every few seconds forever.

The group's committed offsets are what lag monitors read; the ingest worker commits them after
its commit log, so they may trail it for a moment, which costs at most a run that finds nothing
new and announces nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

if TYPE_CHECKING:
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backlog:
    committed: dict[int, int]  # the group's position per partition
    messages: int  # beyond it, up to the topic's end
    consuming: bool  # the group has a member (an ingest run is reading)


class TopicBacklogTrigger(BaseEventTrigger):
    def __init__(
        self,
        kafka_config_id: str = "kafka_default",
        poll_interval: float = 5.0,
        refire_seconds: float = 60.0,
    ) -> None:
        super().__init__()
        self.kafka_config_id = kafka_config_id
        self.poll_interval = poll_interval
        self.refire_seconds = refire_seconds
        self._clients: tuple[Consumer, AdminClient] | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "kafka_config_id": self.kafka_config_id,
                "poll_interval": self.poll_interval,
                "refire_seconds": self.refire_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        from adplatform.settings import get_settings

        settings = get_settings()
        topic, group = settings.events_topic, settings.ingest_group_id
        fired: tuple[dict[int, int], float] | None = None  # the group's position then, when
        while True:
            try:
                backlog = await sync_to_async(self._backlog)(topic, group)
            except Exception as error:  # an outage must not stop the watcher: poll again
                log.warning("cannot read the backlog of %s: %s", topic, error)
                # With clients made afresh, from the connection as it is now: a rotated
                # password or moved broker reaches the watcher without a triggerer restart.
                await self.cleanup()
            else:
                moved = fired is None or backlog.committed != fired[0]
                stale = fired is not None and time.monotonic() - fired[1] > self.refire_seconds
                if backlog.messages and not backlog.consuming and (moved or stale):
                    fired = backlog.committed, time.monotonic()
                    yield TriggerEvent({"topic": topic, "backlog": backlog.messages})
            await asyncio.sleep(self.poll_interval)

    def _backlog(self, topic: str, group: str) -> Backlog:
        from confluent_kafka import Consumer, TopicPartition
        from confluent_kafka.admin import AdminClient

        from adplatform.connections import kafka_client_config

        if self._clients is None:
            config = kafka_client_config(self.kafka_config_id)
            consumer = Consumer(config | {"group.id": group, "enable.auto.commit": False})
            self._clients = consumer, AdminClient(config)  # the consumer never joins the group
        consumer, admin = self._clients
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        committed, messages = {}, 0
        for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            committed[tp.partition] = tp.offset if tp.offset >= 0 else low
            messages += max(0, high - committed[tp.partition])
        described = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        return Backlog(committed, messages, consuming=bool(described.members))

    async def cleanup(self) -> None:
        if self._clients is not None:
            self._clients[0].close()
            self._clients = None
