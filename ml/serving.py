"""Publishing to the serving tier, and rolling back: a version's files first, the pointer last.

A push compiles the model for this machine (``ml.compiled``) and writes it, with the check rows
that prove it scores like the text model, next to the LightGBM text model and the feature spec.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import lightgbm as lgb
import numpy as np

from adplatform.settings import Settings
from ml.compiled import TOLERANCE, check_rows, compile_forest, host_target
from ml.errors import CtrModelError, NoServableModel
from ml.scorer import (
    BUNDLE_FILES,
    CHECK_ROWS_FILE,
    COMPILED_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    ServingModel,
    read_pointer,
    sha256,
    version_key,
)
from ml.store import POINTER, LocalServingStore, ServingStore

HISTORY_LENGTH = 20  # served versions remembered for rollback


def serving_store(settings: Settings) -> ServingStore:
    return LocalServingStore(settings.serving_dir / "ctr_model")


def manifest_for(version: str, files: dict[str, bytes], **metadata: Any) -> dict[str, Any]:
    checksums = {name: {"sha256": sha256(data), "bytes": len(data)} for name, data in files.items()}
    return {
        "model": "ctr_model",
        "version": version,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": checksums,
        # One checksum for the whole bundle: what the ad server logs with each decision.
        "checksum": sha256(
            "".join(f"{n}:{c['sha256']}\n" for n, c in sorted(checksums.items())).encode()
        ),
        **metadata,
    }


def compiled_bundle(files: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The bundle with the model compiled for this machine and its check rows; the manifest
    entry that says what it was built for."""
    booster = lgb.Booster(model_str=files[MODEL_FILE].decode())
    rows = io.BytesIO()
    np.save(rows, check_rows(booster), allow_pickle=False)
    compiled = {COMPILED_FILE: compile_forest(files[MODEL_FILE]), CHECK_ROWS_FILE: rows.getvalue()}
    return files | compiled, {"target": host_target(), "tolerance": TOLERANCE}


def publish(
    store: ServingStore, version: str, files: dict[str, bytes], **metadata: Any
) -> dict[str, Any]:
    """Make ``version`` the served model: verify the bundle loads, compile it, check the
    compiled model against the text model, write the files, then move the pointer.
    Re-publishing the same bundle is a no-op; a different bundle under an existing version
    is refused."""
    source = {name: files[name] for name in BUNDLE_FILES}
    ServingModel.from_files(source, {})  # refuse a bundle the scorer would refuse
    if store.exists(version_key(version, MANIFEST_FILE)):
        manifest = json.loads(store.read(version_key(version, MANIFEST_FILE)))
        if any(
            manifest.get("files", {}).get(name, {}).get("sha256") != sha256(data)
            for name, data in source.items()
        ):
            raise CtrModelError(
                f"{store.describe()} already holds a different version {version} (was the "
                "model registry reset?): remove that version's folder or push another version"
            )
    else:
        bundle, compiled = compiled_bundle(source)
        manifest = manifest_for(version, bundle, compiled=compiled, **metadata)
        model = ServingModel.from_files(bundle, manifest)
        if model.compiled is None:
            raise CtrModelError(
                f"version {version} was not published: {model.fallback_reason}; the compiler "
                "or its output is broken on this machine (the served version is unchanged)"
            )
        for name, data in bundle.items():
            store.write(version_key(version, name), data)
        store.write(version_key(version, MANIFEST_FILE), json.dumps(manifest, indent=1).encode())
    _point_to(store, version)
    return manifest


def _point_to(store: ServingStore, version: str, history: list[str] | None = None) -> None:
    pointer = read_pointer(store)
    if pointer.get("version") == version and history is None:
        return
    if history is None:
        history = [v for v in pointer.get("history", []) if v != version] + [version]
    document = {
        "version": version,
        "history": history[-HISTORY_LENGTH:],
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    store.write(POINTER, json.dumps(document, indent=1).encode())


@dataclass(frozen=True)
class Rollback:
    previous: str
    current: str
    manifest: dict[str, Any]


def rollback(store: ServingStore, to: str | None = None) -> Rollback:
    """Serve the version before the current one (or ``to``, a version served before)."""
    pointer = read_pointer(store)
    history: list[str] = pointer.get("history", [])
    current = pointer.get("version")
    if current is None:
        raise NoServableModel(f"nothing has been published to {store.describe()}: no rollback")
    if to is None:
        if len(history) < 2:
            raise CtrModelError(
                f"version {current} is the only one served from {store.describe()}: "
                "there is nothing to roll back to"
            )
        to = history[-2]
    if to not in history:
        raise CtrModelError(
            f"version {to} was never served from {store.describe()}: choose one of "
            f"{', '.join(history)}"
        )
    model = ServingModel.load(store, to)  # never point the ad servers at a broken version
    if to != current:
        _point_to(store, to, history[: history.index(to) + 1])
    return Rollback(current, to, dict(model.manifest))


def status(store: ServingStore) -> dict[str, Any]:
    """The pointer and the served version's manifest (empty when nothing was published)."""
    pointer = read_pointer(store)
    if not pointer:
        return {}
    manifest = json.loads(store.read(version_key(pointer["version"], MANIFEST_FILE)))
    return {"pointer": pointer, "manifest": manifest}
