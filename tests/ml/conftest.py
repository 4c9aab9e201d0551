"""Shared CTR fixtures: a model trained (without MLflow) on the session's simulated Gold days
(the ``gold`` fixture of tests/conftest.py), for the serving tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
import pytest

from adplatform.settings import Settings
from ml.data import LABEL, load_training_set, split_by_time
from ml.features import fit_spec, training_matrix
from ml.scorer import MODEL_FILE, SPEC_FILE
from ml.train import TrainingParams, train_lightgbm
from tests.conftest import GOLD_DAYS as DAYS

DELAY = timedelta(hours=1)  # labels stay open this long (Silver's click window)


@dataclass
class Trained:
    split: object
    history: pd.DataFrame
    holdout: pd.DataFrame
    files: dict[str, bytes]


def train_bundle(settings: Settings, params: TrainingParams) -> Trained:
    frame, _ = load_training_set(settings, None, DAYS)
    split = split_by_time(frame)
    history = pd.concat([split.train, split.validation])
    spec = fit_spec(history)
    features = training_matrix(history, spec, DELAY)
    labels = history[LABEL].to_numpy()
    n = len(split.train)
    booster, _ = train_lightgbm(
        features.iloc[:n], labels[:n], features.iloc[n:], labels[n:], params
    )
    files = {MODEL_FILE: booster.model_to_string().encode(), SPEC_FILE: spec.to_json().encode()}
    return Trained(split, history, split.holdout, files)


@pytest.fixture(scope="session")
def trained(gold: Settings) -> Trained:
    """The default model, trained on the simulated days."""
    return train_bundle(gold, TrainingParams())


@pytest.fixture(scope="session")
def weak_bundle(gold: Settings) -> dict[str, bytes]:
    """A deliberately under-trained model (a few boosting rounds), with the same features."""
    return train_bundle(gold, TrainingParams(max_rounds=5, early_stopping_rounds=5)).files
