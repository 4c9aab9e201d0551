"""The figures every training run logs: ROC curves, a reliability diagram, feature importance."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on workers

import lightgbm as lgb
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from ml.metrics import CALIBRATION_BINS


def roc(labels: np.ndarray, predictions: dict[str, np.ndarray]) -> Figure:
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    for name, scores in predictions.items():
        false_positive, true_positive, _ = roc_curve(labels, scores)
        axes.plot(false_positive, true_positive, label=name)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="Holdout ROC")
    axes.legend(loc="lower right")
    return figure


def calibration(labels: np.ndarray, predictions: dict[str, np.ndarray]) -> Figure:
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    top = 0.0
    for name, scores in predictions.items():
        bins = np.array_split(np.argsort(scores, kind="stable"), CALIBRATION_BINS)
        predicted = [scores[b].mean() for b in bins]
        observed = [labels[b].mean() for b in bins]
        axes.plot(predicted, observed, marker="o", label=name)
        top = max(top, *predicted, *observed)
    axes.plot([0, top], [0, top], color="grey", linestyle=":")
    axes.set(
        xlabel="predicted CTR (bin mean)",
        ylabel="observed CTR",
        title=f"Holdout calibration ({CALIBRATION_BINS} equal-size bins)",
    )
    axes.legend(loc="upper left")
    return figure


def feature_importance(booster: lgb.Booster) -> Figure:
    gains = booster.feature_importance(importance_type="gain")
    order = np.argsort(gains)
    names = np.array(booster.feature_name())[order]
    figure = Figure(figsize=(6, 0.3 * len(names) + 1))
    axes = figure.subplots()
    axes.barh(names, gains[order] / gains.sum())
    axes.set(xlabel="share of total gain", title="Feature importance")
    figure.tight_layout()
    return figure
