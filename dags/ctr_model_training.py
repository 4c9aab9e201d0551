"""
### ctr_model_training

**Purpose.** Retrain the click-through-rate model on the Gold CTR training set and, when it is
better, hand it to the ad servers: build features → train (LightGBM and the hashed logistic
baseline, logged to MLflow, registered as `ctr_model@challenger`) → evaluate on the time-based
holdout (challenger, current champion, baseline, oracle) → gate → promote (`@champion`) →
push the serving artifact → verify that a fresh scorer serves it and scores as training did.
A rejected challenger stops at the gate (the rest is skipped): the decision and its numbers
are on the MLflow run and model version (`gate.*` tags) and nothing is pushed.

Runs daily at 04:00 UTC, and whenever the Gold CTR training set is rewritten. Trigger with
`end_date` / `lookback_days` to train on another window; `adplatform model train` does the
same from a shell. Emits `ctr_model_champion` when it pushes. Guide: `ml/README.md`.

**Owner:** ml-platform.

### Triage
- `build_features` failed: the message names the partitions and the problem (none in the
  window, off-contract columns, no clicks / one class). Fix the Gold job upstream and re-run.
- `train` / `evaluate` failed to reach MLflow: `adplatform stack status` (locally) or the
  MLflow service, and the `mlflow_default` connection (its host is the tracking URI);
  re-running the task is safe.
- The gate skipped the rest: expected when the challenger is not better; read the run's
  `gate.reason` tag in MLflow.
- `push` refused the bundle or `verify` reported skew: the serving tier kept the last good
  model; `adplatform model status` shows what is served, `adplatform model rollback` goes back
  one version.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import (
    DAG,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    task,
)

from adplatform.orchestration import Owner, Tag, dag_defaults
from adplatform.orchestration.assets import CTR_CHAMPION, GOLD_CTR_TRAINING

# The tracking server, as Airflow resolves this connection (never the ADP_* settings).
MLFLOW = "mlflow_default"

with DAG(
    dag_id="ctr_model_training",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 4 * * *", timezone="UTC"), assets=GOLD_CTR_TRAINING
    ),
    max_active_runs=1,
    doc_md=__doc__,
    params={
        "end_date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Last Gold partition to train on (YYYY-MM-DD); empty: the newest.",
        ),
        "lookback_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Partitions to read, ending at end_date; empty: ADP_CTR_LOOKBACK_DAYS.",
        ),
    },
    **dag_defaults(Owner.ML, Tag.ML, execution_timeout=timedelta(hours=2)),
):

    @task
    def build_features(*, params: dict[str, Any], run_id: str) -> dict[str, Any]:
        from datetime import date

        from adplatform.settings import get_settings
        from ml.pipeline import Workspace, build_features

        settings = get_settings()
        end = date.fromisoformat(params["end_date"]) if params["end_date"] else None
        work = Workspace.for_run(settings, run_id)
        return build_features(settings, work, end, params["lookback_days"])

    @task
    def train(built: dict[str, Any]) -> dict[str, str]:
        from pathlib import Path

        from adplatform.connections import mlflow_tracking_uri
        from adplatform.settings import get_settings
        from ml.pipeline import Workspace, train

        work = Workspace(Path(built["work_dir"]))
        return train(get_settings(), work, built, tracking_uri=mlflow_tracking_uri(MLFLOW))

    @task
    def evaluate(built: dict[str, Any], trained: dict[str, str]) -> dict[str, Any]:
        from pathlib import Path

        from adplatform.connections import mlflow_tracking_uri
        from adplatform.settings import get_settings
        from ml.pipeline import Workspace, evaluate

        work = Workspace(Path(built["work_dir"]))
        return evaluate(get_settings(), work, trained, tracking_uri=mlflow_tracking_uri(MLFLOW))

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def gate(trained: dict[str, str], evaluated: dict[str, Any]) -> bool:
        """Skips promote, push and verify unless the challenger passes."""
        from adplatform.connections import mlflow_tracking_uri
        from adplatform.settings import get_settings
        from ml.pipeline import gate

        uri = mlflow_tracking_uri(MLFLOW)
        decision = gate(get_settings(), trained, evaluated, tracking_uri=uri)
        print(f"gate: {decision['reason']}")
        return bool(decision["promote"])

    @task
    def promote(trained: dict[str, str]) -> str:
        from adplatform.connections import mlflow_tracking_uri
        from adplatform.settings import get_settings
        from ml.pipeline import promote

        return promote(get_settings(), trained, tracking_uri=mlflow_tracking_uri(MLFLOW))

    @task(outlets=[CTR_CHAMPION])
    def push(model_version: str) -> dict[str, Any]:
        from adplatform.connections import mlflow_tracking_uri
        from adplatform.settings import get_settings
        from ml.pipeline import push

        return push(get_settings(), model_version, tracking_uri=mlflow_tracking_uri(MLFLOW))

    @task
    def verify(built: dict[str, Any], pushed: dict[str, Any]) -> dict[str, Any]:
        from pathlib import Path

        from adplatform.settings import get_settings
        from ml.pipeline import Workspace, verify

        return verify(get_settings(), Workspace(Path(built["work_dir"])), pushed)

    @task
    def clean_up(*, run_id: str) -> None:
        """Remove the run's work folder whatever happened (MLflow keeps what matters)."""
        from adplatform.settings import get_settings
        from ml.pipeline import Workspace

        Workspace.for_run(get_settings(), run_id).remove()

    built = build_features()
    trained = train(built)
    evaluated = evaluate(built, trained)
    decided = gate(trained, evaluated)
    promoted = promote(trained)
    decided >> promoted
    verified = verify(built, push(promoted))
    verified >> clean_up().as_teardown(setups=built)
