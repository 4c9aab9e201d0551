"""The reference scorer the serving tier embeds: newest artifact, hot reload, last good model.

    scorer = CtrScorer(LocalServingStore(settings.serving_dir / "ctr_model"))
    p = scorer.score({"creative_id": "cr-00017", "publisher_id": "pub-003", ...})
    ps = scorer.score_batch(list_of_requests)        # or a dict of columns

Every call first checks (at most every ``reload_interval`` seconds) whether a new version has
been published; a new version is loaded and verified (checksums, feature-spec format, features
the model expects) before it replaces the current one. A corrupt or mismatched version is
refused: the scorer keeps serving the last good model and reports the refusal in ``last_error``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from ml.errors import CorruptArtifact, NoServableModel, SpecMismatch
from ml.spec import Batch, Encoder, FeatureSpec
from ml.store import POINTER, ServingStore

log = logging.getLogger(__name__)

MODEL_FILE = "model.txt"
SPEC_FILE = "feature_spec.json"
MANIFEST_FILE = "manifest.json"
BUNDLE_FILES = (MODEL_FILE, SPEC_FILE)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_key(version: str, name: str) -> str:
    return f"versions/{version}/{name}"


@dataclass(frozen=True)
class ServingModel:
    """A loaded, verified model: LightGBM booster, feature spec and its manifest."""

    booster: lgb.Booster
    spec: FeatureSpec
    encoder: Encoder
    manifest: Mapping[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", "?"))

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], manifest: Mapping[str, Any]) -> ServingModel:
        """Build from a bundle's files; refuses a spec that does not match the model."""
        spec = FeatureSpec.from_json(files[SPEC_FILE])
        try:
            booster = lgb.Booster(model_str=files[MODEL_FILE].decode())
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as error:
            raise CorruptArtifact(f"{MODEL_FILE} is not a LightGBM model: {error}") from None
        if booster.feature_name() != spec.names:
            raise SpecMismatch(
                f"the model expects features {booster.feature_name()} but the feature spec "
                f"lists {spec.names}: export the model and its spec from the same training run"
            )
        return cls(booster, spec, spec.encoder(), manifest)

    @classmethod
    def load(cls, store: ServingStore, version: str) -> ServingModel:
        """Read and verify one published version."""
        where = f"version {version} in {store.describe()}"
        try:
            manifest = json.loads(store.read(version_key(version, MANIFEST_FILE)))
            files = {name: store.read(version_key(version, name)) for name in BUNDLE_FILES}
        except FileNotFoundError as error:
            raise CorruptArtifact(f"{where} is incomplete: {error.filename} is missing") from None
        except ValueError as error:
            raise CorruptArtifact(f"{where} has an unreadable manifest: {error}") from None
        for name, data in files.items():
            expected = manifest.get("files", {}).get(name, {}).get("sha256")
            if sha256(data) != expected:
                raise CorruptArtifact(
                    f"{where}: {name} does not match its manifest checksum (corrupt or "
                    "tampered); re-push the model or roll back"
                )
        return cls.from_files(files, manifest)

    def predict(self, batch: Batch) -> np.ndarray:
        matrix = self.encoder.encode(batch)
        if not len(matrix):
            return np.empty(0)
        return np.asarray(self.booster.predict(matrix, num_threads=1), dtype=np.float64)


def read_pointer(store: ServingStore) -> dict[str, Any]:
    """The pointer: ``{"version": ..., "history": [...]}``; empty when nothing was pushed."""
    try:
        return dict(json.loads(store.read(POINTER)))
    except FileNotFoundError:
        return {}


class CtrScorer:
    """Scores requests with the newest good version in ``store``; thread-safe."""

    def __init__(self, store: ServingStore, reload_interval: float = 5.0) -> None:
        self.store = store
        self.reload_interval = reload_interval
        self.last_error: str | None = None
        self._model: ServingModel | None = None
        self._refused: str | None = None  # a version already refused: not retried
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self.refresh()
        if self._model is None:
            raise NoServableModel(
                f"no servable CTR model in {store.describe()}: {self.last_error} "
                "(push one with the ctr_model_training DAG, or `adplatform model rollback`)"
            )

    @property
    def model(self) -> ServingModel:
        assert self._model is not None  # the constructor guarantees one
        return self._model

    @property
    def version(self) -> str:
        return self.model.version

    def refresh(self) -> bool:
        """Load the published version if it is new and valid; True when the model changed."""
        with self._lock:
            self._checked_at = time.monotonic()
            history = read_pointer(self.store).get("history", [])
            if self._model is not None:
                history = history[-1:]  # hot reload: only the newest; keep ours otherwise
            elif not history:
                self.last_error = "nothing has been published"
                return False
            for version in reversed(history):  # at start-up, fall back to older versions
                if self._model is not None and version in (self._model.version, self._refused):
                    return False
                try:
                    model = ServingModel.load(self.store, version)
                except (CorruptArtifact, SpecMismatch) as error:
                    self.last_error = str(error)
                    self._refused = version
                    log.error("refused CTR model version %s: %s", version, error)
                    continue
                self._model, self.last_error = model, None
                log.info("serving CTR model version %s", version)
                return True
            return False

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._checked_at >= self.reload_interval:
            self.refresh()

    def score(self, request: Mapping[str, Any]) -> float:
        """The click probability of one request."""
        self._maybe_refresh()
        return float(self.model.predict([request])[0])

    def score_batch(self, batch: Batch) -> np.ndarray:
        """Click probabilities of a list of requests or a dict of columns."""
        self._maybe_refresh()
        return self.model.predict(batch)
