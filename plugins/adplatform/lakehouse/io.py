"""Atomic writes: a reader sees a whole file or none, never a partial one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def atomic_write_parquet(table: pa.Table, path: Path, compression: str = "zstd") -> Path:
    """Write ``table`` beside ``path`` under a hidden name, fsync it, then rename into place.

    Readers (Spark, chDB, DuckDB) skip names starting with '.' or '_', so the temporary file is
    invisible until the rename, which is atomic within one filesystem.
    """
    return _write_aside(
        path, lambda staging: pq.write_table(table, staging, compression=compression)
    )


def atomic_write_bytes(data: bytes, path: Path) -> Path:
    """Replace ``path`` with ``data`` the same way: whole old file or whole new one."""
    return _write_aside(path, lambda staging: staging.write_bytes(data))


def _write_aside(path: Path, write: Callable[[Path], object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(staging)
        with staging.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)
    return path
