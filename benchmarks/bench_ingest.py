"""Ingest throughput (Kafka → durable Bronze) vs a bare confluent-kafka consume loop.

A backlog of 10M events (an hour of traffic at ~2.8k events/s, produced fast from
pre-serialized payloads) sits on a 4-partition topic. Each side reads all of it, in its own
process, on the same broker, in the same run: the bare loop reads and discards; the ingest
worker validates, writes Parquet (zstd), fsyncs, commits the commit log and publishes.
Memory: the worker's resident size is sampled every second; it must plateau, not follow the
backlog.

Each side runs as ``python -m benchmarks.bench_ingest {bare,ingest} TOPIC EVENTS`` with the
benchmark's settings in the environment, and prints its figures as JSON.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import NewTopic

from adplatform.broker import admin_client
from adplatform.connections import kafka_client_config
from adplatform.events.catalog import build_catalog
from adplatform.events.generator import TrafficConfig, TrafficSimulator
from adplatform.settings import Settings, get_settings
from benchmarks.bench_producer import _bare_produce
from benchmarks.harness import Context, Result

BACKLOG = 10_000_000
DISTINCT_REQUESTS = 120_000  # ~500k distinct messages in one simulated hour, sent repeatedly
TOPIC = "bench-ingest"


def _produce_backlog(settings: Settings, topic: str, events: int) -> int:
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    config = TrafficConfig(seed=3, start=start, hours=1, requests=DISTINCT_REQUESTS)
    messages = [
        (m.key, m.payload) for m in TrafficSimulator(config, build_catalog(config.seed)).messages()
    ]
    _bare_produce(settings, topic, itertools.islice(itertools.cycle(messages), events))
    return len(messages)


def _side(settings: Settings, side: str, topic: str, events: int) -> dict[str, Any]:
    """Run one side in a subprocess, sampling its resident memory every second."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_ingest", side, topic, str(events)],
        stdout=subprocess.PIPE,
        env=os.environ | settings.environment(),
        cwd=Path(__file__).parents[1],
    )
    rss_mb: list[float] = []
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            rss_mb.append(int(status.split("VmRSS:")[1].split()[0]) / 1024)
        except (FileNotFoundError, IndexError):
            pass
        time.sleep(1)
    output, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"the {side} side failed with exit code {process.returncode}")
    figures = dict(json.loads(output.splitlines()[-1]))
    return figures | {"rss_mb_samples": rss_mb}


def run(ctx: Context) -> list[Result]:
    settings = ctx.service("kafka")
    admin = admin_client(settings)
    for name, partitions in ((TOPIC, settings.topic_partitions), (f"{TOPIC}-dlq", 1)):
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result()
    settings = settings.model_copy(
        update={"events_topic": TOPIC, "dead_letter_topic": f"{TOPIC}-dlq"}
    )
    started = time.monotonic()
    distinct = _produce_backlog(settings, TOPIC, BACKLOG)
    produce_seconds = time.monotonic() - started
    load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was
    bare = _side(settings, "bare", TOPIC, BACKLOG)
    ingest = _side(settings, "ingest", TOPIC, BACKLOG)
    load_after = os.getloadavg()[0]
    samples = ingest["rss_mb_samples"]
    quarters = [samples[min(len(samples) - 1, len(samples) * q // 4)] for q in (1, 2, 3, 4)]
    return [
        Result(
            benchmark="ingest",
            metric="ingest throughput (Kafka → durable Bronze)",
            value=ingest["rate"],
            unit="events/s",
            reference="bare confluent-kafka consume loop",
            reference_value=bare["rate"],
            target=">= 0.5",
            details={
                "backlog_events": BACKLOG,
                "distinct_messages": distinct,
                "produce_seconds": round(produce_seconds, 1),
                "ingest_seconds": ingest["seconds"],
                "bare_seconds": bare["seconds"],
                "accepted": ingest["accepted"],
                "quarantined": ingest["quarantined"],
                "commits": ingest["commits"],
                "files": ingest["files"],
                "batch_events": settings.ingest_batch_events,
                "load_average_1m": [round(load_before, 1), round(load_after, 1)],
                # CPU time (all threads) per event: what the rate becomes on a busy machine.
                "ingest_cpu_us_per_event": round(ingest["cpu_us_per_event"], 2),
                "bare_cpu_us_per_event": round(bare["cpu_us_per_event"], 2),
            },
        ),
        Result(
            benchmark="ingest",
            metric="ingest peak resident memory",
            value=ingest["peak_rss_mb"],
            unit="MB",
            reference="bare consume loop peak resident memory",
            reference_value=bare["peak_rss_mb"],
            higher_is_better=False,
            target="bounded: flat across the backlog",
            details={"rss_mb_at_quarters_of_the_run": [round(q) for q in quarters]},
        ),
    ]


def _bare(settings: Settings, topic: str, events: int) -> dict[str, Any]:
    consumer = Consumer(
        settings.kafka_client_config()
        | {
            "group.id": f"{topic}-bare",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    started = time.monotonic()
    seen = 0
    while seen < events:
        seen += len(consumer.consume(10_000, timeout=1))
    seconds = time.monotonic() - started
    consumer.close()
    return {"events": seen, "seconds": round(seconds, 2), "rate": seen / seconds}


def _ingest(settings: Settings) -> dict[str, Any]:
    from adplatform.ingest.worker import IngestOptions, IngestWorker

    options = IngestOptions.from_settings(settings, until_caught_up=True)
    metrics = IngestWorker(settings, options, kafka_client_config(settings)).run().as_dict()
    return metrics


if __name__ == "__main__":
    side, topic, events = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = get_settings()
    figures = _bare(settings, topic, events) if side == "bare" else _ingest(settings)
    # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
    status = Path("/proc/self/status").read_text()
    figures["peak_rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["cpu_us_per_event"] = (usage.ru_utime + usage.ru_stime) / events * 1e6
    print(json.dumps(figures))
