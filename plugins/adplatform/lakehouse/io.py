"""Atomic writes: a reader sees a whole file or none, never a partial one."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_parquet_synced(table: pa.Table, path: Path, compression: str = "zstd") -> None:
    """Write ``table`` to ``path`` and fsync it: when this returns, the bytes are on disk."""
    pq.write_table(table, path, compression=compression)
    with path.open("rb") as written:
        os.fsync(written.fileno())


def fsync_directory(path: Path) -> None:
    """Make the names created, renamed or removed in ``path`` durable."""
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_write_parquet(table: pa.Table, path: Path, compression: str = "zstd") -> Path:
    """Write ``table`` beside ``path`` under a hidden name, fsync it, then rename into place.

    Readers (Spark, chDB, DuckDB) skip names starting with '.' or '_', so the temporary file is
    invisible until the rename, which is atomic within one filesystem.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write_parquet_synced(table, staging, compression)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    fsync_directory(path.parent)  # make the rename itself durable
    return path
