"""MLflow: the experiment, the registered model ``ctr_model`` and its aliases.

``champion`` is the version the serving tier runs; ``challenger`` the newest candidate until
the gate decides. Each version is an MLflow pyfunc around the same two files the serving tier
gets (LightGBM model and feature spec), so ``mlflow.pyfunc.load_model("models:/ctr_model@
champion").predict(gold_rows)`` in a notebook scores exactly as the ad server does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException
from mlflow.pyfunc import PythonModel

from adplatform.connections import mlflow_tracking_uri
from adplatform.settings import Settings
from ml.scorer import MODEL_FILE, SPEC_FILE, ServingModel

EXPERIMENT = "ctr_model"
MODEL_NAME = "ctr_model"
CHAMPION = "champion"
CHALLENGER = "challenger"
_ARTIFACT_KEYS = {"model": MODEL_FILE, "feature_spec": SPEC_FILE}


class CtrPyfuncModel(PythonModel):
    """The serving bundle as an MLflow model: Gold rows (request fields) in, probabilities out."""

    def load_context(self, context: Any) -> None:
        files = {
            name: Path(context.artifacts[key]).read_bytes() for key, name in _ARTIFACT_KEYS.items()
        }
        self.model = ServingModel.from_files(files, {"version": "mlflow"})

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.model.predict({c: model_input[c].tolist() for c in model_input.columns})


def connect(settings: Settings, tracking_uri: str | None = None) -> MlflowClient:
    """Point MLflow's fluent API and a client at the tracking server: ``tracking_uri`` as an
    Airflow task resolved it from its connection, or else the settings' (outside Airflow)."""
    uri = tracking_uri or mlflow_tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def aliased_version(client: MlflowClient, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(MODEL_NAME, alias)
    except (RestException, MlflowException) as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def log_model(bundle_dir: Path, example: pd.DataFrame, predictions: Any) -> ModelVersion:
    """Log the bundle in ``bundle_dir`` to the active run and register it as a new version."""
    import lightgbm
    import numpy

    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=CtrPyfuncModel(),
        artifacts={key: str(bundle_dir / name) for key, name in _ARTIFACT_KEYS.items()},
        signature=mlflow.models.infer_signature(example, predictions),
        input_example=example.head(5),
        # Pinned here rather than inferred (inference imports the model in a subprocess).
        pip_requirements=[
            f"mlflow=={mlflow.__version__}",
            f"lightgbm=={lightgbm.__version__}",
            f"numpy=={numpy.__version__}",
            f"pandas=={pd.__version__}",
        ],
        registered_model_name=MODEL_NAME,
    )
    version = info.registered_model_version
    assert version is not None, "registered_model_name was given"
    return MlflowClient().get_model_version(MODEL_NAME, str(version))


def download_bundle(version: str) -> dict[str, bytes]:
    """The serving files of a registered version, as logged (after ``connect``)."""
    with tempfile.TemporaryDirectory(prefix="ctr-model-") as scratch:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{MODEL_NAME}/{version}", dst_path=scratch
            )
        )
        return {name: (local / "artifacts" / name).read_bytes() for name in _ARTIFACT_KEYS.values()}


def version_summary(client: MlflowClient, alias: str) -> dict[str, Any] | None:
    """An aliased version, its run's holdout metrics and gate decision, for status displays."""
    version = aliased_version(client, alias)
    if version is None:
        return None
    run = client.get_run(version.run_id) if version.run_id else None
    metrics = run.data.metrics if run else {}
    return {
        "version": version.version,
        "run_id": version.run_id,
        "holdout_auc": metrics.get("holdout_auc"),
        "holdout_logloss": metrics.get("holdout_logloss"),
        "gate": (run.data.tags.get("gate.decision") if run else None),
    }
