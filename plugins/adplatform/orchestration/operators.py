"""The transform's Spark step: a Spark Connect client of the long-lived server, or, for a batch
backfill that should not share that server, a spark-submit application of its own.

Spark Connect (``spark="connect"``, the default): the task runs the job's function against a
remote session on the provider's ``spark_connect_default`` connection (SparkConnectHook's URL),
so the task starts no JVM and pays no Spark start-up; the server keeps one warm. spark-submit
(``spark="submit"``): the provider's SparkSubmitHook runs ``spark_jobs/<job>.py`` on
``spark_default`` as SparkSubmitOperator does in client mode, with a JVM and session per job.

The provider is imported only when the task runs: its spark-submit module imports the
Kubernetes client libraries (about 3.5 s of CPU), which a DAG file would pay on every parse.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
    from airflow.sdk import Context

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
