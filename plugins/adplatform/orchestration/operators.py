"""The transform's Spark step: a Spark Connect client of the long-lived server, or, for a batch
backfill that should not share that server, a spark-submit application of its own.

Spark Connect (``spark="connect"``, the default): the task runs the job's function against a
remote session on the provider's ``spark_connect_default`` connection (SparkConnectHook's URL),
so the task starts no JVM and pays no Spark start-up; the server keeps one warm. spark-submit
(``spark="submit"``): the provider's SparkSubmitHook runs ``spark_jobs/<job>.py`` on
``spark_default`` as SparkSubmitOperator does in client mode, with a JVM and session per job.

The provider is imported only when the task runs: its spark-submit module imports the
Kubernetes client libraries (about 3.5 s of CPU), which a DAG file would pay on every parse.

The quality gates run in Airflow's triggerer, a long-lived process: QualityGateOperator starts
there (``start_from_trigger``) without a worker process, and its QualityGateTrigger evaluates
the gate in a thread and ends the task itself. Great Expectations (and pyspark, which it pulls
in) is imported once per triggerer, not once per gate; it is imported in that thread only, so
neither DAG parsing nor the triggerer's event loop waits for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.resources
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.definitions.xcom_arg import PlainXComArg
from airflow.sdk.exceptions import AirflowFailException
from airflow.triggers.base import (
    BaseTrigger,
    StartTriggerArgs,
    TaskFailedEvent,
    TaskSuccessEvent,
    TriggerEvent,
)
from airflow.utils.state import TaskInstanceState

if TYPE_CHECKING:
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
    from airflow.sdk import Context, XComArg

# The jobs ship in the distribution (the spark_jobs package): found wherever it is installed.
SPARK_JOBS = Path(str(importlib.resources.files("spark_jobs")))
SPARK_MODES = ("connect", "submit")


class SparkJobOperator(BaseOperator):
    template_fields: Sequence[str] = ("hours", "run_dir", "spark")

    def __init__(
        self,
        *,
        job: str,
        hours: str,
        run_dir: str,
        spark: str = "connect",
        connect_conn_id: str = "spark_connect_default",
        submit_conn_id: str = "spark_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not self.application_for(job).is_file():
            raise ValueError(f"unknown Spark job {job!r}: no {self.application_for(job)}")
        self.job = job
        self.hours = hours
        self.run_dir = run_dir
        self.spark = spark
        self.connect_conn_id = connect_conn_id
        self.submit_conn_id = submit_conn_id
        self._hook: SparkSubmitHook | None = None

    @staticmethod
    def application_for(job: str) -> Path:
        return SPARK_JOBS / f"{job}.py"

    def execute(self, context: Context) -> dict[str, Any] | None:
        if self.spark == "connect":
            return self._connect()
        if self.spark == "submit":
            self._submit()
            return None
        raise ValueError(f"spark={self.spark!r}: choose one of {', '.join(SPARK_MODES)}")

    def _connect(self) -> dict[str, Any]:
        from adplatform.connections import spark_connect_url
        from adplatform.transform.jobs import run_connected

        return run_connected(
            self.job, self.hours, self.run_dir, spark_connect_url(self.connect_conn_id)
        )

    def _submit(self) -> None:
        from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

        from adplatform.settings import get_settings
        from adplatform.transform.spark import spark_conf

        self._hook = SparkSubmitHook(
            conf=spark_conf(get_settings()),
            conn_id=self.submit_conn_id,
            name=f"adplatform-{self.job}",
            application_args=["--hours", self.hours, "--run-dir", self.run_dir],
        )
        self._hook.submit(str(self.application_for(self.job)))

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.on_kill()


GATE_LAYERS = ("bronze", "silver", "gold", "ctr_training")


def _evaluate_gate(layer: str, run_dir: str, run_id: str) -> tuple[str, str | None]:
    """Run the gate (in a thread of the triggerer): the Data Docs index, and the failure
    message (the failed expectations and their Data Docs pages) or None when it passed."""
    from adplatform.quality.gate import QualityGateFailed
    from adplatform.settings import get_settings
    from adplatform.transform import pipeline

    settings = get_settings()
    try:
        return pipeline.check(settings, layer, run_dir, run_id), None
    except QualityGateFailed as failed:
        return str(settings.quality_dir / "data_docs" / "index.html"), str(failed)


class QualityGateTrigger(BaseTrigger):
    """Evaluates one layer's gate of a run and ends its task: success after logging the Data
    Docs index, or failure after logging the failed expectations and their Data Docs pages."""

    def __init__(self, layer: str, run_dir: str, run_id: str) -> None:
        super().__init__()
        self.layer = layer
        self.run_dir = run_dir
        self.run_id = run_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{__name__}.{type(self).__name__}",
            {"layer": self.layer, "run_dir": self.run_dir, "run_id": self.run_id},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # A thread: the gate reads Parquet and validates for seconds, and the triggerer's event
        # loop serves every other trigger meanwhile.
        index, failure = await asyncio.to_thread(
            _evaluate_gate, self.layer, self.run_dir, self.run_id
        )
        if failure is None:
            self.log.info("quality gate %s passed; Data Docs: %s", self.layer, index)
            # No XCom: Airflow 3.3.2 stores a task-ending event's XComs JSON-encoded twice.
            yield TaskSuccessEvent()
        else:
            self.log.error("%s", failure)
            yield TaskFailedEvent()


def _pull(value: str | XComArg) -> str:
    """An XComArg as a template the triggerer can render. Its supervisor answers requests for
    one XCom only, so the pull names the map index: the sequence request of a plain xcom_pull
    (``str(xcom_arg)``) is refused there and the trigger would wait forever."""
    if isinstance(value, PlainXComArg):
        task_id, key = value.operator.task_id, value.key
        return f"{{{{ ti.xcom_pull(task_ids={task_id!r}, key={key!r}, map_indexes=-1) }}}}"
    if isinstance(value, str):
        return value
    raise TypeError(f"run_dir: {value!r} is neither a path nor an upstream task's output")


class QualityGateOperator(BaseOperator):
    """The quality gate of one layer (bronze, silver, gold or ctr_training) of a run.

    It starts in the triggerer and never on a worker; its trigger ends it. A failed gate fails
    without a retry: the data will not change on one (TaskFailedEvent retries a task that has
    retries left, so the operator has none; a gate that cannot run at all fails too, to be
    cleared once the cause is fixed). ``execute`` is the path of ``dag.test()``, which starts
    every task on its in-process worker and runs the trigger inline.
    """

    template_fields: Sequence[str] = ("run_dir", "run_id")
    start_from_trigger = True
    start_trigger_args = StartTriggerArgs(
        trigger_cls=f"{__name__}.QualityGateTrigger",
        next_method="execute_complete",
    )

    def __init__(
        self, *, layer: str, run_dir: str | XComArg, run_id: str = "{{ run_id }}", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs | {"retries": 0})
        if layer not in GATE_LAYERS:
            raise ValueError(
                f"unknown gate layer {layer!r}: choose one of {', '.join(GATE_LAYERS)}"
            )
        self.layer = layer
        self.run_dir = run_dir
        self.run_id = run_id
        # The triggerer renders these templates.
        self.start_trigger_args = dataclasses.replace(
            self.start_trigger_args,
            trigger_kwargs={"layer": layer, "run_dir": _pull(run_dir), "run_id": run_id},
        )

    def execute(self, context: Context) -> None:
        self.defer(
            trigger=QualityGateTrigger(self.layer, str(self.run_dir), self.run_id),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: Any = None) -> None:
        # What dag.test() resumes with: the task-ending event's state.
        if event != TaskInstanceState.SUCCESS:
            raise AirflowFailException(
                f"quality gate {self.layer} failed: the failed expectations and their Data Docs "
                "pages are in the log above"
            )
