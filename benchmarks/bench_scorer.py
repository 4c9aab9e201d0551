"""The CTR serving tier: the scorer against LightGBM's predict and the compiled model alone.

The champion the ``ctr`` benchmark trains (the default window, ``ADP_CTR_LOOKBACK_DAYS``, of
simulated traffic; LightGBM's default settings) is pushed as the pipeline pushes it (compiled,
verified) and served by ``CtrScorer``. On the same held-out rows, one thread:

- one request: the scorer (request dict in, probability out) against LightGBM's predict on the
  already-encoded row and the compiled model called directly on it (p50, p99);
- batches of 1, 100 and 10,000 rows: the scorer (columns of Python values in) against
  LightGBM's predict and the compiled model on the already-encoded matrix (rows/s);
- candidate ranking: one request's context and 100 candidate ads per call.

Targets (issue 17): batches >= 10x LightGBM and >= 1M rows/s; one request p50 <= 10 us.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import Context, Result, timed
from ml import pipeline
from ml.data import LABEL
from ml.scorer import MODEL_FILE, SPEC_FILE, CtrScorer
from ml.serving import publish
from ml.simulated_gold import write_simulated_ctr_training
from ml.store import LocalServingStore
from ml.train import TrainingParams, train_lightgbm

NAME = "scorer"
REQUESTS_PER_DAY = 200_000  # as the ctr benchmark: the same champion
SINGLE_REQUESTS = 2_000
SINGLE_PASSES = 5
BATCH_SIZES = (1, 100, 10_000)
ROWS_PER_SIZE = 30_000  # rows scored per batch size (batches of 1: 30,000 calls)
CANDIDATES = 100
AD_FIELDS = ("advertiser_id", "campaign_id", "line_item_id", "creative_id", "ad_size")


def run(ctx: Context) -> list[Result]:
    settings = ctx.settings
    write_simulated_ctr_training(
        settings, date(2026, 3, 2), settings.ctr_lookback_days, REQUESTS_PER_DAY
    )
    work = pipeline.Workspace.for_run(settings, "bench-scorer")
    try:
        pipeline.build_features(settings, work)
        features = pd.read_parquet(work.features)
        validation = features.pop("_validation").to_numpy()
        labels = features.pop(LABEL).to_numpy()
        booster, _ = train_lightgbm(
            features[~validation],
            labels[~validation],
            features[validation],
            labels[validation],
            TrainingParams(),
        )
        files = {
            MODEL_FILE: booster.model_to_string().encode(),
            SPEC_FILE: (work.bundle / SPEC_FILE).read_bytes(),
        }
        holdout = pd.read_parquet(work.holdout)
    finally:
        work.remove()
    store = LocalServingStore(ctx.root / "serving" / "ctr_model")
    push_seconds = timed(lambda: publish(store, "1", files))[0]
    scorer = CtrScorer(store, reload_interval=3600)
    if scorer.model.compiled is None:
        raise RuntimeError(f"the compiled model is not served: {scorer.model.fallback_reason}")
    details = {
        "trees": booster.num_trees(),
        "push_seconds_compile_and_verify": push_seconds,
        "load_average": os.getloadavg(),
    }
    rows = holdout[scorer.model.spec.request_fields]
    return _single(scorer, rows, details) + _batches(scorer, rows) + _candidates(scorer, rows)


def _percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1]


def _latencies(call: Callable[[int], Any], count: int) -> list[float]:
    samples = []
    for _ in range(SINGLE_PASSES):
        for i in range(count):
            started = time.perf_counter()
            call(i)
            samples.append((time.perf_counter() - started) * 1e6)
    return samples


def _single(scorer: CtrScorer, rows: pd.DataFrame, details: dict[str, Any]) -> list[Result]:
    model = scorer.model
    assert model.compiled is not None
    requests = rows.head(SINGLE_REQUESTS).to_dict("records")
    encoded = model.encoder.encode(rows.head(SINGLE_REQUESTS), len(requests))[0]
    encoded_rows = [np.ascontiguousarray(encoded[i : i + 1]) for i in range(len(requests))]
    row_pointers = [r.ctypes.data_as(ctypes.POINTER(ctypes.c_double)) for r in encoded_rows]
    out = (ctypes.c_double * 1)()
    entry = model.compiled.entry
    served = _latencies(lambda i: scorer.score(requests[i]), len(requests))
    native = _latencies(
        lambda i: model.booster.predict(encoded_rows[i], num_threads=1), len(requests)
    )
    compiled = _latencies(lambda i: entry(row_pointers[i], out, 0, 1), len(requests))
    limits = {
        "compiled model direct p50 us": _percentile(compiled, 50),
        "compiled model direct p99 us": _percentile(compiled, 99),
    }
    return [
        Result(
            NAME,
            "scorer p50, one request (dict in)",
            _percentile(served, 50),
            "µs",
            "LightGBM predict p50, encoded row",
            _percentile(native, 50),
            higher_is_better=False,
            target="<= 10 µs",
            details=details | limits,
        ),
        Result(
            NAME,
            "scorer p99, one request (dict in)",
            _percentile(served, 99),
            "µs",
            "LightGBM predict p99, encoded row",
            _percentile(native, 99),
            higher_is_better=False,
            details=limits,
        ),
        Result(
            NAME,
            "compiled model called directly p50, encoded row (the limit)",
            _percentile(compiled, 50),
            "µs",
            "LightGBM predict p50, encoded row",
            _percentile(native, 50),
            higher_is_better=False,
        ),
    ]


def _rate(call: Callable[[Any], Any], batches: list[Any], rows: int) -> float:
    return rows / timed(lambda: [call(b) for b in batches])[0]


def _batches(scorer: CtrScorer, rows: pd.DataFrame) -> list[Result]:
    model = scorer.model
    assert model.compiled is not None
    results = []
    for size in BATCH_SIZES:
        count = ROWS_PER_SIZE // size
        chunks = [rows.iloc[(b * size) % (len(rows) - size) :][:size] for b in range(count)]
        columns = [{c: chunk[c].tolist() for c in chunk.columns} for chunk in chunks]
        matrices = [model.encoder.encode(chunk, size)[0] for chunk in chunks]
        rows_scored = count * size
        served = _rate(scorer.score_batch, columns, rows_scored)
        native = _rate(lambda m: model.booster.predict(m, num_threads=1), matrices, rows_scored)
        compiled = _rate(model.compiled.predict, matrices, rows_scored)
        results += [
            Result(
                NAME,
                f"scorer, batches of {size:,} (columns in)",
                served,
                "rows/s",
                "LightGBM predict, encoded batches",
                native,
                target=">= 10x and >= 1M rows/s",
                details={"compiled model direct rows/s": compiled},
            ),
            Result(
                NAME,
                f"scorer, batches of {size:,} (columns in)",
                served,
                "rows/s",
                "compiled model called directly, encoded batches (the limit)",
                compiled,
            ),
        ]
    return results


def _candidates(scorer: CtrScorer, rows: pd.DataFrame) -> list[Result]:
    model = scorer.model
    assert model.compiled is not None
    count = ROWS_PER_SIZE // CANDIDATES
    requests = rows.head(count).to_dict("records")
    contexts = [{k: v for k, v in r.items() if k not in AD_FIELDS} for r in requests]
    ads = [
        {k: rows[k].iloc[i * CANDIDATES :][:CANDIDATES].tolist() for k in AD_FIELDS}
        for i in range(count)
    ]
    matrices = [
        model.encoder.encode(ad | context, CANDIDATES)[0]
        for ad, context in zip(ads, contexts, strict=True)
    ]
    served = timed(
        lambda: [scorer.score_candidates(c, a) for c, a in zip(contexts, ads, strict=True)]
    )[0]
    compiled = _rate(model.compiled.predict, matrices, count * CANDIDATES)
    return [
        Result(
            NAME,
            f"scorer, candidate ranking: {CANDIDATES} ads per request",
            count * CANDIDATES / served,
            "rows/s",
            "compiled model called directly, encoded candidates",
            compiled,
        )
    ]
