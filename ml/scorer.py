"""The reference scorer the serving tier embeds: newest artifact, compiled model, hot reload.

    scorer = CtrScorer(LocalServingStore(settings.serving_dir / "ctr_model"))
    p = scorer.score({"creative_id": "cr-00017", "publisher_id": "pub-003", ...})
    ps = scorer.score_candidates(request_context, candidate_ads)   # one request, many ads
    ps = scorer.score_batch(columns)   # a dict of columns, an Arrow table, a DataFrame, or dicts

A version carries the LightGBM text model and the same model compiled to native code
(``ml.compiled``). Loading a version verifies the checksums, the feature-spec format and that
the spec's features are the model's, then the compiled model: built for this machine, and
scoring the version's check rows like the text model. A compiled model that is missing,
corrupt, built for another machine or scoring differently is not served: the scorer serves the
text model instead, loudly (a logged warning, ``compiled_fallbacks``, ``status()``). A corrupt or
mismatched version is refused: the scorer keeps serving the last good model and reports the
refusal in ``last_error``.

Every call first checks (at most every ``reload_interval`` seconds, in one calling thread while
the others go on scoring) whether a new version has been published. A call reads the served
model once, so it scores wholly with the old version or wholly with the new one.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import logging
import threading
import time
from collections import ChainMap, Counter
from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pyarrow as pa

from ml.compiled import TOLERANCE, CompiledForest
from ml.errors import CorruptArtifact, CtrModelError, NoServableModel, RequestError, SpecMismatch
from ml.spec import Encoder, FeatureSpec, is_scalar
from ml.store import POINTER, ServingStore

log = logging.getLogger(__name__)

MODEL_FILE = "model.txt"
SPEC_FILE = "feature_spec.json"
MANIFEST_FILE = "manifest.json"
BUNDLE_FILES = (MODEL_FILE, SPEC_FILE)  # what training produces; the version's identity
COMPILED_FILE = "model.o"  # the LightGBM model compiled for the pushing machine's CPU
CHECK_ROWS_FILE = "check_rows.npy"  # rows on which compiled and text model must agree
COMPILED_FILES = (COMPILED_FILE, CHECK_ROWS_FILE)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_key(version: str, name: str) -> str:
    return f"versions/{version}/{name}"


class ServingModel:
    """A loaded, verified model: the LightGBM booster, the compiled forest when it can be
    served (else ``fallback_reason`` says why not), the feature spec and the manifest."""

    def __init__(
        self,
        booster: lgb.Booster,
        spec: FeatureSpec,
        manifest: Mapping[str, Any],
        compiled: CompiledForest | None,
        fallback_reason: str | None,
    ) -> None:
        self.booster = booster
        self.spec = spec
        self.encoder = Encoder(spec)
        self.manifest = manifest
        self.compiled = compiled
        self.fallback_reason = fallback_reason
        self._buffers = threading.local()  # one request's row, per thread
        self._entry = compiled.entry if compiled is not None else None

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", "?"))

    @property
    def engine(self) -> str:
        return "compiled" if self.compiled is not None else "lightgbm"

    @classmethod
    def from_files(
        cls,
        files: Mapping[str, bytes],
        manifest: Mapping[str, Any],
        compiled_problem: str | None = None,
    ) -> ServingModel:
        """Build from a bundle's files; refuses a spec that does not match the model. The
        compiled model is used only if it loads and scores the check rows as the text model."""
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
        compiled = None
        if compiled_problem is None:
            try:
                compiled = _verified_compiled(files, booster, manifest)
            except (CtrModelError, OSError, RuntimeError, ValueError) as error:
                compiled_problem = str(error)
        return cls(booster, spec, manifest, compiled, compiled_problem)

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
        checksums = manifest.get("files", {})
        for name, data in files.items():
            if sha256(data) != checksums.get(name, {}).get("sha256"):
                raise CorruptArtifact(
                    f"{where}: {name} does not match its manifest checksum (corrupt or "
                    "tampered); re-push the model or roll back"
                )
        problem = None
        for name in COMPILED_FILES:
            try:
                data = store.read(version_key(version, name))
            except FileNotFoundError:
                problem = f"{name} is missing"
                break
            if sha256(data) != checksums.get(name, {}).get("sha256"):
                problem = f"{name} does not match its manifest checksum (corrupt)"
                break
            files[name] = data
        return cls.from_files(files, manifest, problem)

    def _new_row_buffers(self) -> tuple[Any, Any, np.ndarray]:
        row = (ctypes.c_double * len(self.spec.features))()
        out = (ctypes.c_double * 1)()
        view = np.frombuffer(memoryview(row), dtype=np.float64).reshape(1, -1)
        buffers = self._buffers.row = row, out, view
        return buffers

    def score_one(self, request: Mapping[str, Any]) -> tuple[float, list[str] | None]:
        """One request's probability, and the fields answered with their default."""
        if type(request) is not dict and not isinstance(request, Mapping):
            raise RequestError(f"a request is a mapping of fields, not {type(request).__name__}")
        try:
            row, out, view = self._buffers.row
        except AttributeError:  # this thread's first request
            row, out, view = self._new_row_buffers()
        defaulted = self.encoder.encode_one(request, row)
        if self._entry is not None:
            self._entry(row, out, 0, 1)
            return out[0], defaulted
        return float(self.booster.predict(view, num_threads=1)[0]), defaulted

    def score_columns(
        self, columns: Mapping[str, Any], rows: int
    ) -> tuple[np.ndarray, dict[str, int]]:
        """Probabilities of ``rows`` rows given as columns (a single value stands for every
        row), and how many values of each field were answered with the default."""
        if rows == 1:  # one row of Python values: the single-request path, no matrix
            request = _only_row(columns, self.spec.request_fields)
            if request is not None:
                probability, fields = self.score_one(request)
                return np.array([probability]), dict.fromkeys(fields or (), 1)
        matrix, defaulted = self.encoder.encode(columns, rows)
        return self.predict_matrix(matrix), defaulted

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        if not len(matrix):
            return np.empty(0)
        if self.compiled is not None:
            return self.compiled.predict(matrix)
        return np.asarray(self.booster.predict(matrix, num_threads=1), dtype=np.float64)

    def predict(self, batch: Any) -> np.ndarray:
        """Probabilities of a batch (see ``as_columns``), for training and notebooks."""
        return self.score_columns(*as_columns(batch, self.spec.request_fields))[0]


def _verified_compiled(
    files: Mapping[str, bytes], booster: lgb.Booster, manifest: Mapping[str, Any]
) -> CompiledForest:
    if COMPILED_FILE not in files or CHECK_ROWS_FILE not in files:
        raise CorruptArtifact("the artifact carries no compiled model")
    target = manifest.get("compiled", {}).get("target", {})
    forest = CompiledForest.load(files[MODEL_FILE], files[COMPILED_FILE], target)
    rows = np.load(io.BytesIO(files[CHECK_ROWS_FILE]), allow_pickle=False)
    if rows.ndim != 2 or rows.shape[1] != booster.num_feature():
        raise CorruptArtifact(f"{CHECK_ROWS_FILE} has shape {rows.shape}, not (n, features)")
    difference = np.abs(forest.predict(rows) - booster.predict(rows, num_threads=1))
    worst = float(np.max(difference, initial=0.0))
    if not worst <= TOLERANCE:  # NaN included
        raise CorruptArtifact(
            f"the compiled model scores the {len(rows)} check rows up to {worst:.3g} away from "
            f"the text model (tolerance {TOLERANCE:g})"
        )
    return forest


def _only_row(columns: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any] | None:
    """A one-row batch as a request, when its columns are Python lists or tuples, NumPy or
    Arrow arrays: one value each is cheaper than a columnar lookup per field."""
    request = {}
    for name in fields:
        column = columns.get(name)
        if isinstance(column, _SEQUENCES):
            if len(column) != 1:
                return None
            request[name] = column[0]
        elif isinstance(column, _ARROW):
            if len(column) != 1:
                return None
            request[name] = column.to_pylist()[0]  # cheaper than a scalar's as_py()
        elif is_scalar(column):
            request[name] = column
        else:
            return None
    return request


_SEQUENCES = (list, tuple, np.ndarray)
_ARROW = (pa.Array, pa.ChunkedArray)


def as_columns(batch: Any, fields: Sequence[str]) -> tuple[Mapping[str, Any], int]:
    """A batch as columns and its row count: columns (a mapping of sequences, NumPy or Arrow
    arrays, an Arrow table or a DataFrame), or a list of request dicts (converted row by
    row). Columns of Arrow or NumPy strings and categoricals are encoded without a Python
    object per row."""
    if isinstance(batch, pa.Table | pa.RecordBatch):
        batch = dict(zip(batch.schema.names, batch.columns, strict=True))  # each wrapped once
    elif hasattr(batch, "columns") and not isinstance(batch, Mapping):  # a DataFrame
        batch = {name: batch[name] for name in fields if name in batch.columns}  # each read once
    if isinstance(batch, Mapping):
        for column in map(batch.get, fields):
            if column is not None and not is_scalar(column):  # others' lengths: when encoding
                return batch, len(column)
        raise RequestError(
            f"the batch has no column of any request field ({', '.join(fields)}): "
            "score one request with score()"
        )
    if isinstance(batch, Sequence) and not isinstance(batch, str | bytes):
        for number, request in enumerate(batch):
            if not isinstance(request, Mapping):
                raise RequestError(
                    f"request {number} of the batch is a {type(request).__name__}, not a mapping"
                )
        return {name: [request.get(name) for request in batch] for name in fields}, len(batch)
    raise RequestError(
        f"a batch is a mapping of columns, a DataFrame or a list of requests, not "
        f"{type(batch).__name__}"
    )


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
        self.compiled_fallbacks = 0  # versions loaded whose compiled model could not be served
        self.defaulted: Counter[str] = Counter()  # values answered with the default, by field
        self._model: ServingModel | None = None
        self._refused: str | None = None  # a version already refused: not retried
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
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

    def status(self) -> dict[str, Any]:
        """What an ad server exports: served version and engine, fallbacks, defaulted values."""
        model = self.model
        with self._count_lock:
            defaulted = dict(self.defaulted)
        return {
            "version": model.version,
            "engine": model.engine,
            "compiled_fallback_reason": model.fallback_reason,
            "compiled_fallbacks": self.compiled_fallbacks,
            "defaulted": defaulted,
            "last_error": self.last_error,
        }

    def refresh(self) -> bool:
        """Load the published version if it is new and valid; True when the model changed."""
        with self._lock:
            return self._refresh()

    def _refresh(self) -> bool:
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
            if model.compiled is None:
                self.compiled_fallbacks += 1
                log.warning(
                    "CTR model version %s: serving the LightGBM text model, not the compiled "
                    "one (%s); scoring is several times slower until a good push",
                    version,
                    model.fallback_reason,
                )
            self._model, self.last_error = model, None  # one assignment: callers see either
            log.info("serving CTR model version %s (%s)", version, model.engine)
            return True
        return False

    def _maybe_refresh(self) -> ServingModel:
        if time.monotonic() - self._checked_at >= self.reload_interval and self._lock.acquire(
            blocking=False
        ):
            try:
                self._refresh()
            finally:
                self._lock.release()
        return self._model  # type: ignore[return-value]  # the constructor guarantees one

    def _count(self, defaulted: Mapping[str, int] | list[str]) -> None:
        with self._count_lock:
            self.defaulted.update(defaulted)

    def score(self, request: Mapping[str, Any]) -> float:
        """The click probability of one request."""
        probability, defaulted = self._maybe_refresh().score_one(request)
        if defaulted:
            self._count(defaulted)
        return probability

    def score_batch(self, batch: Any) -> np.ndarray:
        """Click probabilities of a batch: columns (a mapping of arrays or sequences, an Arrow
        table, a DataFrame; Arrow, categorical or NumPy string columns are the fastest) or a
        list of request dicts."""
        model = self._maybe_refresh()
        probabilities, defaulted = model.score_columns(
            *as_columns(batch, model.spec.request_fields)
        )
        if defaulted:
            self._count(defaulted)
        return probabilities

    def score_candidates(self, context: Mapping[str, Any], candidates: Any) -> np.ndarray:
        """Click probabilities of many candidate ads for one request: ``context`` holds the
        request's values (publisher, site, device, hour, ...), ``candidates`` one column per
        ad field (creative, campaign, ...); a field in both is taken from the candidates."""
        if not isinstance(context, Mapping):
            raise RequestError(f"the context is a mapping of fields, not {type(context).__name__}")
        model = self._maybe_refresh()
        columns, rows = as_columns(candidates, model.spec.request_fields)
        probabilities, defaulted = model.score_columns(ChainMap(columns, context), rows)  # type: ignore[arg-type]
        if defaulted:
            self._count(defaulted)
        return probabilities
