"""Atomic writes: a reader sees a whole file or none, never a partial one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_parquet_synced(table: pa.Table, path: Path, compression: str = "zstd") -> None:
    """Write ``table`` to ``path`` and fsync it: when this returns, the bytes are on disk."""
    pq.write_table(table, path, compression=compression)
    fsync_file(path)


def fsync_file(path: Path) -> None:
    with path.open("rb") as written:
        os.fsync(written.fileno())


def fsync_directory(path: Path) -> None:
    """Make the names created, renamed or removed in ``path`` durable."""
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def make_directories_durable(path: Path) -> None:
    """``mkdir -p path``, and make each directory it creates durable in its parent: a name
    created but not synced can vanish in a crash, with the files moved into it."""
    missing = []
    ancestor = path
    while not ancestor.exists():
        missing.append(ancestor)
        ancestor = ancestor.parent
    path.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        fsync_directory(created.parent)


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
        fsync_file(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    fsync_directory(path.parent)  # make the rename itself durable
    return path
