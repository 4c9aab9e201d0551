"""Where serving artifacts live: a small key-value interface, a local folder behind it.

Layout under the root: ``versions/<version>/{model.txt, feature_spec.json, manifest.json}``,
immutable once written, and one pointer, ``CURRENT.json``, naming the served version and the
history of served versions (for rollback). Publishing writes a version's files first and the
pointer last, so a reader sees the old version or the whole new one, never a mixture.

Production points the same interface at an object store (S3/MinIO): a PUT replaces an object
atomically, which is all the pointer needs; only ``LocalServingStore`` exists today.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from adplatform.lakehouse.io import atomic_write_bytes

POINTER = "CURRENT.json"


class ServingStore(Protocol):
    """Whole-object reads and writes; ``write`` is atomic: readers see old or new bytes."""

    def read(self, key: str) -> bytes:
        """The object's bytes; ``FileNotFoundError`` when there is none."""
        ...

    def write(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...

    def describe(self) -> str:
        """Where the store is, for messages."""
        ...


class LocalServingStore:
    """A folder: each write goes to a hidden temporary file, is fsynced, then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} escapes the store at {self.root}")
        return path

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def write(self, key: str, data: bytes) -> None:
        atomic_write_bytes(data, self._path(key))

    def describe(self) -> str:
        return str(self.root)
