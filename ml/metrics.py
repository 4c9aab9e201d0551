"""Holdout metrics of a click model (He et al., "Practical Lessons from Predicting Clicks on Ads
at Facebook", 2014): AUC, log loss, normalised entropy and calibration."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

CALIBRATION_BINS = 10


def evaluate(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """``auc``; ``logloss``; ``normalized_entropy`` (log loss over the entropy of the observed
    CTR: below 1 beats predicting the average); ``calibration`` (predicted over observed clicks,
    1 is perfect); ``calibration_error`` (expected calibration error over equal-size bins of
    predictions: the mean gap between predicted and observed CTR)."""
    labels = np.asarray(labels, dtype=np.float64)
    predictions = np.clip(np.asarray(predictions, dtype=np.float64), 1e-7, 1 - 1e-7)
    ctr = labels.mean()
    base_entropy = -(ctr * math.log(ctr) + (1 - ctr) * math.log(1 - ctr))
    loss = log_loss(labels, predictions, labels=[0, 1])
    order = np.argsort(predictions, kind="stable")
    bins = np.array_split(order, min(CALIBRATION_BINS, len(order)))
    ece = sum(
        len(b) / len(order) * abs(predictions[b].mean() - labels[b].mean()) for b in bins if len(b)
    )
    return {
        "auc": float(roc_auc_score(labels, predictions)),
        "logloss": float(loss),
        "normalized_entropy": float(loss / base_entropy),
        "calibration": float(predictions.sum() / labels.sum()),
        "calibration_error": float(ece),
    }
