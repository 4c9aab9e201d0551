"""The transform's spark-submit step, with the Spark provider imported only when it runs.

The provider's modules import the Kubernetes client libraries when they are imported (about
3.5 s of CPU), so a DAG file that imports SparkSubmitOperator pays that on every parse: each of
the transform's task starts and every pass of the DAG processor. This operator takes the same
arguments and, when it runs, hands them to the provider's SparkSubmitHook, which does the job
as SparkSubmitOperator does in client mode (the deploy mode of ``spark_default``): it runs
spark-submit, streams its log, fails on a non-zero exit and kills it when the task is stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
    from airflow.sdk import Context


class SparkJobOperator(BaseOperator):
    template_fields: Sequence[str] = ("application", "application_args", "conf", "name")

    def __init__(
        self,
        *,
        application: str,
        application_args: list[Any],
        conf: dict[str, str],
        name: str,
        conn_id: str = "spark_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.application = application
        self.application_args = application_args
        self.conf = conf
        self.name = name
        self.conn_id = conn_id
        self._hook: SparkSubmitHook | None = None

    def execute(self, context: Context) -> None:
        from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

        self._hook = SparkSubmitHook(
            conf=self.conf,
            conn_id=self.conn_id,
            name=self.name,
            application_args=self.application_args,
        )
        self._hook.submit(self.application)

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.on_kill()
