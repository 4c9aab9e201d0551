"""The feature pipeline: from Gold rows to the model's matrix, and the spec the scorer uses.

Features (see ``ml/README.md``): every request dimension as a categorical code, hour of day
and day of week, the user's frequency (impressions earlier that day), and smoothed historical
CTRs of the creative, campaign, publisher, site and placement. A training row's historical CTR
counts only what was known when it was scored: impressions more than the label delay
(Silver's click window) before it, whose clicks had all arrived; never its own label, later
ones, or earlier ones still open. The spec freezes the counts at the end of the training data,
which is what the scorer, and so the holdout evaluation, see.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from adplatform.lakehouse.tables import GOLD_CTR_TRAINING
from ml.data import LABEL
from ml.spec import Feature, FeatureSpec

# Every request dimension of the Gold contract; not the impression or user ids (no
# generalisable signal, and unbounded vocabularies).
CATEGORICAL = tuple(
    f.name
    for f in GOLD_CTR_TRAINING.schema
    if pa.types.is_string(f.type) and f.name not in ("impression_id", "user_id_hash")
)
NUMERIC = ("hour_of_day", "day_of_week", "user_impressions_before")
HISTORICAL_CTR = ("creative_id", "campaign_id", "publisher_id", "site_id", "placement_id")
SMOOTHING_STRENGTH = 100.0  # pseudo-impressions at the overall CTR


def fit_spec(history: pd.DataFrame) -> FeatureSpec:
    """Vocabularies and frozen CTR counts from the training data (train + validation)."""
    prior = float(history[LABEL].mean())
    features = [
        Feature(name, "categorical", name, vocabulary=tuple(sorted(history[name].unique())))
        for name in CATEGORICAL
    ]
    features += [Feature(name, "numeric", name) for name in NUMERIC]
    for source in HISTORICAL_CTR:
        totals = history.groupby(source, observed=True)[LABEL].agg(["count", "sum"])
        counts = {
            str(value): (int(n), int(clicks))
            for value, n, clicks in zip(totals.index, totals["count"], totals["sum"], strict=True)
        }
        features.append(
            Feature(
                f"ctr_{source}",
                "smoothed_ctr",
                source,
                prior=prior,
                strength=SMOOTHING_STRENGTH,
                counts=counts,
            )
        )
    return FeatureSpec(tuple(features))


def training_matrix(
    history: pd.DataFrame, spec: FeatureSpec, label_delay: timedelta
) -> pd.DataFrame:
    """The model's features for training rows; historical CTRs from settled earlier rows only."""
    columns: dict[str, np.ndarray] = {}
    for feature in spec.features:
        values = history[feature.source]
        if feature.kind == "categorical":
            codes = pd.Categorical(values, categories=list(feature.vocabulary)).codes
            columns[feature.name] = np.where(codes >= 0, codes, np.nan)
        elif feature.kind == "numeric":
            columns[feature.name] = values.to_numpy(dtype=np.float64)
        else:
            impressions, clicks = _settled_before(history, feature.source, label_delay)
            columns[feature.name] = feature.smoothed(impressions, clicks)
    return pd.DataFrame(columns, index=history.index)


def _settled_before(
    history: pd.DataFrame, source: str, label_delay: timedelta
) -> tuple[np.ndarray, np.ndarray]:
    """For each row: the impressions and clicks of its ``source`` value that happened more than
    ``label_delay`` before it (an as-of lookup in the rows sorted by value, then time)."""
    codes = pd.factorize(history[source])[0].astype(np.int64)
    times = history["event_time"]
    offsets = ((times - times.min()) // pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.int64)
    span = int(offsets.max()) + 1  # (value, time) as one sortable integer
    order = np.argsort(codes * span + offsets, kind="stable")
    codes, offsets = codes[order], offsets[order]
    sorted_keys = codes * span + offsets
    delay_ms = label_delay // timedelta(milliseconds=1)
    # In this order the cut-offs ascend too, which keeps the search cache-friendly.
    settled = np.searchsorted(sorted_keys, codes * span + np.maximum(offsets - delay_ms, 0))
    first = np.concatenate(([0], np.cumsum(np.bincount(codes))))[codes]  # the value's first row
    clicks = np.concatenate(([0], np.cumsum(history[LABEL].to_numpy(dtype=np.int64)[order])))
    impressions_before, clicks_before = np.empty((2, len(order)))
    impressions_before[order] = settled - first
    clicks_before[order] = clicks[settled] - clicks[first]
    return impressions_before, clicks_before
