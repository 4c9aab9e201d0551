"""One training run, step by step: what the ``ctr_model_training`` DAG's tasks (and
``adplatform model train``) call.

build features → train → evaluate → gate → promote → push → verify. Steps hand each other a
work folder (features, holdout rows, the model bundle) and small JSON-able dicts (Airflow
XComs); everything a data scientist needs afterwards is in MLflow. The steps that talk to
MLflow take ``tracking_uri``: an Airflow task passes the one its connection (``mlflow_default``)
resolves to; without it they use the settings' (the CLI, notebooks).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import infer_signature

from adplatform.lakehouse.tables import GOLD_CTR_TRAINING
from adplatform.settings import Settings
from ml import plots, registry
from ml.data import LABEL, ORACLE, load_training_set, split_by_time
from ml.errors import CtrModelError, SpecMismatch, TrainingDataError
from ml.features import SMOOTHING_STRENGTH, fit_spec, training_matrix
from ml.gate import GateConfig, decide
from ml.metrics import evaluate as holdout_metrics
from ml.scorer import MODEL_FILE, SPEC_FILE, CtrScorer, ServingModel
from ml.serving import publish, serving_store
from ml.train import HashedLogisticBaseline, TrainingParams, train_lightgbm

_VALIDATION = "_validation"
_VERIFY_ROWS = 1000


class Workspace:
    """The files one run's steps share, under ``<data_root>/ml/work/<key>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.history = root / "history.parquet"  # Gold rows of train + validation
        self.features = root / "features.parquet"  # their features, label, validation flag
        self.holdout = root / "holdout.parquet"  # Gold rows held out
        self.baseline = root / "baseline_holdout.npy"
        self.bundle = root / "bundle"  # model.txt + feature_spec.json

    @classmethod
    def for_run(cls, settings: Settings, key: str) -> Workspace:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return cls(settings.ml_work_dir / safe)

    def bundle_files(self) -> dict[str, bytes]:
        return {name: (self.bundle / name).read_bytes() for name in (MODEL_FILE, SPEC_FILE)}

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def label_delay(settings: Settings) -> timedelta:
    """How long an impression's label stays open: Silver attributes clicks within this window."""
    return timedelta(minutes=settings.transform_click_window_minutes)


def build_features(
    settings: Settings, work: Workspace, end: date | None = None, lookback_days: int | None = None
) -> dict[str, Any]:
    """Read the Gold partitions, split by time, fit the feature spec, write the features."""
    frame, version = load_training_set(settings, end, lookback_days or settings.ctr_lookback_days)
    split = split_by_time(frame)
    history = pd.concat([split.train, split.validation])
    spec = fit_spec(history)
    features = training_matrix(history, spec, label_delay(settings))
    features[LABEL] = history[LABEL].to_numpy()
    features[_VALIDATION] = np.arange(len(history)) >= len(split.train)
    work.bundle.mkdir(parents=True, exist_ok=True)
    history.to_parquet(work.history, index=False)
    features.to_parquet(work.features, index=False)
    split.holdout.to_parquet(work.holdout, index=False)
    (work.bundle / SPEC_FILE).write_text(spec.to_json())
    return {
        "work_dir": str(work.root),
        "data_version": asdict(version),
        "rows": {
            "train": len(split.train),
            "validation": len(split.validation),
            "holdout": len(split.holdout),
        },
        "holdout_start": split.holdout["event_time"].iloc[0].isoformat(),
    }


def train(
    settings: Settings,
    work: Workspace,
    built: dict[str, Any],
    params: TrainingParams | None = None,
    *,
    tracking_uri: str | None = None,
) -> dict[str, str]:
    """Train LightGBM and the baseline, log the run, register the model as ``challenger``."""
    params = params or TrainingParams()
    client = registry.connect(settings, tracking_uri)
    mlflow.set_experiment(registry.EXPERIMENT)
    data = built["data_version"]
    partitions = data["partitions"]
    features = pd.read_parquet(work.features)
    is_validation = features.pop(_VALIDATION).to_numpy()
    labels = features.pop(LABEL).to_numpy()
    with mlflow.start_run(run_name=f"ctr {partitions[0]}..{partitions[-1]}") as run:
        mlflow.log_params(
            params.as_params()
            | {
                "data_partitions": f"{partitions[0]}..{partitions[-1]} ({len(partitions)})",
                "data_fingerprint": data["fingerprint"][:16],
                "rows_train": built["rows"]["train"],
                "rows_validation": built["rows"]["validation"],
                "rows_holdout": built["rows"]["holdout"],
                "holdout_start": built["holdout_start"],
                "features": len(features.columns),
                "ctr_smoothing_strength": SMOOTHING_STRENGTH,
                "ctr_label_delay_minutes": settings.transform_click_window_minutes,
            }
        )
        mlflow.set_tag("data.fingerprint", data["fingerprint"])
        mlflow.log_dict(data, "data_version.json")
        holdout = pd.read_parquet(work.holdout)
        history = pd.read_parquet(work.history)
        # Described, not profiled: MLflow's own profiling scans every value (minutes at 10^7).
        gold = MetaDataset(  # type: ignore[abstract]  # profile is optional at runtime
            resolve_dataset_source(str(GOLD_CTR_TRAINING.path(settings))),
            name="gold_ctr_training",
            digest=data["fingerprint"][:20],
            schema=infer_signature(holdout.head(1000)).inputs,
        )
        mlflow.log_input(
            gold,
            context="training",
            tags={"partitions": ",".join(partitions), "holdout_start": built["holdout_start"]},
        )

        booster, best_round = train_lightgbm(
            features[~is_validation],
            labels[~is_validation],
            features[is_validation],
            labels[is_validation],
            params,
        )
        (work.bundle / MODEL_FILE).write_text(booster.model_to_string())
        validation = np.asarray(booster.predict(features[is_validation]))
        mlflow.log_metric("best_round", best_round)
        mlflow.log_metrics(
            {
                f"validation_{k}": v
                for k, v in holdout_metrics(labels[is_validation], validation).items()
            }
        )
        mlflow.log_figure(plots.feature_importance(booster), "plots/feature_importance.png")

        baseline = HashedLogisticBaseline().fit(history)
        np.save(work.baseline, baseline.predict(holdout))

        model = ServingModel.from_files(work.bundle_files(), {"version": "candidate"})
        example = holdout[model.spec.request_fields].head(100)
        version = registry.log_model(work.bundle, example, model.predict(example))
        client.set_registered_model_alias(registry.MODEL_NAME, registry.CHALLENGER, version.version)
    return {"run_id": run.info.run_id, "model_version": str(version.version)}


def evaluate(
    settings: Settings,
    work: Workspace,
    trained: dict[str, str],
    *,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Holdout metrics of the challenger, the champion (same rows), the baseline and the oracle."""
    client = registry.connect(settings, tracking_uri)
    holdout = pd.read_parquet(work.holdout)
    baseline = np.load(work.baseline)
    champion = registry.aliased_version(client, registry.CHAMPION)
    if champion is not None and champion.version == trained["model_version"]:
        champion = None
    if champion is not None:
        # The champion trained on the rows before its own holdout: scored on those it would look
        # better than it is, so everyone is compared on the rows after them (a challenger
        # trained on an older window, end_date set by hand, has its holdout cut short).
        unseen_from = pd.Timestamp(
            client.get_run(str(champion.run_id)).data.params["holdout_start"]
        )
        unseen = (holdout["event_time"] >= unseen_from).to_numpy()
        if holdout.loc[unseen, LABEL].nunique() < 2:
            raise TrainingDataError(
                f"the champion (version {champion.version}) trained on the rows before "
                f"{unseen_from}, and this run's holdout has too few rows after that to compare "
                "the two (both classes needed): pick a later end_date, or compare by hand"
            )
        holdout, baseline = holdout[unseen].reset_index(drop=True), baseline[unseen]
    labels = holdout[LABEL].to_numpy()
    predictions = {
        "challenger": ServingModel.from_files(work.bundle_files(), {}).predict(holdout),
        "baseline": baseline,
    }
    if champion is not None:
        files = registry.download_bundle(champion.version)
        predictions["champion"] = ServingModel.from_files(files, {}).predict(holdout)
    if holdout[ORACLE].notna().all():
        predictions["oracle"] = holdout[ORACLE].to_numpy()
    metrics = {name: holdout_metrics(labels, p) for name, p in predictions.items()}
    with mlflow.start_run(run_id=trained["run_id"]):
        for name, values in metrics.items():
            prefix = "holdout_" if name == "challenger" else f"{name}_holdout_"
            mlflow.log_metrics({prefix + k: v for k, v in values.items()})
        if "champion" in metrics:
            mlflow.set_tag("gate.champion_version", champion.version if champion else "")
        mlflow.log_figure(plots.roc(labels, predictions), "plots/roc.png")
        mlflow.log_figure(plots.calibration(labels, predictions), "plots/calibration.png")
    return {
        "metrics": metrics,
        "champion_version": champion.version if "champion" in metrics and champion else None,
    }


def gate(
    settings: Settings,
    trained: dict[str, str],
    evaluated: dict[str, Any],
    *,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Decide whether the challenger becomes champion; record the decision and its numbers."""
    client = registry.connect(settings, tracking_uri)
    config = GateConfig(settings.ctr_min_improvement, settings.ctr_max_calibration_deviation)
    metrics = evaluated["metrics"]
    decision = decide(metrics["challenger"], metrics.get("champion"), config)
    tags = {
        "gate.decision": decision.label,
        "gate.reason": decision.reason,
        "gate.reference": decision.reference,
        "gate.min_improvement": str(config.min_improvement),
        "gate.max_calibration_deviation": str(config.max_calibration_deviation),
    }
    for key, value in tags.items():
        client.set_tag(trained["run_id"], key, value)
        client.set_model_version_tag(registry.MODEL_NAME, trained["model_version"], key, value)
    return {"promote": decision.promote, "reason": decision.reason}


def promote(settings: Settings, trained: dict[str, str], *, tracking_uri: str | None = None) -> str:
    """Make the challenger the champion (safe to repeat)."""
    client = registry.connect(settings, tracking_uri)
    client.set_registered_model_alias(
        registry.MODEL_NAME, registry.CHAMPION, trained["model_version"]
    )
    challenger = registry.aliased_version(client, registry.CHALLENGER)
    if challenger is not None and challenger.version == trained["model_version"]:
        client.delete_registered_model_alias(registry.MODEL_NAME, registry.CHALLENGER)
    return trained["model_version"]


def push(
    settings: Settings, model_version: str, *, tracking_uri: str | None = None
) -> dict[str, Any]:
    """Publish a registered version's bundle to the serving tier (atomically, idempotently)."""
    client = registry.connect(settings, tracking_uri)
    files = registry.download_bundle(model_version)
    version = client.get_model_version(registry.MODEL_NAME, model_version)
    run = client.get_run(version.run_id) if version.run_id else None
    manifest = publish(
        serving_store(settings),
        model_version,
        files,
        run_id=version.run_id,
        data_fingerprint=run.data.tags.get("data.fingerprint") if run else None,
        holdout_metrics={
            k.removeprefix("holdout_"): v
            for k, v in (run.data.metrics if run else {}).items()
            if k.startswith("holdout_")
        },
    )
    client.set_model_version_tag(
        registry.MODEL_NAME, model_version, "serving.checksum", manifest["checksum"]
    )
    return {"version": manifest["version"], "checksum": manifest["checksum"]}


def verify(settings: Settings, work: Workspace, pushed: dict[str, Any]) -> dict[str, Any]:
    """A fresh scorer serves the pushed version and scores held-out rows as training did."""
    scorer = CtrScorer(serving_store(settings))
    if scorer.version != pushed["version"]:
        raise CtrModelError(
            f"the scorer serves version {scorer.version}, not the pushed {pushed['version']}: "
            f"{scorer.last_error or 'another push may have overtaken this one'}"
        )
    rows = pd.read_parquet(work.holdout).head(_VERIFY_ROWS)
    served = scorer.score_batch({c: rows[c].tolist() for c in scorer.model.spec.request_fields})
    trained = ServingModel.from_files(work.bundle_files(), {}).predict(rows)
    if not np.allclose(served, trained, rtol=1e-9, atol=1e-12):
        raise SpecMismatch(
            f"the served version {scorer.version} scores held-out rows differently from the "
            "trained model: training/serving skew; roll back with `adplatform model rollback`"
        )
    return {"version": scorer.version, "rows_checked": len(rows)}


def run_all(
    settings: Settings,
    work: Workspace,
    end: date | None = None,
    lookback_days: int | None = None,
    params: TrainingParams | None = None,
    *,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Every step in order, as the DAG runs them; for the CLI, the benchmark and notebooks."""
    uri = tracking_uri
    try:
        built = build_features(settings, work, end, lookback_days)
        trained = train(settings, work, built, params, tracking_uri=uri)
        evaluated = evaluate(settings, work, trained, tracking_uri=uri)
        decision = gate(settings, trained, evaluated, tracking_uri=uri)
        summary: dict[str, Any] = trained | decision | {"metrics": evaluated["metrics"]}
        if decision["promote"]:
            promote(settings, trained, tracking_uri=uri)
            summary["pushed"] = push(settings, trained["model_version"], tracking_uri=uri)
            verify(settings, work, summary["pushed"])
        return summary
    finally:
        work.remove()
