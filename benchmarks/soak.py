"""`python -m benchmarks.soak` (`make soak`): ingest under steady production while ingest workers
and brokers are SIGKILLed, then every produced message reconciled against the generator's ledger.

A three-node KRaft cluster of its own (replication 3, min.insync.replicas=2, producers with
acks=all) under a scratch data root. Workers are `adplatform ingest run` processes with one
static member id, each killed after a random moment; every `--worker-kills / --broker-kills`
kills, a random broker is killed too and restarted. Then a last worker drains the topic, and the
report counts messages produced, in Bronze, in quarantine, lost and duplicated. Not in CI: the
test suite runs a short version of the same function (tests/ingest/test_cluster.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from adplatform.broker import ensure_topics
from adplatform.events.generator import TrafficConfig
from adplatform.events.producer import produce_traffic
from adplatform.ingest.commitlog import PartitionLog
from adplatform.lakehouse.tables import BRONZE_EVENTS, QUARANTINE_EVENTS
from adplatform.localstack import LocalStack, free_port
from adplatform.settings import Settings, load_settings

ADPLATFORM = str(Path(sys.executable).parent / "adplatform")


@dataclass
class SoakReport:
    produced: int
    valid: int  # of those, what the validator must accept
    in_bronze: int
    quarantined: int
    lost: int  # produced, but neither in Bronze nor in quarantine
    duplicated: int  # in Bronze or quarantine more than once
    worker_kills: int
    broker_kills: int
    broker_kills_while_producing: int
    seconds: float


def cluster(data_root: Path, ports: tuple[int, int]) -> LocalStack:
    """The three-node cluster (not started): broker ports ports[0].., controllers ports[1]..."""
    return LocalStack(
        load_settings(
            data_root=data_root,
            kafka_port=ports[0],
            kafka_controller_port=ports[1],
            kafka_brokers=3,
        )
    )


def topic_settings(stack: LocalStack, lake: Path, name: str, partitions: int = 4) -> Settings:
    """Fresh topics on the cluster, replicated three times, and a lake of their own."""
    base = stack.services["kafka"].settings
    settings = load_settings(
        data_root=lake,
        kafka_port=base.kafka_port,
        kafka_controller_port=base.kafka_controller_port,
        kafka_brokers=base.kafka_brokers,
        topic_partitions=partitions,
        topic_replication=3,
        events_topic=name,
        dead_letter_topic=f"{name}-dlq",
        ingest_group_id=f"{name}-ingest",
        ingest_batch_events=4_000,
        ingest_batch_seconds=0.5,
    )
    ensure_topics(settings)
    return settings


def _worker(settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [ADPLATFORM, "ingest", "run", "--no-progress", "--json", *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=os.environ | settings.environment(),
        )


def _wait_assigned(worker: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while "assigned" not in log.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker not assigned; its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def _read(root: Path) -> pa.Table:
    if not root.exists():
        return pa.table({"_partition": pa.array([], pa.int32()), "_offset": pa.array([])})
    return ds.dataset(root, format="parquet", partitioning="hive").to_table(
        columns=["_partition", "_offset"]
    )


def reconcile(settings: Settings, ledger: pa.Table) -> dict[str, int]:
    """Produced vs Bronze and quarantine, by (partition, offset)."""
    produced = set(zip(ledger["partition"].to_pylist(), ledger["offset"].to_pylist(), strict=True))
    seen: Counter[tuple[int, int]] = Counter()
    for table in (_read(BRONZE_EVENTS.path(settings)), _read(QUARANTINE_EVENTS.path(settings))):
        seen.update(zip(table["_partition"].to_pylist(), table["_offset"].to_pylist(), strict=True))
    return {
        "produced": len(produced),
        "valid": sum(reason is None for reason in ledger["expected_reason"].to_pylist()),
        "lost": len(produced - set(seen)),
        "duplicated": sum(count - 1 for count in seen.values() if count > 1),
    }


def soak(
    stack: LocalStack,
    settings: Settings,
    workdir: Path,
    *,
    worker_kills: int,
    broker_kills: int,
    rate: float,
    requests: int,
    seed: int = 1,
) -> SoakReport:
    """Kill workers and brokers while the generator produces; drain; reconcile."""
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "workers.log"
    ledger_path = workdir / "ledger.parquet"
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    config = TrafficConfig(seed=seed, start=start, hours=2, requests=requests, malformed_rate=0.01)
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            produce_traffic(
                settings, config, rate=rate, ledger_path=ledger_path, show_progress=False
            )
        except BaseException as error:
            errors.append(error)

    producing = threading.Thread(target=produce, daemon=True)
    started = time.monotonic()
    producing.start()
    brokers = [name for name in stack.services if name.startswith("kafka")]
    every = max(1, worker_kills // max(1, broker_kills))
    killed_brokers = while_producing = 0
    for kill in range(1, worker_kills + 1):
        worker = _worker(settings, log, "--instance-id", "soak")
        _wait_assigned(worker, log)
        time.sleep(rng.uniform(0.0, 1.5))
        worker.kill()
        worker.wait()
        if killed_brokers < broker_kills and kill % every == 0:
            node = rng.choice(brokers)
            while_producing += producing.is_alive()
            stack.services[node].kill()
            time.sleep(rng.uniform(1.0, 3.0))
            stack.up([node])
            killed_brokers += 1
        print(
            f"soak: {kill}/{worker_kills} worker kills, {killed_brokers} broker kills", flush=True
        )
    producing.join()
    if errors:
        raise errors[0]
    drain = _worker(settings, log, "--until-caught-up", "--max-seconds", "600")
    if drain.wait() != 0:
        raise RuntimeError(f"the draining worker failed; its log:\n{log.read_text()[-3000:]}")
    ledger = pq.read_table(ledger_path)
    counts = reconcile(settings, ledger)
    entries = [
        e
        for p in range(settings.topic_partitions)
        for e in PartitionLog(settings.lake_root, settings.events_topic, p).entries()
    ]
    return SoakReport(
        **counts,
        in_bronze=sum(e.accepted for e in entries),
        quarantined=sum(e.quarantined for e in entries),
        worker_kills=worker_kills,
        broker_kills=killed_brokers,
        broker_kills_while_producing=while_producing,
        seconds=round(time.monotonic() - started, 1),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--worker-kills", type=int, default=100)
    parser.add_argument("--broker-kills", type=int, default=10)
    parser.add_argument("--rate", type=float, default=300.0, help="messages a second")
    parser.add_argument("--requests", type=int, default=60_000, help="bid requests to produce")
    parser.add_argument("--output", type=Path, help="also write the report here (JSON)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="adplatform-soak-") as root:
        stack = cluster(Path(root) / "cluster", (free_port(span=3), free_port(span=3)))
        try:
            print("soak: starting a three-node cluster", flush=True)
            stack.up(["kafka"])
            settings = topic_settings(stack, Path(root) / "lake", "soak-events")
            report = soak(
                stack,
                settings,
                Path(root) / "work",
                worker_kills=args.worker_kills,
                broker_kills=args.broker_kills,
                rate=args.rate,
                requests=args.requests,
            )
        finally:
            stack.down(["kafka"])
    load = os.getloadavg()
    document: dict[str, Any] = {
        "report": asdict(report),
        "command": "python -m benchmarks.soak " + " ".join(argv or sys.argv[1:]),
        "load_average": [round(x, 2) for x in load],
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(json.dumps(document, indent=2))
    if args.output:
        args.output.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if report.lost == report.duplicated == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
