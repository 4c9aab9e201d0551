"""The two models: LightGBM on the feature pipeline, and the baseline it has to beat, a
logistic regression on the hashing trick over the raw request columns, fitted by SGD."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import SGDClassifier

from ml.data import LABEL
from ml.features import CATEGORICAL, NUMERIC


@dataclass(frozen=True)
class TrainingParams:
    """LightGBM's settings; the defaults suit anything from 10^5 to 10^7 impressions. Chosen by
    validation log loss on two weeks of simulated traffic (ml/README.md, "Models")."""

    learning_rate: float = 0.1
    num_leaves: int = 3  # click effects are mostly additive; 3 leaves still pair two features
    min_data_in_leaf: int = 500
    lambda_l2: float = 10.0
    max_rounds: int = 2000
    early_stopping_rounds: int = 100
    seed: int = 7
    # One thread: on a shared machine extra OpenMP threads spin and slow training down
    # tenfold; raise it on a dedicated training worker.
    threads: int = 1

    def lightgbm(self) -> dict[str, object]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,  # same data and params, same model: re-runs are idempotent
            "force_row_wise": True,
            "num_threads": self.threads,
            "verbose": -1,
        }

    def as_params(self) -> dict[str, object]:
        return asdict(self)


def train_lightgbm(
    train: pd.DataFrame,
    train_labels: np.ndarray,
    validation: pd.DataFrame,
    validation_labels: np.ndarray,
    params: TrainingParams,
) -> tuple[lgb.Booster, int]:
    """A booster trained with early stopping on the validation rows, cut at its best round."""
    train_set = lgb.Dataset(train, train_labels, free_raw_data=True)
    validation_set = lgb.Dataset(validation, validation_labels, reference=train_set)
    booster = lgb.train(
        params.lightgbm(),
        train_set,
        num_boost_round=params.max_rounds,
        valid_sets=[validation_set],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), best


class HashedLogisticBaseline:
    """Logistic regression over hashed ``column=value`` tokens of the raw request columns,
    fitted by stochastic gradient descent with scikit-learn's default regularisation: the
    classic large-scale CTR baseline (hashing trick + online-style logistic regression).

    Every value is its own token (hour, day and frequency included), nothing is engineered:
    the yardstick that shows what the feature pipeline and the trees add."""

    def __init__(self, buckets: int = 2**20, seed: int = 7) -> None:
        self.hasher = FeatureHasher(buckets, input_type="string", alternate_sign=False)
        self.model = SGDClassifier(loss="log_loss", random_state=seed)

    def _tokens(self, frame: pd.DataFrame) -> list[list[str]]:
        columns = [f"{name}=" + frame[name].astype(str) for name in (*CATEGORICAL, *NUMERIC)]
        return pd.concat(columns, axis=1).to_numpy().tolist()

    def fit(self, history: pd.DataFrame) -> HashedLogisticBaseline:
        self.model.fit(self.hasher.transform(self._tokens(history)), history[LABEL].to_numpy())
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(self.hasher.transform(self._tokens(frame)))[:, 1]
