"""The feature pipeline: from Gold rows to the model's matrix, and the spec the scorer uses.

Features (see ``ml/README.md``): every request dimension as a categorical code, hour of day
and day of week, the user's frequency (impressions earlier that day), and smoothed historical
CTRs of the creative, campaign, publisher, site and placement. A training row's historical CTR
counts only impressions before it, in time order (never its own label or later ones); the spec
freezes the counts at the end of the training data, which is what the scorer, and so the
holdout evaluation, see.
"""

from __future__ import annotations

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


def training_matrix(history: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The model's features for time-ordered training rows, CTRs from earlier rows only."""
    columns: dict[str, np.ndarray] = {}
    for feature in spec.features:
        values = history[feature.source]
        if feature.kind == "categorical":
            codes = pd.Categorical(values, categories=list(feature.vocabulary)).codes
            columns[feature.name] = np.where(codes >= 0, codes, np.nan)
        elif feature.kind == "numeric":
            columns[feature.name] = values.to_numpy(dtype=np.float64)
        else:
            labels = history[LABEL].astype(np.int64)  # int8 would overflow in the sums
            groups = labels.groupby(values, observed=True, sort=False)
            impressions_before = groups.cumcount().to_numpy(dtype=np.float64)
            clicks_before = (groups.cumsum() - labels).to_numpy(dtype=np.float64)
            columns[feature.name] = feature.smoothed(impressions_before, clicks_before)
    return pd.DataFrame(columns, index=history.index)
