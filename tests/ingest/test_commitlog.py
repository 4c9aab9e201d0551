"""The commit log on real files: exclusive commits under a race of processes, one chain,
roll-forward of what a stopped writer committed, and garbage it left uncommitted."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from adplatform.ingest.commitlog import Entry, FileRef, IngestError, PartitionLog, new_attempt
from adplatform.lakehouse import io


def _entry(start: int, end: int, attempt: str, files: tuple[FileRef, ...] = ()) -> Entry:
    return Entry(
        topic="events",
        partition=0,
        start=start,
        end=end,
        consumed=end - start,
        accepted=end - start,
        quarantined=0,
        reasons={},
        validated_at_ms=0,
        committed_at_ms=0,
        attempt=attempt,
        writer="test",
        files=files,
    )


def _stage(plog: PartitionLog, start: int, end: int, name: str) -> Entry:
    """A staged batch with one data file, as the worker leaves it before committing."""
    attempt = new_attempt()
    staging = plog.staging_dir(start, attempt)
    io.make_directories_durable(staging)
    pq.write_table(pa.table({"offset": list(range(start, end))}), staging / "0.parquet")
    return _entry(start, end, attempt, (FileRef(f"bronze/t/{name}.parquet", end - start),))


def _race(lake: str, start: int, end: int, barrier: multiprocessing.synchronize.Barrier) -> bool:
    plog = PartitionLog(Path(lake), "events", 0)
    entry = _entry(start, end, new_attempt())
    barrier.wait()
    return plog.commit(entry)


def test_of_writers_racing_for_the_same_range_exactly_one_commits(tmp_path):
    writers = 4
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(writers)
    with context.Pool(writers) as pool:
        # Different ends: each writer consumed a different amount from the same start.
        results = pool.starmap(
            _race, [(str(tmp_path), 0, 100 + w, barrier) for w in range(writers)]
        )
    assert sorted(results) == [False] * (writers - 1) + [True]
    entries = PartitionLog(tmp_path, "events", 0).entries()
    assert len(entries) == 1
    assert entries[0].end == 100 + results.index(True)


def test_the_log_is_one_chain_and_the_head_walks_past_a_stale_hint(tmp_path):
    plog = PartitionLog(tmp_path, "events", 0)
    assert plog.end() == 0
    assert plog.commit(_entry(0, 10, "a"))
    assert plog.commit(_entry(10, 25, "b"))
    assert not plog.commit(_entry(10, 30, "c"))  # a slower writer of the same range loses
    (plog.root / "head").write_text("0")  # a hint written late by a slower writer
    another_process = PartitionLog(tmp_path, "events", 0)
    assert another_process.commit(_entry(25, 40, "d"))
    (plog.root / "head").write_text("0")
    assert plog.end() == 40
    assert [(e.start, e.end) for e in plog.entries()] == [(0, 10), (10, 25), (25, 40)]


def test_a_committed_but_unpublished_range_is_rolled_forward(tmp_path):
    plog = PartitionLog(tmp_path, "events", 0)
    entry = _stage(plog, 0, 50, "first")
    assert plog.commit(entry)  # the writer is killed here, before publishing
    assert not (tmp_path / "bronze/t/first.parquet").exists()
    assert plog.unpublished() == [entry]
    plog.publish(entry)
    plog.publish(entry)  # a second worker rolling forward at the same time finds it done
    plog.finish(entry)
    assert plog.unpublished() == []
    assert pq.read_table(tmp_path / "bronze/t/first.parquet").num_rows == 50


def test_garbage_is_only_what_can_never_commit(tmp_path):
    plog = PartitionLog(tmp_path, "events", 0)
    winner = _stage(plog, 0, 50, "winner")
    loser = _stage(plog, 0, 40, "loser")  # killed after the winner committed the range
    assert plog.commit(winner)
    pending = _stage(plog, 50, 90, "pending")  # a live writer's next batch, not committed yet
    assert plog.collect_garbage(plog.end()) == 1
    assert not plog.staging_dir(0, loser.attempt).exists()
    assert plog.staging_dir(0, winner.attempt).exists()  # committed: to be rolled forward
    assert plog.staging_dir(50, pending.attempt).exists()


def _try_lease(lake: str) -> str:
    try:
        with PartitionLog(Path(lake), "events", 0).lease(wait_seconds=0.5):
            return "taken"
    except IngestError as error:
        return str(error)


def test_the_lease_excludes_other_processes_until_released(tmp_path):
    plog = PartitionLog(tmp_path, "events", 0)
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        with plog.lease():  # a worker publishing, say
            refused = pool.apply(_try_lease, (str(tmp_path),))
        assert "partition 0 of events is being written" in refused
        assert pool.apply(_try_lease, (str(tmp_path),)) == "taken"


def test_new_directories_are_durable_in_their_parents(tmp_path, monkeypatch):
    synced: list[Path] = []
    real = io.fsync_directory

    def recording(path: Path) -> None:
        synced.append(Path(path))
        real(path)

    monkeypatch.setattr(io, "fsync_directory", recording)
    plog = PartitionLog(tmp_path, "events", 0)
    before = {p for p in tmp_path.rglob("*") if p.is_dir()}
    entry = _stage(plog, 0, 10, "new")  # as stage() makes its directory
    assert plog.commit(entry)
    plog.publish(entry)
    created = {p for p in tmp_path.rglob("*") if p.is_dir()} - before
    assert created and all(directory.parent in synced for directory in created)
