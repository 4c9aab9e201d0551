"""Airflow's REST API for the demo, the CLI, the benchmarks and the tests: the official client
(``apache-airflow-client``, of the server's version) logged in as one user, plus the waits its
generated API has no call for.

Calls go straight to the generated API classes (``client.dag_runs.get_dag_run(...)``); a refusal
raises the client's ``ApiException`` with the HTTP status in ``status``. Airflow 3 hands out a
JWT at ``POST /auth/token`` (the auth manager's endpoint, outside the versioned API), which the
client sends as its bearer token: it logs in on the first call and again when a token is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import urllib3
from airflow_client.client import (
    ApiClient,
    AssetApi,
    Configuration,
    ConnectionApi,
    DAGApi,
    DagRunApi,
    HITLDetail,
    HITLDetailResponse,
    ImportErrorApi,
    TaskApi,
    TaskInstanceApi,
    TriggerDAGRunPostBody,
    UpdateHITLDetailPayload,
    XComApi,
)
from airflow_client.client.models.dag_run_response import DAGRunResponse
from airflow_client.client.rest import RESTResponse

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
POLL_SECONDS = 2


class AirflowApiError(RuntimeError):
    """Airflow is unreachable, refused the login, or a wait ran out."""


class _LoggedInApiClient(ApiClient):
    """The generated ApiClient with a login, a default timeout and one error for an absent
    server. A read that times out (a GET on a busy machine) is tried again by urllib3."""

    def __init__(self, url: str, username: str, password: str, timeout: float) -> None:
        configuration = Configuration(host=url)
        # Only reads and failed connections are retried: a POST is never sent twice.
        configuration.retries = urllib3.Retry(total=2, status=0, backoff_factor=2)
        super().__init__(configuration)
        self.url = url
        self.timeout = timeout
        self._credentials = {"username": username, "password": password}

    def _login(self) -> None:
        response = self._send(
            "POST",
            f"{self.url}/auth/token",
            {"Content-Type": "application/json"},
            self._credentials,
            None,
        )
        text = response.read().decode(errors="replace")
        if response.status >= 400:
            raise AirflowApiError(
                f"Airflow at {self.url} refused the login of "
                f"{self._credentials['username']!r} ({response.status}): {text}"
            )
        self.configuration.access_token = json.loads(text)["access_token"]

    def _send(
        self, method: str, url: str, headers: Any, body: Any, timeout: Any, post_params: Any = None
    ) -> RESTResponse:
        try:
            return self.rest_client.request(
                method,
                url,
                headers=headers,
                body=body,
                post_params=post_params,
                _request_timeout=timeout or self.timeout,
            )
        except urllib3.exceptions.HTTPError as error:
            reason = getattr(error, "reason", None) or error
            raise AirflowApiError(
                f"Airflow at {self.url} did not answer ({reason}): is the stack up? "
                "Start it with `make up`; `make status` shows each service's health"
            ) from error

    def param_serialize(self, *args: Any, **kwargs: Any) -> Any:
        if self.configuration.access_token is None:
            self._login()
        return super().param_serialize(*args, **kwargs)

    def call_api(
        self,
        method: str,
        url: str,
        header_params: Any = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> RESTResponse:
        response = self._send(method, url, header_params, body, _request_timeout, post_params)
        if response.status == 401:  # the token expired (or the server restarted): log in again
            self._login()
            headers = {**(header_params or {})}
            headers["Authorization"] = f"Bearer {self.configuration.access_token}"
            response = self._send(method, url, headers, body, _request_timeout, post_params)
        return response


class AirflowClient:
    """One user's session: the generated API classes as attributes, and our waits."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_client = _LoggedInApiClient(self.base_url, username, password, timeout)
        self.dags = DAGApi(self.api_client)
        self.dag_runs = DagRunApi(self.api_client)
        self.task_instances = TaskInstanceApi(self.api_client)
        self.tasks = TaskApi(self.api_client)
        self.xcoms = XComApi(self.api_client)
        self.assets = AssetApi(self.api_client)
        self.connections = ConnectionApi(self.api_client)
        self.import_errors = ImportErrorApi(self.api_client)

    # -- reads the generated API returns in a shape too raw to use as is -------------------

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        instances = self.task_instances.get_task_instances(dag_id, run_id, limit=1000)
        return {
            ti.task_id: (ti.state.value if ti.state else None) for ti in instances.task_instances
        }

    def xcom(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        key: str = "return_value",
        map_index: int | None = None,
    ) -> Any:
        """A task's XCom (by default its return value), as JSON."""
        entry = self.xcoms.get_xcom_entry(dag_id, task_id, run_id, key, map_index=map_index)
        return entry.actual_instance.value  # type: ignore[union-attr]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """One try of a task's log: its structured records, one JSON object a line."""
        log = self.task_instances.get_log(dag_id, run_id, task_id, try_number, full_content=True)
        lines = log.content.actual_instance or []
        return "\n".join(line if isinstance(line, str) else line.to_json() for line in lines)

    # -- waits ------------------------------------------------------------------------------

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 180) -> None:
        """Wait until the DAG processor has parsed every one of ``dag_ids``."""
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        while True:
            missing = wanted - {dag.dag_id for dag in self.dags.get_dags(limit=1000).dags}
            if not missing:
                return
            errors = self.import_errors.get_import_errors().import_errors
            if errors:
                raise AirflowApiError(
                    "DAG import errors: "
                    + "; ".join(f"{e.filename}: {(e.stack_trace or '')[-300:]}" for e in errors)
                )
            if time.monotonic() > deadline:
                raise AirflowApiError(f"DAGs not parsed after {timeout:.0f}s: {sorted(missing)}")
            time.sleep(POLL_SECONDS)

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, *, run_after: datetime | None = None
    ) -> str:
        """Create a manual run (with ``conf`` as its params); it starts no earlier than
        ``run_after`` (default: now)."""
        body = TriggerDAGRunPostBody(logical_date=None, conf=conf or {})
        if run_after is not None:
            body.run_after = run_after
        return self.dag_runs.trigger_dag_run(dag_id, body).dag_run_id

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> DAGRunResponse:
        """Poll a run until it succeeds or fails; returns the final run."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_runs.get_dag_run(dag_id, run_id)
            if run.state.value in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise AirflowApiError(
                    f"{dag_id} run {run_id} still {run.state.value} after {timeout:.0f}s; "
                    f"tasks: {self.task_states(dag_id, run_id)}"
                )
            time.sleep(POLL_SECONDS)

    def trigger_and_wait(
        self, dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 600
    ) -> DAGRunResponse:
        return self.wait_for_run(dag_id, self.trigger(dag_id, conf), timeout)

    # -- human-in-the-loop (approvals) -----------------------------------------------------

    def wait_for_input(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int = -1,
        timeout: float = 600,
        settle: float = 15.0,
    ) -> HITLDetail:
        """Wait until a human-in-the-loop task asks for input; returns its request (subject,
        body, options). Raises if the task finishes without asking.

        It returns ``settle`` seconds after the request appears: Airflow 3.3 fails the task when
        an answer lands before the scheduler has processed the task's pause (an answer faster
        than any person gives), so automated answers wait like a person would. A CI run saw that
        processing take 5.6 s on a busy scheduler, hence the margin.
        """
        deadline = time.monotonic() + timeout
        while True:
            state = self.task_states(dag_id, run_id).get(task_id)
            if state == "awaiting_input":
                time.sleep(settle)
                return self.task_instances.get_hitl_detail(dag_id, run_id, task_id, map_index)
            if state in {"success", "failed", "skipped", "upstream_failed", "removed"}:
                raise AirflowApiError(f"{dag_id}.{task_id} ended {state} without asking for input")
            if time.monotonic() > deadline:
                raise AirflowApiError(
                    f"{dag_id}.{task_id} in run {run_id} not awaiting input after "
                    f"{timeout:.0f}s (state {state}); tasks: {self.task_states(dag_id, run_id)}"
                )
            time.sleep(POLL_SECONDS)

    def respond(
        self, dag_id: str, run_id: str, task_id: str, *options: str, map_index: int = -1
    ) -> HITLDetailResponse:
        """Answer a human-in-the-loop task, e.g. ``respond(dag, run, "approve", "Approve")``."""
        return self.task_instances.update_hitl_detail(
            dag_id,
            run_id,
            task_id,
            map_index,
            UpdateHITLDetailPayload(chosen_options=list(options)),
        )

    def close(self) -> None:
        self.api_client.rest_client.pool_manager.clear()
