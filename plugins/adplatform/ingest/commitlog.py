"""The per-partition commit log: the durable record of which offsets are in the lakehouse.

Every published batch covers a contiguous offset range ``[start, end)`` of one partition and is
recorded as one entry, ``<lake>/_ingest/<topic>/<partition>/commits/<start>.json``. The log,
not Kafka's group offsets, says where ingest resumes, and three rules make it exactly once:

1. **Entries are created exclusively.** An entry is written completely under a temporary name,
   then hard-linked to its final name; ``link(2)`` fails when the name exists, so of two writers
   that consumed the same range only one can commit it (on S3: a conditional ``If-None-Match``
   PUT). The loser discards its files and resumes after the winner's range.
2. **Entries form one chain.** A writer commits at ``start`` only when ``start`` is the end of
   an entry it has read (or 0 in an empty log), so the entries are ``[0, e1) [e1, e2) ...``,
   without gaps or overlaps, whatever the number of writers and however they interleave.
3. **Data before the entry.** The batch's Parquet files are durable in a private staging
   directory before the entry exists; publishing moves them into the tables, and whoever finds
   a committed entry's staging directory still present (after a crash) finishes the move.

So a crash loses nothing that was committed, and a range is never committed twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec

from adplatform.lakehouse.io import fsync_directory, make_directories_durable
from adplatform.lakehouse.tables import QUARANTINE_EVENTS
from adplatform.settings import INGEST_DIR

_QUARANTINE_DIR = f"{QUARANTINE_EVENTS.layer}/{QUARANTINE_EVENTS.name}/"


class IngestError(RuntimeError):
    """Ingest cannot go on safely; the message names the problem and the fix."""


class FileRef(msgspec.Struct, frozen=True):
    path: str  # relative to the lake root
    rows: int


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One committed batch of one partition."""

    topic: str
    partition: int
    start: int  # first offset covered (the previous entry's end, or 0)
    end: int  # one past the last offset covered
    consumed: int  # messages read in the range (accepted + quarantined)
    accepted: int
    quarantined: int
    reasons: dict[str, int]  # quarantine reason -> messages
    validated_at_ms: int  # the validator's clock for the whole batch (replays reuse it)
    committed_at_ms: int
    attempt: str  # names the staging directory the files came from
    writer: str  # host:pid, for forensics
    files: tuple[FileRef, ...]  # Bronze files first, then the quarantine file if any
    replayed_at_ms: int | None = None

    @property
    def quarantine_file(self) -> FileRef | None:
        return next((f for f in self.files if f.path.startswith(_QUARANTINE_DIR)), None)


_encode = msgspec.json.Encoder().encode
_decode_entry = msgspec.json.Decoder(Entry).decode


def new_attempt() -> str:
    return uuid.uuid4().hex[:12]


def writer_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class PartitionLog:
    """The commit log and staging area of one topic partition under the lake root."""

    def __init__(self, lake_root: Path, topic: str, partition: int) -> None:
        if topic.startswith((".", "_")):
            # Data files are named after the topic, and readers skip names starting with these.
            raise IngestError(f"cannot ingest topic {topic!r}: names starting with '.' or '_'")
        self.lake_root = lake_root
        self.topic = topic
        self.partition = partition
        self.root = lake_root / INGEST_DIR / topic / str(partition)
        self.commits = self.root / "commits"
        self.staging = self.root / "staging"
        self._head_hint = self.root / "head"

    # -- reading ------------------------------------------------------------------------------

    def _entry_path(self, start: int) -> Path:
        return self.commits / f"{start:020d}.json"

    def read(self, start: int) -> Entry | None:
        try:
            return _decode_entry(self._entry_path(start).read_bytes())
        except FileNotFoundError:
            return None

    def entries(self) -> list[Entry]:
        """Every entry, in offset order."""
        if not self.commits.exists():
            return []
        names = sorted(p.name for p in self.commits.iterdir() if not p.name.startswith("."))
        return [_decode_entry((self.commits / name).read_bytes()) for name in names]

    def head(self) -> Entry | None:
        """The newest entry: walk the chain from the head hint (which may lag, never lead)."""
        try:
            start = int(self._head_hint.read_text())
        except (FileNotFoundError, ValueError):
            start = 0
        entry = self.read(start)
        if entry is None and start:  # a hint without its entry: the log was tampered with
            entry = self.read(0)
        while entry is not None and (following := self.read(entry.end)) is not None:
            entry = following
        return entry

    def end(self) -> int:
        """Where the next batch starts: the end of the newest entry, or 0."""
        head = self.head()
        return head.end if head else 0

    # -- writing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self, wait_seconds: float | None = None) -> Iterator[None]:
        """The exclusive right to commit and publish this partition's ranges: the worker holds
        it for each commit and publish, a replay for its whole run, so neither can move files
        over the other's. ``wait_seconds`` bounds the wait (default: as long as it takes)."""
        make_directories_durable(self.root)
        with (self.root / "lease").open("a") as lock:
            deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline else 0))
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() > deadline:
                        raise IngestError(
                            f"partition {self.partition} of {self.topic} is being written (its "
                            f"lease {self.root / 'lease'} was held for {wait_seconds:.0f}s): "
                            "try again, or stop ingest for the partition first"
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def staging_dir(self, start: int, attempt: str) -> Path:
        return self.staging / f"{start:020d}.{attempt}"

    def commit(self, entry: Entry) -> bool:
        """Create ``entry`` if no entry starts at its offset; False if another writer's does."""
        staged = self.staging_dir(entry.start, entry.attempt)
        if staged.exists():
            fsync_directory(staged)  # the staged names must be durable before the entry is
        make_directories_durable(self.commits)
        temporary = self.commits / f".{entry.start:020d}.{entry.attempt}.tmp"
        with temporary.open("wb") as file:
            file.write(_encode(entry))
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, self._entry_path(entry.start))
        except FileExistsError:
            return False
        finally:
            temporary.unlink(missing_ok=True)
        fsync_directory(self.commits)
        self._write_head_hint(entry.start)
        return True

    def replace(self, entry: Entry) -> None:
        """Rewrite an existing entry in place (replay only: same range, new files and counts)."""
        temporary = self.commits / f".{entry.start:020d}.{entry.attempt}.tmp"
        with temporary.open("wb") as file:
            file.write(_encode(entry))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._entry_path(entry.start))
        fsync_directory(self.commits)

    def _write_head_hint(self, start: int) -> None:
        # Best effort and possibly stale under concurrent writers: head() walks forward from it.
        temporary = self._head_hint.with_name(f".head.{uuid.uuid4().hex}")
        temporary.write_text(str(start))
        os.replace(temporary, self._head_hint)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, entry: Entry, staging: Path | None = None) -> None:
        """Move the entry's staged files into the tables. Idempotent, and safe to run from two
        processes at once: a file already moved is found at its destination."""
        staging = staging or self.staging_dir(entry.start, entry.attempt)
        directories = set()
        for index, ref in enumerate(entry.files):
            target = self.lake_root / ref.path
            if target.parent not in directories:
                make_directories_durable(target.parent)
            try:
                os.replace(staging / f"{index}.parquet", target)
            except FileNotFoundError:
                if not target.exists():
                    raise IngestError(
                        f"{ref.path} of committed offsets {entry.start}..{entry.end - 1} "
                        f"(partition {entry.partition}) is neither staged nor published: it was "
                        "deleted by hand; restore it with `adplatform ingest replay "
                        f"--partition {entry.partition} --from-offset {entry.start}`"
                    ) from None
            directories.add(target.parent)
        for directory in directories:
            fsync_directory(directory)

    def finish(self, entry: Entry) -> None:
        """Mark ``entry`` fully published by removing its staging directory."""
        shutil.rmtree(self.staging_dir(entry.start, entry.attempt), ignore_errors=True)

    def replay_dir(self, start: int) -> Path:
        """Where a replay stages the new files of the entry at ``start`` (one replay at a time
        per partition; the worker's garbage collection leaves these alone)."""
        return self.staging / f"replay.{start:020d}"

    def unpublished(self) -> list[Entry]:
        """Committed entries whose staging directory still exists (their writer stopped)."""
        pending = []
        for start, attempt, _ in self._attempts():
            entry = self.read(start)
            if entry is not None and entry.attempt == attempt:
                pending.append(entry)
        return sorted(pending, key=lambda e: e.start)

    def collect_garbage(self, end: int) -> int:
        """Remove staging directories that can never be committed: their range starts before
        ``end`` and the entry there belongs to another attempt. Returns how many."""
        removed = 0
        for start, attempt, path in self._attempts():
            if start >= end:
                continue  # perhaps a live writer's batch that is about to commit
            entry = self.read(start)
            if entry is None or entry.attempt != attempt:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed

    def _attempts(self) -> list[tuple[int, str, Path]]:
        if not self.staging.exists():
            return []
        found = []
        for path in self.staging.iterdir():
            start, _, attempt = path.name.partition(".")
            if start.isdigit() and attempt:  # not a replay's directory
                found.append((int(start), attempt, path))
        return found
