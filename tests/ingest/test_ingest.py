"""Exactly-once ingest on the real broker with real files: killed workers, a restarted broker,
workers sharing (or fighting over) partitions, malformed input, replays, the CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from adplatform.broker import producer_config
from adplatform.connections import kafka_client_config
from adplatform.events.catalog import build_catalog
from adplatform.events.generator import CORRUPTIONS, TrafficSimulator
from adplatform.events.schema import Reason
from adplatform.ingest.commitlog import IngestError, PartitionLog
from adplatform.ingest.replay import replay_partition
from adplatform.ingest.worker import IngestOptions, IngestWorker
from adplatform.lakehouse.tables import BRONZE_EVENTS, QUARANTINE_EVENTS
from tests.ingest.conftest import (
    ADPLATFORM,
    PARTITIONS,
    Producing,
    assert_exactly_once,
    produce,
    read_table,
    stop,
    traffic,
    wait_until_ingested,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _logs(settings) -> list[PartitionLog]:
    return [PartitionLog(settings.lake_root, settings.events_topic, p) for p in range(PARTITIONS)]


def _staged_attempts(settings) -> int:
    """Batches left in staging: written (and perhaps committed) but not published."""
    return sum(len(list(log.staging.glob("*"))) for log in _logs(settings) if log.staging.exists())


def _committed(settings) -> int:
    """Offsets committed over all partitions."""
    return sum(log.end() for log in _logs(settings))


def _wait_for_a_commit(settings, worker, after: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while _committed(settings) == after and time.monotonic() < deadline:
        assert worker.process.poll() is None, worker.log.read_text()[-2000:]
        time.sleep(0.05)


def test_sigkill_at_random_points_while_producing_loses_and_duplicates_nothing(
    ingest_settings, tmp_path, workers
):
    rng = random.Random(20261127)
    producing = Producing(ingest_settings, traffic(30_000), tmp_path / "ledger.parquet", 4_000)
    kills = killed_mid_batch = 0
    while kills < 20 or producing.running():
        # The same static member each time, as a restarted pod: it gets its partitions back
        # at once instead of after the dead member's session times out.
        committed = _committed(ingest_settings)
        worker = workers.start("--instance-id", "chaos")
        assert worker.wait_until_assigned(), worker.log.read_text()[-2000:]
        if kills % 2:  # every other kill comes after a commit, so later phases are hit too
            _wait_for_a_commit(ingest_settings, worker, committed)
        time.sleep(rng.uniform(0.0, 1.5))
        worker.process.kill()
        worker.process.wait()
        kills += 1
        killed_mid_batch += _staged_attempts(ingest_settings) > 0
    ledger = producing.join()
    committed_by_killed_workers = _committed(ingest_settings)
    metrics = workers.drain()
    # The killed workers may have left nothing to drain: then the drain, caught up, stops
    # before the group gives it the partitions the last of them held.
    assert not any(metrics["lag"].values())
    assert_exactly_once(ingest_settings, ledger)
    # Killed workers had committed work that their successors resumed after.
    assert committed_by_killed_workers > 0
    # The kills did land between writing a batch and publishing it, not only in idle moments.
    assert killed_mid_batch > 0


def test_a_broker_restart_in_the_middle_of_a_run_loses_and_duplicates_nothing(
    ingest_settings, local_stack, tmp_path, workers
):
    producing = Producing(ingest_settings, traffic(12_000), tmp_path / "ledger.parquet", 3_000)
    worker = workers.start()
    assert worker.wait_until_assigned()
    time.sleep(3)
    broker = local_stack.services["kafka"]
    broker.stop()
    time.sleep(2)
    broker.start()
    ledger = producing.join()
    # The same worker rejoins the group and finishes the job: no restart, no second worker.
    wait_until_ingested(ingest_settings, ledger, [worker])
    assert "Connection refused" in worker.log.read_text()  # it did see the broker go away
    stop([worker])
    assert_exactly_once(ingest_settings, ledger)


def test_two_workers_in_one_group_share_the_partitions_exactly_once(
    ingest_settings, tmp_path, workers
):
    producing = Producing(ingest_settings, traffic(12_000), tmp_path / "ledger.parquet", 4_000)
    first = workers.start()
    assert first.wait_until_assigned()
    time.sleep(2)
    second = workers.start()  # joins mid-stream: a rebalance
    ledger = producing.join()
    wait_until_ingested(ingest_settings, ledger, [first, second])
    stop([first, second])
    assert_exactly_once(ingest_settings, ledger)
    writers = {
        entry.writer.split(":")[-1]
        for p in range(PARTITIONS)
        for entry in PartitionLog(
            ingest_settings.lake_root, ingest_settings.events_topic, p
        ).entries()
    }
    assert writers == {str(first.process.pid), str(second.process.pid)}


def test_two_workers_started_by_mistake_in_different_groups_still_ingest_once(
    ingest_settings, tmp_path, workers
):
    producing = Producing(ingest_settings, traffic(12_000), tmp_path / "ledger.parquet", 4_000)
    running = [workers.start("--group-id", group) for group in ("ingest-blue", "ingest-green")]
    ledger = producing.join()
    wait_until_ingested(ingest_settings, ledger, running)
    stop(running)
    assert_exactly_once(ingest_settings, ledger)
    # Both read every partition: ranges were contested, and each went to one of them.
    lost = sum(w.log.read_text().count("committed by another writer") for w in running)
    assert lost > 0


def test_a_run_until_caught_up_ends_at_the_topics_end_as_of_its_start(ingest_settings, tmp_path):
    backlog = produce(ingest_settings, traffic(2_000), tmp_path)
    stopped = threading.Event()

    def keep_producing() -> None:  # without a pause, for at most a minute
        producer = Producer(producer_config(ingest_settings))
        deadline = time.monotonic() + 60
        while not stopped.is_set() and time.monotonic() < deadline:
            producer.produce(ingest_settings.events_topic, b"{}")
            producer.poll(0.005)
        producer.flush(10)

    producing = threading.Thread(target=keep_producing)
    producing.start()
    try:
        options = IngestOptions.from_settings(ingest_settings, until_caught_up=True)
        metrics = IngestWorker(ingest_settings, options, kafka_client_config(ingest_settings)).run()
        assert producing.is_alive(), "the run chased the traffic until it stopped"
    finally:
        stopped.set()
        producing.join()
    assert metrics.consumed == metrics.accepted + metrics.quarantined >= backlog.num_rows
    assert metrics.accepted == backlog.num_rows - sum(
        reason is not None for reason in backlog["expected_reason"].to_pylist()
    )


def _malformed_corpus() -> list[tuple[bytes | None, Reason | None]]:
    """Valid events, every corruption the generator knows (one per reason code) applied to
    each event type, and inputs no generator makes: a tombstone, empty and binary payloads."""
    config = traffic(200, malformed_rate=0.0)
    decode = msgspec.json.decode
    events = {}
    for message in TrafficSimulator(config, build_catalog(config.seed)).messages():
        events.setdefault(message.event_type, decode(message.payload))
    corpus: list[tuple[bytes | None, Reason | None]] = [
        (msgspec.json.encode(event), None) for event in events.values()
    ]
    for reason, corrupt in CORRUPTIONS.items():
        for event in events.values():
            if reason is Reason.NEGATIVE_PRICE and event["event_type"] == "click":
                continue  # clicks carry no price
            corpus.append((corrupt(event), reason))
    corpus += [
        (None, Reason.UNPARSEABLE),
        (b"", Reason.UNPARSEABLE),
        (b"\x00\x01\x02", Reason.UNPARSEABLE),
        (b"[]", Reason.NOT_AN_OBJECT),
        (b'{"schema_version": 1}', Reason.MISSING_FIELD),
    ]
    return corpus


def test_every_malformed_input_is_quarantined_with_its_reason_and_dead_lettered(
    ingest_settings,
):
    corpus = _malformed_corpus()
    assert {reason for _, reason in corpus} >= set(Reason) - {Reason.VALIDATOR_ERROR}
    producer = Producer(producer_config(ingest_settings))
    for index, (payload, _) in enumerate(corpus):
        producer.produce(ingest_settings.events_topic, payload, partition=index % PARTITIONS)
    assert producer.flush(30) == 0
    options = IngestOptions.from_settings(ingest_settings, until_caught_up=True, max_seconds=60)
    metrics = IngestWorker(ingest_settings, options, kafka_client_config(ingest_settings)).run()

    assert metrics.consumed == len(corpus) == metrics.accepted + metrics.quarantined
    quarantine = read_table(QUARANTINE_EVENTS.path(ingest_settings)).to_pylist()
    by_position = {(row["_partition"], row["_offset"]): row for row in quarantine}
    expected_bad = {}
    for index, (payload, reason) in enumerate(corpus):
        if reason is not None:
            expected_bad[(index % PARTITIONS, index // PARTITIONS)] = (reason.value, payload or b"")
    assert {key: (r["reason"], r["payload"]) for key, r in by_position.items()} == expected_bad
    assert metrics.by_reason == Counter(r.value for _, r in corpus if r is not None)
    bronze = read_table(BRONZE_EVENTS.path(ingest_settings))
    assert bronze.num_rows == sum(reason is None for _, reason in corpus)

    # The dead-letter topic holds each one: raw bytes, reason and source offset in headers.
    consumer = Consumer(ingest_settings.kafka_client_config() | {"group.id": "dlq-check"})
    consumer.assign([TopicPartition(ingest_settings.dead_letter_topic, 0, 0)])
    letters = {}
    deadline = time.monotonic() + 30
    while len(letters) < len(expected_bad) and time.monotonic() < deadline:
        for message in consumer.consume(500, timeout=1):
            headers = {k: v.decode() for k, v in message.headers()}
            key = (int(headers["source_partition"]), int(headers["source_offset"]))
            letters[key] = (headers["reason"], message.value() or b"")
    consumer.close()
    assert letters == expected_bad


def test_a_message_near_the_size_limit_is_dead_lettered_cut_and_kept_whole(ingest_settings):
    """With its headers it would exceed the producer's limit: the range could then never be
    finished, and every restart would fail on it again."""
    huge = b'{"padding": "' + b"x" * 999_985 + b'"}'  # 1,000,000 bytes: the broker takes 1 MiB
    valid = _malformed_corpus()[0][0]
    producer = Producer(producer_config(ingest_settings) | {"message.max.bytes": 1_048_576})
    for payload in (huge, valid):
        producer.produce(ingest_settings.events_topic, payload, partition=0)
    assert producer.flush(30) == 0
    options = IngestOptions.from_settings(ingest_settings, until_caught_up=True, max_seconds=120)
    metrics = IngestWorker(ingest_settings, options, kafka_client_config(ingest_settings)).run()

    assert (metrics.accepted, dict(metrics.by_reason)) == (1, {"oversized": 1})
    [row] = read_table(QUARANTINE_EVENTS.path(ingest_settings)).to_pylist()
    assert row["payload"] == huge
    consumer = Consumer(ingest_settings.kafka_client_config() | {"group.id": "dlq-check"})
    consumer.assign([TopicPartition(ingest_settings.dead_letter_topic, 0, 0)])
    [letter] = consumer.consume(1, timeout=30)
    consumer.close()
    headers = dict(letter.headers())
    assert headers["truncated"] == str(len(huge)).encode()
    assert huge.startswith(letter.value()) and len(letter.value()) < len(huge)


def _broker_times(settings) -> dict[tuple[int, int], int]:
    bronze = read_table(BRONZE_EVENTS.path(settings)).select(
        ["_partition", "_offset", "_broker_time"]
    )
    rows = zip(*(bronze[c].to_pylist() for c in bronze.column_names), strict=True)
    return {(partition, offset): stamp for partition, offset, stamp in rows}


def test_replay_restores_deleted_files_and_never_double_counts(ingest_settings, tmp_path):
    produced_from = datetime.now(UTC) - timedelta(milliseconds=1)  # stamps are in ms
    ledger = produce(ingest_settings, traffic(6_000), tmp_path)
    options = IngestOptions.from_settings(ingest_settings, until_caught_up=True, max_seconds=60)
    IngestWorker(ingest_settings, options, kafka_client_config(ingest_settings)).run()
    # Each event keeps the time the broker appended it (the topic's log-append time), which
    # a replay reads again: the transform's late window is measured on it.
    stamps = _broker_times(ingest_settings)
    assert produced_from <= min(stamps.values()) <= max(stamps.values()) <= datetime.now(UTC)
    lost = sorted(BRONZE_EVENTS.path(ingest_settings).rglob("*+1+*.parquet"))[:3]
    lost += sorted(QUARANTINE_EVENTS.path(ingest_settings).rglob("*+1+*.parquet"))[:1]
    for path in lost:
        path.unlink()

    middle = PartitionLog(ingest_settings.lake_root, ingest_settings.events_topic, 1).end() // 2
    first = replay_partition(
        ingest_settings, 1, from_offset=0, client_config=kafka_client_config(ingest_settings)
    )
    assert first.ranges and first.changed == 0 and first.files_removed == 0
    assert all(path.exists() for path in lost)
    assert_exactly_once(ingest_settings, ledger)

    from_middle = replay_partition(
        ingest_settings, 1, from_offset=middle, client_config=kafka_client_config(ingest_settings)
    )
    assert 0 < from_middle.ranges <= first.ranges
    assert from_middle.first_offset <= middle < from_middle.end_offset
    # From a time: the first message at or after it; whole committed ranges from there.
    from_time = replay_partition(
        ingest_settings,
        1,
        from_time=traffic(1).start,
        client_config=kafka_client_config(ingest_settings),
    )
    assert from_time.ranges == first.ranges
    assert_exactly_once(ingest_settings, ledger)
    assert _broker_times(ingest_settings) == stamps
    with pytest.raises(IngestError, match=f"has no partition {PARTITIONS}: choose one of 0..3"):
        replay_partition(
            ingest_settings,
            PARTITIONS,
            from_offset=0,
            client_config=kafka_client_config(ingest_settings),
        )


def test_a_replay_and_a_worker_never_publish_one_partition_at_once(
    ingest_settings, tmp_path, monkeypatch
):
    """Each takes the partition's lease: a replay waits for (or gives up on) a worker's
    publish, and a worker's next commit waits for a replay to finish."""
    ledger = produce(ingest_settings, traffic(2_000), tmp_path)
    plog = PartitionLog(ingest_settings.lake_root, ingest_settings.events_topic, 1)
    options = IngestOptions.from_settings(ingest_settings, until_caught_up=True, max_seconds=120)
    with plog.lease():  # as a replay holds it
        run = threading.Thread(
            target=IngestWorker(ingest_settings, options, kafka_client_config(ingest_settings)).run
        )
        run.start()
        time.sleep(5)  # the worker is assigned partition 1 and waits to recover it
        assert run.is_alive() and plog.end() == 0
        monkeypatch.setattr("adplatform.ingest.replay.LEASE_WAIT_SECONDS", 1.0)
        with pytest.raises(IngestError, match=r"partition 1 of .* is being written"):
            replay_partition(
                ingest_settings,
                1,
                from_offset=0,
                client_config=kafka_client_config(ingest_settings),
            )
    run.join(timeout=180)
    assert plog.end() > 0
    assert_exactly_once(ingest_settings, ledger)


def test_status_reports_positions_counts_and_lag(ingest_settings, tmp_path, workers):
    ledger = produce(ingest_settings, traffic(3_000), tmp_path)
    env = os.environ | ingest_settings.environment()

    def status() -> list[dict]:
        result = subprocess.run(
            [ADPLATFORM, "ingest", "status", "--json"], env=env, capture_output=True, check=True
        )
        return json.loads(result.stdout)

    before = status()
    assert sum(row["lag"] for row in before) == ledger.num_rows
    assert all(row["commits"] == 0 for row in before)
    metrics = workers.drain()
    after = status()
    assert sum(row["lag"] for row in after) == 0
    assert sum(row["accepted"] for row in after) == metrics["accepted"]
    assert sum(row["quarantined"] for row in after) == metrics["quarantined"]
    assert metrics["accepted"] + metrics["quarantined"] == ledger.num_rows
    assert all(row["group_offset"] == row["committed_end"] for row in after)


def test_the_cli_names_a_missing_topic_and_the_fix(ingest_settings):
    env = os.environ | ingest_settings.environment() | {"ADP_EVENTS_TOPIC": "no-such-topic"}
    result = subprocess.run(
        [ADPLATFORM, "ingest", "run", "--max-seconds", "5"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "topic no-such-topic does not exist" in result.stdout
    assert "adplatform topics" in result.stdout
