"""Send simulated traffic to the events topic, at a target rate, with a progress display.

A ledger (Parquet: event id, type, expected reason, partition, offset of every message) can be
written next to a summary; reconciliation tests and the demo compare the lakehouse with it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import KafkaError, Message, Producer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from adplatform.broker import check_reachable, producer_config
from adplatform.connections import Source
from adplatform.events.catalog import build_catalog
from adplatform.events.generator import HOUR_MS, TrafficConfig, TrafficSimulator
from adplatform.settings import Settings


class DeliveryFailed(RuntimeError):
    pass


@dataclass
class ProduceSummary:
    messages: int = 0
    valid: int = 0  # distinct valid events (a re-sent duplicate counts once)
    duplicates: int = 0
    malformed: int = 0
    seconds: float = 0.0
    by_type: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


class _Ledger:
    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        self.columns: dict[str, list[Any]] = {
            name: [] for name in ("event_id", "event_type", "expected_reason", "duplicate")
        }
        self.partition: list[int] = []
        self.offset: list[int] = []

    def callback(self, index: int) -> Any:
        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                self.failures.append(str(error))
                return
            self.partition[index] = message.partition() or 0
            self.offset[index] = message.offset() or 0

        return delivered

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table(self.columns | {"partition": self.partition, "offset": self.offset})
        pq.write_table(table, path)


def produce_traffic(
    settings: Settings,
    config: TrafficConfig,
    *,
    rate: float | None = None,
    ledger_path: Path | None = None,
    show_progress: bool = True,
    topic: str | None = None,
    kafka: Source | None = None,
) -> ProduceSummary:
    """Simulate ``config`` and produce every message; raise if any is not delivered. The
    broker: ``kafka`` (a conn_id in Airflow), or the settings'."""
    kafka = kafka or settings
    check_reachable(kafka)
    topic = topic or settings.events_topic
    failures: list[str] = []

    def on_error(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(str(error))

    producer = Producer(producer_config(kafka) | {"on_delivery": on_error})
    ledger = _Ledger(failures) if ledger_path else None
    summary = ProduceSummary()
    by_type: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    simulator = TrafficSimulator(config, build_catalog(config.seed))
    started = time.monotonic()
    progress = Progress(
        TextColumn("[bold]producing[/]"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total} simulated hours"),
        TextColumn("{task.fields[messages]:,} messages"),
        TextColumn("{task.fields[rate]:,.0f}/s"),
        TimeElapsedColumn(),
        disable=not show_progress,
    )
    with progress:
        task = progress.add_task("produce", total=config.hours, messages=0, rate=0.0)
        for index, message in enumerate(simulator.messages()):
            if ledger is not None:
                for name in ledger.columns:
                    value = getattr(message, name)
                    ledger.columns[name].append(
                        str(value) if name == "expected_reason" and value is not None else value
                    )
                ledger.partition.append(-1)
                ledger.offset.append(-1)
            kwargs = {"on_delivery": ledger.callback(index)} if ledger else {}
            while True:
                try:
                    producer.produce(topic, message.payload, message.key, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.05)
            by_type[message.event_type] += 1
            if message.expected_reason is not None:
                by_reason[message.expected_reason] += 1
            elif message.duplicate:
                summary.duplicates += 1
            summary.messages += 1
            if summary.messages % 5000 == 0:
                producer.poll(0)
                elapsed = time.monotonic() - started
                if rate and summary.messages / rate > elapsed:
                    time.sleep(summary.messages / rate - elapsed)
                progress.update(
                    task,
                    messages=summary.messages,
                    rate=summary.messages / max(elapsed, 1e-9),
                    completed=min(config.hours, (message.emit_ms - config.start_ms) / HOUR_MS),
                )
        remaining = producer.flush(60)
        progress.update(task, completed=config.hours, messages=summary.messages)
    summary.seconds = time.monotonic() - started
    summary.malformed = sum(by_reason.values())
    summary.valid = summary.messages - summary.malformed - summary.duplicates
    summary.by_type = dict(by_type)
    summary.by_reason = dict(by_reason)
    if remaining or failures:
        raise DeliveryFailed(
            f"{remaining + len(failures)} of {summary.messages} messages were not delivered to "
            f"{topic} at {producer_config(kafka)['bootstrap.servers']}: "
            f"{failures[:1] or 'flush timed out'}"
        )
    if ledger is not None and ledger_path is not None:
        ledger.write(ledger_path)
        ledger_path.with_suffix(".json").write_text(
            json.dumps(asdict(summary) | {"config": _config_dict(config)}, indent=2)
        )
    return summary


def _config_dict(config: TrafficConfig) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in asdict(config).items()}
