"""Atomic writes: a reader sees a whole file or none, never a partial one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def atomic_write_parquet(table: pa.Table, path: Path, compression: str = "zstd") -> Path:
    """Write ``table`` as Parquet to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(
        path, lambda staging: pq.write_table(table, staging, compression=compression)
    )


def atomic_write_bytes(data: bytes, path: Path) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda staging: staging.write_bytes(data))


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a hidden file beside ``path``, fsync it, then rename it into place.

    Readers (Spark, chDB, DuckDB) skip names starting with '.' or '_', so the temporary file is
    invisible until the rename, which is atomic within one filesystem.
    """
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
