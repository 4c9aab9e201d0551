"""Training runs against the real MLflow server: what each run records, the promotion gate
both ways, push, and the `adplatform model` commands."""

from __future__ import annotations

from datetime import date

import pytest
from click.testing import CliRunner

from adplatform.cli import cli
from ml import registry
from ml.errors import TrainingDataError
from ml.pipeline import Workspace, run_all
from ml.scorer import CtrScorer, read_pointer
from ml.serving import serving_store
from ml.train import TrainingParams

pytestmark = pytest.mark.integration

WEAK = TrainingParams(max_rounds=5, early_stopping_rounds=5)


def _without_champion(client):
    if registry.aliased_version(client, registry.CHAMPION):
        client.delete_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION)


def test_promotion_gate_both_ways(gold, mlflow_server, tmp_path):
    client = registry.connect(gold)
    _without_champion(client)
    store = serving_store(gold)

    first = run_all(gold, Workspace(tmp_path / "first"))
    assert first["promote"], first["reason"]
    assert "better than the average CTR" in first["reason"]
    champion = registry.aliased_version(client, registry.CHAMPION)
    assert champion.version == first["model_version"]
    assert read_pointer(store)["version"] == first["model_version"]

    # A weaker challenger is rejected: recorded in MLflow, champion and serving untouched.
    weak = run_all(gold, Workspace(tmp_path / "weak"), params=WEAK)
    assert not weak["promote"]
    run = client.get_run(weak["run_id"])
    assert run.data.tags["gate.decision"] == "rejected"
    assert run.data.tags["gate.reason"] == weak["reason"]
    assert run.data.metrics["holdout_logloss"] > run.data.metrics["champion_holdout_logloss"]
    version = client.get_model_version(registry.MODEL_NAME, weak["model_version"])
    assert version.tags["gate.decision"] == "rejected"
    assert registry.aliased_version(client, registry.CHALLENGER).version == weak["model_version"]
    assert registry.aliased_version(client, registry.CHAMPION).version == first["model_version"]
    assert read_pointer(store)["version"] == first["model_version"]

    # With the weak model as champion, a better challenger replaces it and is served.
    client.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, weak["model_version"])
    better = run_all(gold, Workspace(tmp_path / "better"))
    assert better["promote"], better["reason"]
    assert "better than the champion" in better["reason"]
    assert better["pushed"]["version"] == better["model_version"]
    assert CtrScorer(store).version == better["model_version"]
    assert registry.aliased_version(client, registry.CHALLENGER) is None


def test_a_run_records_parameters_data_metrics_plots_and_the_model(gold, mlflow_server, tmp_path):
    client = registry.connect(gold)
    summary = run_all(gold, Workspace(tmp_path / "run"), params=WEAK)
    run = client.get_run(summary["run_id"])
    assert run.data.params["data_partitions"] == "2026-03-02..2026-03-05 (4)"
    assert run.data.params["learning_rate"] == str(WEAK.learning_rate)
    assert len(run.data.tags["data.fingerprint"]) == 64
    for prefix in ("holdout_", "baseline_holdout_", "oracle_holdout_", "validation_"):
        for metric in ("auc", "logloss", "normalized_entropy", "calibration_error"):
            assert prefix + metric in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {"plots/roc.png", "plots/calibration.png", "plots/feature_importance.png"}
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"gold_ctr_training"}
    # The registered model loads as a pyfunc and scores Gold rows like the serving tier.
    import mlflow
    import pandas as pd

    from ml.data import load_training_set

    rows, _ = load_training_set(gold, None, 1)
    model = mlflow.pyfunc.load_model(f"models:/{registry.MODEL_NAME}/{summary['model_version']}")
    assert model.metadata.signature is not None
    assert model.metadata.saved_input_example_info is not None
    predictions = model.predict(rows.head(20)[model.metadata.get_input_schema().input_names()])
    assert len(pd.Series(predictions)) == 20


def test_status_and_rollback_commands(gold, mlflow_server, stack_env):
    store = serving_store(gold)
    history = read_pointer(store)["history"]
    assert len(history) >= 2, "test_promotion_gate_both_ways pushes two versions"
    status = CliRunner().invoke(cli, ["model", "status"])
    assert status.exit_code == 0, status.output
    assert f"serving: version {history[-1]}" in status.output
    assert f"mlflow champion: version {history[-1]}" in status.output

    rolled = CliRunner().invoke(cli, ["model", "rollback"])
    assert rolled.exit_code == 0, rolled.output
    assert read_pointer(store)["version"] == history[-2]
    client = registry.connect(gold)
    assert registry.aliased_version(client, registry.CHAMPION).version == history[-2]
    assert CtrScorer(store).version == history[-2]

    refused = CliRunner().invoke(cli, ["model", "rollback", "--to", "999"])
    assert refused.exit_code == 1
    assert "version 999 was never served" in refused.output


def test_a_challenger_on_an_older_window_is_not_judged_on_rows_the_champion_trained_on(
    gold, mlflow_server, tmp_path
):
    client = registry.connect(gold)
    _without_champion(client)
    newest = run_all(gold, Workspace(tmp_path / "newest"))
    assert newest["promote"], newest["reason"]

    # end_date set by hand to the day before: this run's holdout lies inside the champion's
    # training rows, where the champion would look better than it is.
    with pytest.raises(TrainingDataError, match=r"the champion \(version \d+\) trained on"):
        run_all(gold, Workspace(tmp_path / "older"), end=date(2026, 3, 4))
    assert registry.aliased_version(client, registry.CHAMPION).version == newest["model_version"]
