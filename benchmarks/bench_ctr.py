"""CTR model: quality against the oracle, and training time (the scorer: bench_scorer.py).

1. The default training window (``ADP_CTR_LOOKBACK_DAYS``, 14 days) of simulated traffic, about
   2.2M impressions, goes through the whole training pipeline against a real MLflow server; the
   champion's holdout AUC and log loss are compared with the generator's true click
   probabilities on the same rows (the best any model can do). Target: AUC within 0.005 and log
   loss within 1% of the oracle. A yardstick shows how much of the gap is the data's size alone:
   the generator's own model family, fitted on the same training rows.
2. Training time on 5M rows (resampled from the training features), against the same training
   on 1M rows: the same number of boosting rounds, so the ratio shows how training scales.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from adplatform.testing.ctr_training import write_simulated_ctr_training
from benchmarks.harness import Context, Result, timed
from ml import pipeline
from ml.data import LABEL
from ml.train import TrainingParams, train_lightgbm

REQUESTS_PER_DAY = 200_000  # about 155,000 impressions and 4,300 clicks a day
TRAINING_ROWS = 5_000_000
REFERENCE_ROWS = 1_000_000
NAME = "ctr"


def run(ctx: Context) -> list[Result]:
    settings = ctx.service("mlflow")
    write_simulated_ctr_training(
        settings, date(2026, 3, 2), settings.ctr_lookback_days, REQUESTS_PER_DAY
    )
    work = pipeline.Workspace.for_run(settings, "bench")
    try:
        built = pipeline.build_features(settings, work)
        trained = pipeline.train(settings, work, built)
        evaluated = pipeline.evaluate(settings, work, trained)
        decision = pipeline.gate(settings, trained, evaluated)
        if not decision["promote"]:
            raise RuntimeError(f"the benchmark's model was not promoted: {decision['reason']}")
        pipeline.promote(settings, trained)
        pipeline.verify(settings, work, pipeline.push(settings, trained["model_version"]))
        results = _quality(evaluated["metrics"], built)
        results += _data_size_yardstick(work, evaluated["metrics"]["oracle"])
        results += _training_time(work)
    finally:
        work.remove()
    return results


def _quality(metrics: dict[str, dict[str, float]], built: dict[str, object]) -> list[Result]:
    model, oracle = metrics["challenger"], metrics["oracle"]
    details = {
        "rows": built["rows"],
        "model": model,
        "oracle": oracle,
        "baseline": metrics["baseline"],
    }
    return [
        Result(
            NAME,
            "champion holdout AUC",
            model["auc"],
            "",
            "oracle AUC",
            oracle["auc"],
            target=f"gap <= 0.005 (gap {oracle['auc'] - model['auc']:.4f})",
            details=details,
        ),
        Result(
            NAME,
            "champion holdout log loss",
            model["logloss"],
            "",
            "oracle log loss",
            oracle["logloss"],
            higher_is_better=False,
            target=f"ratio <= 1.01 (ratio {model['logloss'] / oracle['logloss']:.4f})",
        ),
    ]


# The factors of the generator's truth model (adplatform.events.catalog.TruthModel); its
# mobile x 320x50 term needs no column of its own: only mobile serves 320x50.
_TRUTH_FACTORS = ["creative_id", "publisher_id", "device_type", "ad_size", "country", "hour_of_day"]


def _data_size_yardstick(work: pipeline.Workspace, oracle: dict[str, float]) -> list[Result]:
    """The generator's own model family (one-hot factors + log frequency, additive in logit),
    fitted by maximum likelihood on the champion's training rows. Not a servable model (it
    knows the generator's structure): its gap to the oracle is what estimating the effects
    from this much data costs any model."""
    history = pd.read_parquet(work.history)
    is_validation = pd.read_parquet(work.features, columns=["_validation"])["_validation"]
    train = history[~is_validation.to_numpy()]
    holdout = pd.read_parquet(work.holdout)
    truth_family = make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), _TRUTH_FACTORS),
            (FunctionTransformer(np.log1p), ["user_impressions_before"]),
        ),
        LogisticRegression(max_iter=2000),
    ).fit(train, train[LABEL])
    auc = float(roc_auc_score(holdout[LABEL], truth_family.predict_proba(holdout)[:, 1]))
    return [
        Result(
            NAME,
            "yardstick: generator's model family fitted on the training rows, holdout AUC",
            auc,
            "",
            "oracle AUC",
            oracle["auc"],
            target=f"gap {oracle['auc'] - auc:.4f}: what the data's size alone costs",
        )
    ]


def _training_time(work: pipeline.Workspace) -> list[Result]:
    features = pd.read_parquet(work.features)
    validation = features.pop("_validation").to_numpy()
    labels = features.pop(LABEL).to_numpy()
    train_x, train_y = features[~validation], labels[~validation]
    rounds = TrainingParams().max_rounds // 10  # fixed: no early stopping, same work per row
    params = TrainingParams(max_rounds=rounds, early_stopping_rounds=rounds)
    rng = np.random.default_rng(7)

    def seconds(rows: int) -> float:
        sample = rng.integers(0, len(train_x), rows)
        return timed(
            lambda: train_lightgbm(
                train_x.iloc[sample],
                train_y[sample],
                features[validation],
                labels[validation],
                params,
            )
        )[0]

    reference = seconds(REFERENCE_ROWS)
    value = seconds(TRAINING_ROWS)
    return [
        Result(
            NAME,
            f"train {TRAINING_ROWS:,} rows ({rounds} rounds, {params.threads} thread)",
            value,
            "s",
            f"{REFERENCE_ROWS:,} rows",
            reference,
            higher_is_better=False,
            target="linear in rows (ratio ~5)",
        )
    ]
