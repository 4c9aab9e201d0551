"""Ingest test helpers: a private topic pair per test on the session broker, workers as real
subprocesses, and the exactly-once check against the generator's ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from adplatform.broker import ensure_topics
from adplatform.events.generator import TrafficConfig
from adplatform.events.producer import produce_traffic
from adplatform.ingest.commitlog import PartitionLog
from adplatform.lakehouse.tables import BRONZE_EVENTS, QUARANTINE_EVENTS
from adplatform.localstack import LocalStack, free_port
from adplatform.settings import Settings, load_settings
from benchmarks.soak import cluster

ADPLATFORM = str(Path(sys.executable).parent / "adplatform")
PARTITIONS = 4


@pytest.fixture
def ingest_settings(kafka: Settings, tmp_path: Path) -> Settings:
    """The session broker, a fresh events topic and dead-letter topic (created as the platform
    creates its topics), a private lake, and small batches (many commits, so crashes land in
    every phase of one)."""
    name = f"events-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        data_root=tmp_path / "data",
        kafka_port=kafka.kafka_port,
        kafka_controller_port=kafka.kafka_controller_port,
        events_topic=name,
        dead_letter_topic=f"{name}-dlq",
        topic_partitions=PARTITIONS,
        ingest_group_id=f"{name}-ingest",
        ingest_batch_events=4_000,
        ingest_batch_seconds=0.5,
    )
    ensure_topics(settings)
    return settings


def traffic(requests: int, seed: int = 5, malformed_rate: float = 0.01) -> TrafficConfig:
    """Recent traffic (the validator refuses old events), with duplicates and every kind of
    malformed message."""
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    return TrafficConfig(
        seed=seed,
        start=start,
        hours=2,
        requests=requests,
        duplicate_rate=0.01,
        malformed_rate=malformed_rate,
    )


class Producing:
    """The generator producing in a background thread, with its ledger."""

    def __init__(self, settings: Settings, config: TrafficConfig, ledger: Path, rate: float):
        self.ledger = ledger
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(settings, config, rate), daemon=True
        )
        self._thread.start()

    def _run(self, settings: Settings, config: TrafficConfig, rate: float) -> None:
        try:
            produce_traffic(
                settings, config, rate=rate, ledger_path=self.ledger, show_progress=False
            )
        except BaseException as error:
            self.error = error

    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> pa.Table:
        self._thread.join(timeout=300)
        assert self.error is None, self.error
        return pq.read_table(self.ledger)


def produce(settings: Settings, config: TrafficConfig, tmp_path: Path) -> pa.Table:
    ledger = tmp_path / "ledger.parquet"
    produce_traffic(settings, config, ledger_path=ledger, show_progress=False)
    return pq.read_table(ledger)


@dataclass
class Worker:
    """``adplatform ingest run`` as a real process, logging to a file."""

    process: subprocess.Popen[bytes]
    log: Path
    output: Path

    def wait_until_assigned(self, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "assigned" in self.log.read_text(errors="replace"):
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def finish(self, timeout: float = 180) -> dict[str, Any]:
        """Wait for a bounded run to exit 0; its metrics."""
        code = self.process.wait(timeout=timeout)
        assert code == 0, f"worker exited {code}:\n{self.log.read_text()[-3000:]}"
        return dict(json.loads(self.output.read_text()))


class Workers:
    """Starts ``adplatform ingest run`` processes; the fixture kills any left at teardown."""

    def __init__(self, settings: Settings, directory: Path) -> None:
        self.settings = settings
        self.directory = directory
        self.started: list[Worker] = []

    def start(self, *args: str) -> Worker:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex[:8]
        log = self.directory / f"worker-{name}.log"
        output = self.directory / f"worker-{name}.json"
        with log.open("wb") as stderr, output.open("wb") as stdout:
            process = subprocess.Popen(
                [ADPLATFORM, "ingest", "run", "--no-progress", "--json", *args],
                stdout=stdout,
                stderr=stderr,
                env=os.environ | self.settings.environment(),
            )
        self.started.append(Worker(process, log, output))
        return self.started[-1]

    def drain(self) -> dict[str, Any]:
        """A bounded worker run until the whole topic is ingested; its metrics."""
        return self.start("--until-caught-up", "--max-seconds", "240").finish()


@pytest.fixture
def workers(ingest_settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(ingest_settings, tmp_path / "workers")
    yield started
    for worker in started.started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def wait_until_ingested(
    settings: Settings, ledger: pa.Table, workers: list[Worker], timeout: float = 180
) -> None:
    """Until the running ``workers`` have committed and published every produced offset."""
    logs = [PartitionLog(settings.lake_root, settings.events_topic, p) for p in range(PARTITIONS)]
    produced = Counter(ledger["partition"].to_pylist())
    deadline = time.monotonic() + timeout
    while any(log.end() < produced[log.partition] or log.unpublished() for log in logs):
        for worker in workers:
            assert worker.process.poll() is None, worker.log.read_text()[-3000:]
        assert time.monotonic() < deadline, (
            "not ingested in time; last worker log:\n"
            + "\n".join(
                line
                for line in workers[-1].log.read_text().splitlines()
                if "INFO" in line or "WARN" in line
            )[-3000:]
        )
        time.sleep(0.5)


def stop(workers: list[Worker]) -> None:
    for worker in workers:
        worker.process.terminate()
        worker.process.wait()


def read_table(root: Path) -> pa.Table:
    """What Spark, chDB or DuckDB would see: Hive partitions, hidden files skipped."""
    if not root.exists():
        return pa.table({})
    return ds.dataset(root, format="parquet", partitioning="hive").to_table()


def describe_logs(settings: Settings) -> str:
    """Each partition's committed ranges with their writers, for a failure message."""
    return "\n".join(
        f"  {e.partition} [{e.start}, {e.end}) consumed={e.consumed} by {e.writer}"
        for p in range(PARTITIONS)
        for e in PartitionLog(settings.lake_root, settings.events_topic, p).entries()
    )


def assert_exactly_once(settings: Settings, ledger: pa.Table) -> None:
    """Bronze holds every valid produced message once, quarantine every bad one once with the
    generator's reason, and the commit log's counts reconcile."""
    bronze = read_table(BRONZE_EVENTS.path(settings))
    quarantine = read_table(QUARANTINE_EVENTS.path(settings))
    produced = {
        (row["partition"], row["offset"]): row
        for row in ledger.select(
            ["partition", "offset", "event_id", "event_type", "expected_reason"]
        ).to_pylist()
    }
    assert len(produced) == ledger.num_rows, "the ledger itself has a gap"
    bronze_keys = list(
        zip(bronze["_partition"].to_pylist(), bronze["_offset"].to_pylist(), strict=True)
    )
    assert len(bronze_keys) == len(set(bronze_keys)), "a message is in Bronze twice"
    valid = {key for key, row in produced.items() if row["expected_reason"] is None}
    missing, extra = sorted(valid - set(bronze_keys)), sorted(set(bronze_keys) - valid)
    # Name the offsets, not two sets of 100k (partition, offset) pairs.
    exact = not missing and not extra
    assert exact, (
        f"commit log:\n{describe_logs(settings)}\nBronze misses {len(missing)} "
        f"(first {missing[:20]}), has {len(extra)} extra (first {extra[:20]})"
    )
    for key, event_id, event_type in zip(
        bronze_keys,
        bronze["event_id"].to_pylist(),
        bronze["event_type"].to_pylist(),
        strict=True,
    ):
        assert (event_id, event_type) == (produced[key]["event_id"], produced[key]["event_type"])
    quarantined = {
        (p, o): reason
        for p, o, reason in zip(
            quarantine["_partition"].to_pylist(),
            quarantine["_offset"].to_pylist(),
            quarantine["reason"].to_pylist(),
            strict=True,
        )
    }
    assert len(quarantined) == quarantine.num_rows, "a message is quarantined twice"
    expected = {key: row["expected_reason"] for key, row in produced.items() if key not in valid}
    assert quarantined == expected
    entries = [
        e
        for p in range(PARTITIONS)
        for e in PartitionLog(settings.lake_root, settings.events_topic, p).entries()
    ]
    assert all(e.consumed == e.accepted + e.quarantined for e in entries)
    assert sum(e.accepted for e in entries) == bronze.num_rows
    assert sum(e.quarantined for e in entries) == quarantine.num_rows


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A three-node KRaft cluster of its own (each node broker and controller), started once."""
    stack = cluster(tmp_path_factory.mktemp("cluster"), (free_port(span=3), free_port(span=3)))
    try:
        stack.up(["kafka"])
        yield stack
    finally:
        stack.down(["kafka"])
