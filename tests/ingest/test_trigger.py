"""The topic-backlog watcher that starts ingest runs (adplatform.orchestration.triggers), run as the
triggerer runs it, against the session broker and the real ingest worker."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from adplatform.connections import KAFKA, kafka_client_config
from adplatform.events.catalog import build_catalog
from adplatform.events.generator import TrafficSimulator
from adplatform.ingest.commitlog import PartitionLog
from adplatform.ingest.worker import IngestOptions, IngestWorker
from adplatform.localstack import free_port
from adplatform.orchestration.triggers import TopicBacklogTrigger
from adplatform.settings import Settings, get_settings
from tests.ingest.conftest import PARTITIONS, produce, traffic

pytestmark = [pytest.mark.integration]


@pytest.fixture
def watched(ingest_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The triggerer's environment: the settings as ADP_* variables, kafka_default."""
    for variable, value in (
        ingest_settings.environment() | ingest_settings.airflow_connections()
    ).items():
        monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    yield ingest_settings
    get_settings.cache_clear()


def fired(seconds: float, refire_seconds: float = 3600.0) -> list[dict[str, Any]]:
    """The payloads a fresh watcher fires within ``seconds``."""
    trigger = TopicBacklogTrigger(poll_interval=0.2, refire_seconds=refire_seconds)
    payloads: list[dict[str, Any]] = []

    async def watch() -> None:
        async for event in trigger.run():
            payloads.append(event.payload)

    async def main() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch(), seconds)
        await trigger.cleanup()

    asyncio.run(main())
    return payloads


def ingest_everything(settings: Settings) -> None:
    IngestWorker(
        settings,
        IngestOptions.from_settings(settings, until_caught_up=True),
        kafka_client_config(settings),
    ).run()


def test_a_backlog_fires_once_until_the_group_moves(watched: Settings, tmp_path: Path) -> None:
    ledger = produce(watched, traffic(300), tmp_path)
    assert fired(3) == [{"topic": watched.events_topic, "backlog": ledger.num_rows}]

    ingest_everything(watched)
    assert fired(2) == []  # caught up: nothing to announce

    more = produce(watched, traffic(100, seed=6), tmp_path / "more")
    assert fired(3) == [{"topic": watched.events_topic, "backlog": more.num_rows}]


def test_nothing_fires_while_a_member_of_the_group_is_reading(
    watched: Settings, tmp_path: Path
) -> None:
    ledger = produce(watched, traffic(100), tmp_path)
    assigned = threading.Event()
    reader = Consumer(
        watched.kafka_client_config()
        | {"group.id": watched.ingest_group_id, "enable.auto.commit": False}
    )
    reader.subscribe([watched.events_topic], on_assign=lambda *_: assigned.set())
    while not assigned.is_set():
        reader.poll(0.2)
    try:
        assert fired(3) == []  # an ingest run is at it: announcing now would queue a useless run
    finally:
        reader.close()
    assert fired(3) == [{"topic": watched.events_topic, "backlog": ledger.num_rows}]


def test_a_backlog_nobody_takes_fires_again_after_refire_seconds(
    watched: Settings, tmp_path: Path
) -> None:
    produce(watched, traffic(100), tmp_path)
    assert len(fired(5, refire_seconds=1)) >= 2


def test_a_transactional_topic_is_ingested_to_its_end_and_then_fires_nothing(
    watched: Settings,
) -> None:
    """Each transaction ends with a marker that takes an offset and is never delivered: the
    commit log, the group's offsets and the run's idea of "caught up" must count it."""
    config = traffic(100, malformed_rate=0.0)
    payloads = [m.payload for m in TrafficSimulator(config, build_catalog(config.seed)).messages()]
    producer = Producer(
        watched.kafka_client_config() | {"transactional.id": f"{watched.events_topic}-tx"}
    )
    producer.init_transactions(60)
    for first in range(0, len(payloads), 100):
        producer.begin_transaction()
        for payload in payloads[first : first + 100]:
            producer.produce(watched.events_topic, payload, partition=first // 100 % PARTITIONS)
        producer.commit_transaction(60)

    options = IngestOptions.from_settings(watched, until_caught_up=True, max_seconds=300)
    metrics = IngestWorker(watched, options, kafka_client_config(watched)).run()

    assert metrics.accepted == metrics.consumed == len(payloads)
    reader = Consumer(watched.kafka_client_config() | {"group.id": "check"})
    for partition in range(PARTITIONS):
        _, high = reader.get_watermark_offsets(TopicPartition(watched.events_topic, partition))
        assert PartitionLog(watched.lake_root, watched.events_topic, partition).end() == high
    reader.close()
    assert set(metrics.lag.values()) == {0}
    assert fired(3) == []


def test_a_running_watcher_takes_up_a_rotated_connection(
    watched: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """The triggerer is not restarted when kafka_default is rotated: once a poll fails on the
    old connection, the next one reads the connection again."""
    ledger = produce(watched, traffic(100), tmp_path)
    live = watched.connections()[KAFKA]
    gone = replace(live, extra=live.extra | {"bootstrap.servers": f"127.0.0.1:{free_port()}"})
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", gone.to_json())
    trigger = TopicBacklogTrigger(poll_interval=0.2)

    async def main() -> dict[str, Any]:
        first = asyncio.ensure_future(anext(trigger.run()))
        while not any("cannot read the backlog" in r.getMessage() for r in caplog.records):
            assert not first.done()
            await asyncio.sleep(0.2)
        monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", live.to_json())
        event = await first
        await trigger.cleanup()
        return dict(event.payload)

    # The bound only keeps a watcher stuck on the old connection from hanging the suite.
    payload = asyncio.run(asyncio.wait_for(main(), 180))
    assert payload == {"topic": watched.events_topic, "backlog": ledger.num_rows}
