"""Features, training and the baseline on simulated Gold data; bad training data refused."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from adplatform.lakehouse.io import atomic_write_parquet
from adplatform.lakehouse.tables import GOLD_CTR_TRAINING
from adplatform.settings import Settings
from adplatform.testing.ctr_training import simulated_day
from ml.data import LABEL, ORACLE, load_training_set
from ml.errors import TrainingDataError
from ml.features import training_matrix
from ml.metrics import evaluate
from ml.scorer import ServingModel
from ml.train import HashedLogisticBaseline
from tests.ml.conftest import DAYS, DELAY


def test_the_model_beats_the_baseline_on_the_holdout(trained):
    labels = trained.holdout[LABEL].to_numpy()
    model = evaluate(labels, ServingModel.from_files(trained.files, {}).predict(trained.holdout))
    baseline = evaluate(
        labels, HashedLogisticBaseline().fit(trained.history).predict(trained.holdout)
    )
    oracle = evaluate(labels, trained.holdout[ORACLE].to_numpy())
    assert model["logloss"] < baseline["logloss"], (model, baseline)
    assert model["normalized_entropy"] < 1  # better than predicting the average CTR
    assert abs(model["calibration"] - 1) < 0.1
    # Sanity of the yardstick: nothing beats the generator's true probabilities by much.
    assert model["logloss"] > oracle["logloss"] * 0.99


def test_the_data_version_names_the_partitions(gold):
    frame, version = load_training_set(gold, date(2026, 3, 4), 2)
    assert version.partitions == ("2026-03-03", "2026-03-04")
    assert version.rows == len(frame)
    assert frame["event_time"].is_monotonic_increasing
    again = load_training_set(gold, date(2026, 3, 4), 2)[1]
    assert again.fingerprint == version.fingerprint


def test_historical_ctrs_use_only_settled_earlier_impressions(trained):
    """A row's CTR counts only impressions whose clicks had all arrived when it was scored."""
    history = trained.history
    spec = ServingModel.from_files(trained.files, {}).spec
    features = training_matrix(history, spec, DELAY)
    first = history.groupby("creative_id", sort=False).head(1).index
    ctr = spec.features[spec.names.index("ctr_creative_id")]
    # Every creative's first impression sees no history: exactly the prior.
    assert np.allclose(features.loc[first, "ctr_creative_id"], ctr.prior)
    row = history.index[len(history) // 2]
    when, creative = history.loc[row, "event_time"], history.loc[row, "creative_id"]
    settled = history[(history["creative_id"] == creative) & (history["event_time"] < when - DELAY)]
    expected = ctr.smoothed(len(settled), settled[LABEL].sum())
    assert features.loc[row, "ctr_creative_id"] == pytest.approx(expected, rel=1e-12)
    # Labels still open at that time (within the delay), its own and later ones: no effect.
    flipped = history.copy()
    still_open = history["event_time"] >= when - DELAY
    flipped.loc[still_open, LABEL] = 1 - flipped.loc[still_open, LABEL]
    unchanged = training_matrix(flipped, spec, DELAY).loc[row, "ctr_creative_id"]
    assert unchanged == features.loc[row, "ctr_creative_id"]
    # Settled ones count.
    flipped.loc[settled.index, LABEL] = 1 - flipped.loc[settled.index, LABEL]
    assert training_matrix(flipped, spec, DELAY).loc[row, "ctr_creative_id"] != unchanged


def test_training_and_serving_encode_requests_alike(trained):
    """Everything but the historical CTRs (which serving freezes) is the same computation."""
    model = ServingModel.from_files(trained.files, {})
    rows = trained.history.tail(500)
    served, _ = model.encoder.encode(rows, len(rows))
    training = training_matrix(trained.history, model.spec, DELAY).tail(500).to_numpy()
    same = [i for i, f in enumerate(model.spec.features) if f.kind != "smoothed_ctr"]
    assert np.array_equal(served[:, same], training[:, same], equal_nan=True)
    one_by_one = [model.predict([r])[0] for r in rows.head(20).to_dict("records")]
    assert np.allclose(one_by_one, model.predict(rows.head(20)))


def _write_day(settings: Settings, day: date, table: pa.Table) -> None:
    path = GOLD_CTR_TRAINING.path(settings) / f"event_date={day}" / "part-0.parquet"
    atomic_write_parquet(table, path)


@pytest.mark.parametrize(
    ("bend", "message"),
    [
        (
            lambda t: t.set_column(
                t.schema.get_field_index(LABEL), LABEL, pc.multiply(t[LABEL], 0)
            ),
            "no clicks",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index(LABEL), LABEL, pc.add(pc.multiply(t[LABEL], 0), 1)
            ),
            "only clicks",
        ),
        (lambda t: t.slice(0, 0), "is empty"),
        (lambda t: t.drop_columns(["creative_id"]), "lacks the columns creative_id"),
    ],
    ids=["no-clicks", "one-class", "empty", "off-contract"],
)
def test_degenerate_training_data_is_refused(settings, bend, message):
    day = date(2026, 3, 2)
    _write_day(settings, day, bend(simulated_day(day, requests=3000)))
    with pytest.raises(TrainingDataError, match=message):
        load_training_set(settings, None, DAYS)


def test_no_gold_yet_names_the_dag_that_writes_it(settings):
    """What a notebook cell shows on a fresh stack: where the table would be and which DAG
    writes it."""
    with pytest.raises(
        TrainingDataError, match=r"ctr_training: the ad_lakehouse_ctr_training_set DAG"
    ):
        load_training_set(settings, None, DAYS)


def test_a_missing_window_is_refused_with_what_exists(gold):
    with pytest.raises(TrainingDataError, match=r"there are 2026-03-02\.\.2026-03-05"):
        load_training_set(gold, date(2025, 1, 1), 7)


def test_only_rows_whose_label_has_settled_are_trained_on(gold):
    """Clicks land up to the click window plus the late window after an impression: the newest
    hours of Gold are left out rather than counted as unclicked."""
    frame, _ = load_training_set(gold, None, DAYS)
    newest = pq.read_table(GOLD_CTR_TRAINING.path(gold))["event_time"].to_pandas().max()
    settle = timedelta(
        minutes=gold.transform_click_window_minutes + gold.transform_late_window_minutes
    )
    assert frame["event_time"].max() <= newest - settle
    assert frame["event_time"].max() > newest - settle - timedelta(minutes=5)  # no more than that
