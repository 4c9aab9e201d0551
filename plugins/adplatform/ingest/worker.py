"""The ingest worker: the events topic into Bronze (and quarantine), exactly once.

Two threads. The consumer thread polls Kafka, validates each chunk of messages as it arrives
and keeps, per assigned partition, an open batch starting where the commit log ends. Every
``batch_events`` messages or ``batch_seconds`` it hands each partition's batch to the committer
thread, which writes the Parquet files into staging, commits the range to the partition's commit
log, publishes the files and sends quarantined messages to the dead-letter topic. Batches of a
partition are committed in order; a batch whose start is not the end of the last committed
range (because another writer got there first) is dropped, and the consumer resumes from the
log. Kafka group offsets are committed after each range, for lag monitoring only.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import msgspec
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from adplatform.events.validator import Limits, Validator
from adplatform.ingest.batch import PartitionBatch, stage
from adplatform.ingest.commitlog import Entry, IngestError, PartitionLog, new_attempt
from adplatform.settings import Settings

log = logging.getLogger(__name__)

CHUNK = 10_000  # messages per consume() call: large enough to amortise the call
POLL_SECONDS = 0.5


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class IngestOptions:
    group_id: str
    instance_id: str  # static group membership when set
    batch_events: int  # a batch (per partition, one commit) closes at this many messages...
    batch_seconds: float  # ... or this long after it opened
    max_events: int | None = None  # stop after reading this many messages
    max_seconds: float | None = None  # stop after this long
    # Stop once every partition is ingested up to where the topic ended when the run started:
    # under steady traffic a run that waited for an empty poll would never end before its limit.
    until_caught_up: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> IngestOptions:
        defaults: dict[str, Any] = {
            "group_id": settings.ingest_group_id,
            "instance_id": settings.ingest_instance_id,
            "batch_events": settings.ingest_batch_events,
            "batch_seconds": settings.ingest_batch_seconds,
        }
        return cls(**(defaults | overrides))


@dataclass
class RunMetrics:
    """What one run ingested. consumed == accepted + quarantined, over committed ranges."""

    consumed: int = 0
    accepted: int = 0
    quarantined: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    commits: int = 0  # ranges committed (one per partition per batch)
    files: int = 0
    lost_races: int = 0  # ranges another writer had committed first: dropped and re-read
    rolled_forward: int = 0  # ranges a stopped writer had committed but not published
    seconds: float = 0.0
    committed_end: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    lag: dict[int, int] = field(default_factory=dict)  # partition -> messages not yet ingested

    @property
    def rate(self) -> float:
        return self.consumed / self.seconds if self.seconds else 0.0

    def add(self, entry: Entry) -> None:
        self.consumed += entry.consumed
        self.accepted += entry.accepted
        self.quarantined += entry.quarantined
        self.by_reason.update(entry.reasons)
        self.commits += 1
        self.files += len(entry.files)
        self.committed_end[entry.partition] = entry.end

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (XCom, --json): partition keys as strings."""
        data = asdict(self)
        data["by_reason"] = dict(self.by_reason)
        data["committed_end"] = {str(p): end for p, end in sorted(self.committed_end.items())}
        data["lag"] = {str(p): lag for p, lag in sorted(self.lag.items())}
        data["rate"] = round(self.rate, 1)
        data["seconds"] = round(self.seconds, 3)
        return data


class DeadLetters:
    """Quarantined messages to the dead-letter topic: the raw payload as the value, the source
    coordinates as the key and in headers, with the reason. At least once: a writer stopped
    between sending and finishing a range makes the next one send it again (same key).

    A payload too large to send with its headers is cut, and says so in a ``truncated`` header
    (its original size): the quarantine table keeps it whole. Otherwise the range could never
    be finished, and every restart would try, and fail, to send it again."""

    HEADROOM = 16_384  # key, headers and record overhead within the producer's message limit

    def __init__(self, client_config: dict[str, Any], topic: str) -> None:
        self.topic = topic
        config = client_config | {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
        }
        self.max_payload = int(config.get("message.max.bytes", 1_000_000)) - self.HEADROOM
        self._producer = Producer(config)

    def send(self, plog: PartitionLog, entry: Entry) -> None:
        ref = entry.quarantine_file
        if ref is None:
            return
        # This call's own delivery reports: the consumer and committer threads both send.
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(str(error))

        rows = pq.ParquetFile(plog.lake_root / ref.path).read().to_pylist()
        for row in rows:
            source = f"{entry.topic}+{entry.partition}+{row['_offset']}"
            payload = row["payload"]
            headers = {
                "reason": row["reason"],
                "detail": row["detail"][:1000],
                "source_topic": entry.topic,
                "source_partition": str(entry.partition),
                "source_offset": str(row["_offset"]),
            }
            if len(payload) > self.max_payload:
                headers["truncated"] = str(len(payload))
                payload = payload[: self.max_payload]
            while True:
                try:
                    self._producer.produce(
                        self.topic, payload, source, headers=headers, on_delivery=delivered
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
        remaining = self._producer.flush(120)
        if remaining or failures:
            raise IngestError(
                f"{remaining + len(failures)} quarantined messages of partition "
                f"{entry.partition} were not delivered to the dead-letter topic {self.topic} "
                f"({failures[:1] or 'timed out'}); they are sent again when ingest restarts"
            )

    def close(self) -> None:
        self._producer.flush(30)
        self._producer.close()


def roll_forward(plog: PartitionLog, entry: Entry, dead_letters: DeadLetters) -> None:
    """Finish publishing a committed entry (idempotent): files into place, dead letters out."""
    plog.publish(entry)
    dead_letters.send(plog, entry)
    plog.finish(entry)


# -- the committer thread ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Reset:  # the partition's chain now ends at `end` (read from the log)
    partition: int
    end: int


@dataclass(frozen=True)
class _Forget:  # the partition was revoked
    partition: int


@dataclass(frozen=True)
class _Committed:
    entry: Entry


@dataclass(frozen=True)
class _Lost:  # another writer committed this start first
    partition: int
    start: int


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _Committer(threading.Thread):
    """Commits each partition's batches in order. Arrow parsing, Parquet encoding and fsync run
    here, mostly outside the GIL, so the consumer thread keeps polling meanwhile."""

    def __init__(self, logs: Callable[[int], PartitionLog], dead_letters: DeadLetters) -> None:
        super().__init__(name="ingest-committer", daemon=True)
        self._logs = logs
        self._dead_letters = dead_letters
        self.inbox: queue.Queue[PartitionBatch | _Reset | _Forget | None] = queue.Queue()
        self.outbox: queue.SimpleQueue[_Committed | _Lost | _Failed] = queue.SimpleQueue()
        self._chain: dict[int, int] = {}  # partition -> end of its last committed range
        self._failed = False

    def submit(self, item: PartitionBatch | _Reset | _Forget | None) -> None:
        self.inbox.put(item)

    def run(self) -> None:
        while True:
            item = self.inbox.get()
            try:
                if item is None:
                    return
                if not self._failed:
                    self._handle(item)
            except BaseException as error:  # reported to the consumer thread, which raises it
                self._failed = True
                self.outbox.put(_Failed(error))
            finally:
                self.inbox.task_done()

    def _handle(self, item: PartitionBatch | _Reset | _Forget) -> None:
        if isinstance(item, _Reset):
            self._chain[item.partition] = item.end
        elif isinstance(item, _Forget):
            self._chain.pop(item.partition, None)
        elif self._chain.get(item.partition) == item.start:
            self._commit(item)
        # else: the batch follows a range that was lost or revoked; the consumer re-reads it

    def _commit(self, batch: PartitionBatch) -> None:
        plog = self._logs(batch.partition)
        attempt = new_attempt()
        entry = stage(batch, plog.staging_dir(batch.start, attempt), attempt, now_ms())
        with plog.lease():
            self._commit_staged(plog, entry, batch)

    def _commit_staged(self, plog: PartitionLog, entry: Entry, batch: PartitionBatch) -> None:
        if not plog.commit(entry):
            plog.finish(entry)  # discard our files
            del self._chain[batch.partition]
            winner = plog.read(batch.start)
            if winner is not None and winner in plog.unpublished():  # its writer may be gone
                roll_forward(plog, winner, self._dead_letters)
            self.outbox.put(_Lost(batch.partition, batch.start))
            return
        roll_forward(plog, entry, self._dead_letters)
        self._chain[batch.partition] = entry.end
        self.outbox.put(_Committed(entry))


# -- the consumer thread ----------------------------------------------------------------------


class IngestWorker:
    """One member of the ingest consumer group. ``run()`` ingests until a limit is reached."""

    def __init__(
        self,
        settings: Settings,
        options: IngestOptions,
        client_config: dict[str, Any],
        on_progress: Callable[[RunMetrics], None] | None = None,
    ) -> None:
        """``client_config``: the librdkafka settings of the Kafka connection, resolved by the
        caller (``adplatform.connections.kafka_client_config``)."""
        self.settings = settings
        self.options = options
        self.topic = settings.events_topic
        self._client_config = client_config
        self._on_progress = on_progress
        self._validator = Validator(Limits.from_settings(settings))
        self._encoder = msgspec.json.Encoder()
        self._logs: dict[int, PartitionLog] = {}
        self._positions: dict[int, int] = {}  # assigned partition -> where its next batch starts
        self._batches: dict[int, PartitionBatch] = {}  # open batches
        self._batch_opened = 0.0
        self._batch_clock_ms = 0
        self._buffered = 0
        self._taken = 0  # messages read this run
        self._partitions: list[int] = []  # all of the topic's
        self._targets: dict[int, int] = {}  # partition -> its end when the run started
        self.metrics = RunMetrics()

    def _log(self, partition: int) -> PartitionLog:
        if partition not in self._logs:
            self._logs[partition] = PartitionLog(self.settings.lake_root, self.topic, partition)
        return self._logs[partition]

    def run(self) -> RunMetrics:
        started = time.monotonic()
        self._require_topics()
        self._dead_letters = DeadLetters(self._client_config, self.settings.dead_letter_topic)
        self._consumer = Consumer(self._consumer_config())
        self._committer = _Committer(self._log, self._dead_letters)
        self._committer.start()
        self._consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        options = self.options
        if options.until_caught_up:
            self._targets = self._high_watermarks(self._partitions)
        deadline = started + options.max_seconds if options.max_seconds else float("inf")
        reported = started
        try:
            while time.monotonic() < deadline:
                wanted = CHUNK
                if options.max_events is not None:
                    wanted = min(CHUNK, options.max_events - self._taken)
                    if wanted <= 0:
                        break
                messages = self._consumer.consume(wanted, timeout=POLL_SECONDS)
                if messages:
                    self._take(messages)
                else:
                    self._cover_control_records()
                self._handle_results()
                if self._buffered >= options.batch_events or (
                    self._batches and time.monotonic() - self._batch_opened >= options.batch_seconds
                ):
                    self._flush()
                elif options.until_caught_up and self._caught_up():
                    break
                if self._on_progress and time.monotonic() - reported >= 1:
                    reported = time.monotonic()
                    self.metrics.seconds = reported - started
                    self.metrics.lag = self._lag(cached=True)
                    self._on_progress(self.metrics)
            self._flush()
            self._settle()
            newest = {p: self._log(p).head() for p in self._positions}
            self._commit_group_offsets([e for e in newest.values() if e], asynchronous=False)
            self.metrics.lag = self._lag(cached=False)
        finally:
            self._consumer.close()  # revokes: the committer must still be listening
            self._committer.submit(None)
            self._committer.join()
            self._dead_letters.close()
        self.metrics.seconds = time.monotonic() - started
        log.info("ingest run: %s", self.metrics.as_dict())
        return self.metrics

    def _consumer_config(self) -> dict[str, Any]:
        tunable = {  # the connection's extra may override these
            "session.timeout.ms": 10_000,  # a killed worker's partitions move on after 10 s
            "queued.max.messages.kbytes": 32_768,  # the prefetch bound, whatever the backlog
        }
        required: dict[str, Any] = {
            "group.id": self.options.group_id,
            "enable.auto.commit": False,  # group offsets are for monitoring, committed by hand
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "error_cb": self._on_kafka_error,
        }
        if self.options.instance_id:
            required["group.instance.id"] = self.options.instance_id
        return tunable | self._client_config | required

    def _require_topics(self) -> None:
        from confluent_kafka.admin import AdminClient

        bootstrap = self._client_config.get("bootstrap.servers")
        try:
            metadata = AdminClient(self._client_config).list_topics(timeout=15)
        except KafkaException as error:
            raise IngestError(
                f"Kafka at {bootstrap} is unreachable ({error.args[0]}): start the local stack "
                "with `make up`, or fix the Kafka connection (Airflow: kafka_default; the CLI: "
                "ADP_KAFKA_BOOTSTRAP)"
            ) from None
        for topic in (self.topic, self.settings.dead_letter_topic):
            if topic not in metadata.topics or metadata.topics[topic].error is not None:
                raise IngestError(
                    f"topic {topic} does not exist at {bootstrap}: create the platform's topics "
                    "with `adplatform topics`"
                )
        self._partitions = sorted(metadata.topics[self.topic].partitions)

    # -- rebalancing: the commit log, not the group, says where each partition resumes ----------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assigned = []
        for tp in partitions:
            end = self._recover(tp.partition)
            self._positions[tp.partition] = end
            self._committer.submit(_Reset(tp.partition, end))
            assigned.append(TopicPartition(self.topic, tp.partition, end))
        consumer.incremental_assign(assigned)
        if assigned:
            log.info("assigned %s", {tp.partition: tp.offset for tp in assigned})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.pop(tp.partition, None)
            dropped = self._batches.pop(tp.partition, None)
            if dropped:
                self._buffered -= dropped.consumed
            self._committer.submit(_Forget(tp.partition))
        consumer.incremental_unassign(partitions)
        if partitions:
            log.info("revoked %s", sorted(tp.partition for tp in partitions))

    def _recover(self, partition: int) -> int:
        """Finish what a stopped writer left committed, drop what it left uncommitted, and
        return where the partition resumes."""
        plog = self._log(partition)
        with plog.lease():
            for entry in plog.unpublished():
                roll_forward(plog, entry, self._dead_letters)
                self.metrics.rolled_forward += 1
            end = plog.end()
            plog.collect_garbage(end)
        high = self._high_watermarks([partition]).get(partition, end)
        if end > high:
            raise IngestError(
                f"the commit log of {self.topic} partition {partition} ends at offset {end} but "
                f"the topic ends at {high}: the topic was re-created. Move "
                f"{plog.root.parent} aside to ingest it from the start."
            )
        return end

    def _resume(self, partition: int) -> None:
        """Another writer committed a range this worker had read: continue after it."""
        end = self._log(partition).end()
        self._positions[partition] = end
        dropped = self._batches.pop(partition, None)
        if dropped:
            self._buffered -= dropped.consumed
        self._committer.submit(_Reset(partition, end))
        self._consumer.seek(TopicPartition(self.topic, partition, end))

    # -- the hot path -----------------------------------------------------------------------

    def _take(self, messages: list[Message]) -> None:
        if any(map(Message.error, messages)):  # rare: transport errors, partition EOF
            for error in filter(None, map(Message.error, messages)):
                self._on_message_error(error)
            messages = [m for m in messages if m.error() is None]
        if not self._batches:
            self._batch_opened = time.monotonic()
            self._batch_clock_ms = now_ms()
        # librdkafka hands out messages in runs of one partition (one per fetch response).
        for key, run in itertools.groupby(messages, Message.partition):
            partition = cast(int, key)
            start = self._positions.get(partition)
            if start is None:
                continue  # revoked while this chunk was in flight
            batch = self._batches.get(partition)
            if batch is None:
                batch = PartitionBatch(self.topic, partition, start, self._batch_clock_ms)
                self._batches[partition] = batch
            chunk = list(run)
            before = batch.consumed
            batch.add(self._validator, self._encoder, chunk)
            self._buffered += batch.consumed - before
            self._taken += len(chunk)

    def _cover_control_records(self) -> None:
        """Extend each partition's chain over offsets the consumer passed without delivering a
        message: transaction markers (a transactional producer ends every transaction with
        one) and aborted records. Otherwise the commit log, the group's offsets and so the
        backlog trigger and ``until_caught_up`` would stop one offset short of the topic's end
        forever. The range is an entry with no message (or extends the open batch)."""
        if not self._positions:
            return
        reached = self._consumer.position([TopicPartition(self.topic, p) for p in self._positions])
        for tp in reached:
            start = self._positions.get(tp.partition)
            batch = self._batches.get(tp.partition)
            end = batch.end if batch else start
            if start is None or end is None or tp.offset <= end:
                continue  # nothing passed silently (or no position yet: OFFSET_INVALID < 0)
            if batch is None:
                if not self._batches:
                    self._batch_opened = time.monotonic()
                    self._batch_clock_ms = now_ms()
                batch = PartitionBatch(self.topic, tp.partition, start, self._batch_clock_ms)
                self._batches[tp.partition] = batch
            batch.end = tp.offset

    def _flush(self) -> None:
        # Double buffering: the previous window is committed while this one filled up, and
        # must be done before this one goes. Two windows are the bound on memory.
        self._committer.inbox.join()
        for partition, batch in self._batches.items():
            self._committer.submit(batch)
            self._positions[partition] = batch.end
        self._batches = {}
        self._buffered = 0

    def _handle_results(self) -> None:
        while True:
            try:
                result = self._committer.outbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(result, _Failed):
                raise result.error
            if isinstance(result, _Committed):
                entry = result.entry
                self.metrics.add(entry)
                if entry.partition in self._positions:
                    self._commit_group_offsets([entry], asynchronous=True)
            elif isinstance(result, _Lost):
                self.metrics.lost_races += 1
                log.warning(
                    "partition %s: offsets from %s were committed by another writer; resuming "
                    "after them",
                    result.partition,
                    result.start,
                )
                if result.partition in self._positions:
                    self._resume(result.partition)

    def _commit_group_offsets(self, entries: list[Entry], asynchronous: bool) -> None:
        """Move the group's offsets to the commit log's (for lag monitoring tools only)."""
        offsets = [TopicPartition(self.topic, e.partition, e.end) for e in entries]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=asynchronous)  # type: ignore[call-overload]
        except KafkaException as error:
            log.warning("could not commit group offsets (monitoring only): %s", error)

    def _settle(self) -> None:
        """Wait until every handed-over batch is committed (or dropped) and accounted for."""
        while True:
            self._committer.inbox.join()
            if self._committer.outbox.empty():
                return
            self._handle_results()

    def _caught_up(self) -> bool:
        """Is every partition of the topic ingested up to where it ended when the run started?
        Those of other members (or of a stopped one whose session has not expired yet) count
        too: a worker that stopped at the end of its own share could leave the rest unassigned
        for a while."""
        missing = [p for p in self._partitions if p not in self._targets]
        if missing:  # the broker did not answer for them at the start
            self._targets |= self._high_watermarks(missing)
            if len(self._targets) < len(self._partitions):
                return False
        # Own partitions first: reading another member's progress means reading its log.
        order = sorted(self._targets, key=lambda partition: partition not in self._positions)
        return all(self._reached(partition) >= self._targets[partition] for partition in order)

    def _reached(self, partition: int) -> int:
        """The offset up to which a partition is read (this worker's) or committed (others')."""
        if partition in self._batches:
            return self._batches[partition].end
        if partition in self._positions:
            return self._positions[partition]
        return self._log(partition).end()

    def _high_watermarks(
        self, partitions: list[int] | None = None, cached: bool = False
    ) -> dict[int, int]:
        """End offset of each (assigned) partition; those the broker does not answer for now,
        e.g. while it restarts, are left out."""
        highs = {}
        for partition in list(self._positions) if partitions is None else partitions:
            tp = TopicPartition(self.topic, partition)
            try:
                if cached:
                    watermarks = self._consumer.get_watermark_offsets(tp, cached=True)
                else:
                    watermarks = self._consumer.get_watermark_offsets(tp, timeout=10)
            except KafkaException:
                continue
            if watermarks is not None and watermarks[1] >= 0:
                highs[partition] = watermarks[1]
        return highs

    def _lag(self, cached: bool) -> dict[int, int]:
        return {
            partition: max(0, high - self._positions.get(partition, high))
            for partition, high in self._high_watermarks(cached=cached).items()
        }

    # -- errors -----------------------------------------------------------------------------

    def _on_message_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise KafkaException(error)
        log.warning("kafka: %s", error)

    def _on_kafka_error(self, error: KafkaError) -> None:
        # Broker restarts and network blips are retried by librdkafka; only fatal ones stop us.
        log.warning("kafka: %s", error)
