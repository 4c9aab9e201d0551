"""A small client for Airflow 3's REST API (v2): what the demo, the CLI and the tests need.

It logs in through ``POST /auth/token`` (JWT) and refreshes the token when it expires.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import httpx

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class AirflowApiError(RuntimeError):
    """The API refused a request (``status_code``: the HTTP status), or a wait ran out."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    def _login(self) -> None:
        response = self._http.post("/auth/token", json=self._credentials)
        if response.status_code >= 400:
            raise AirflowApiError(
                f"Airflow at {self.base_url} refused the login of "
                f"{self._credentials['username']!r} ({response.status_code}): {response.text}"
            )
        self._token = response.json()["access_token"]

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2{path}``; raise AirflowApiError with the server's detail on errors."""
        for attempt in range(2):
            if self._token is None:
                self._login()
            response = self._send(method, f"/api/v2{path}", kwargs)
            if response.status_code == 401 and attempt == 0:  # expired token: log in again
                self._token = None
                continue
            break
        if response.status_code >= 400:
            raise AirflowApiError(
                f"{method} {path} → {response.status_code}: {response.text[:2000]}",
                response.status_code,
            )
        return response.json() if response.content else None

    def _send(self, method: str, url: str, kwargs: dict[str, Any]) -> httpx.Response:
        """One request; a GET (which changes nothing) is tried again when the server is too busy
        to answer in time, as the waits' polls are on a loaded machine."""
        headers = {"Authorization": f"Bearer {self._token}"}
        for _ in range(2 if method == "GET" else 0):
            try:
                return self._http.request(method, url, headers=headers, **kwargs)
            except httpx.TimeoutException:
                time.sleep(2)
        return self._http.request(method, url, headers=headers, **kwargs)

    # -- DAGs ------------------------------------------------------------------------------

    def dag_ids(self) -> set[str]:
        dags = self.request("GET", "/dags", params={"limit": 1000})["dags"]
        return {dag["dag_id"] for dag in dags}

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/importErrors")["import_errors"])

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 180) -> None:
        """Wait until the DAG processor has parsed every one of ``dag_ids``."""
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        while True:
            missing = wanted - self.dag_ids()
            if not missing:
                return
            errors = self.import_errors()
            if errors:
                raise AirflowApiError(
                    "DAG import errors: "
                    + "; ".join(f"{e['filename']}: {e['stack_trace'][-300:]}" for e in errors)
                )
            if time.monotonic() > deadline:
                raise AirflowApiError(f"DAGs not parsed after {timeout:.0f}s: {sorted(missing)}")
            time.sleep(2)

    # -- runs ------------------------------------------------------------------------------

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, *, run_after: datetime | None = None
    ) -> str:
        """Create a manual run (with ``conf`` as its params); it starts no earlier than
        ``run_after`` (default: now)."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_after is not None:
            body["run_after"] = run_after.isoformat()
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)
        return str(run["dag_run_id"])

    def delete_run(self, dag_id: str, run_id: str) -> None:
        self.request("DELETE", f"/dags/{dag_id}/dagRuns/{run_id}")

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))

    def runs(self, dag_id: str, limit: int = 100) -> list[dict[str, Any]]:
        return list(
            self.request(
                "GET",
                f"/dags/{dag_id}/dagRuns",
                params={"limit": limit, "order_by": "-run_after"},
            )["dag_runs"]
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        instances = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in instances["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom (by default its return value), as JSON."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.request("GET", path)["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """One try of a task's log: its structured records, one JSON object a line."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        content = self.request("GET", path, params={"full_content": True})["content"]
        return "\n".join(json.dumps(entry) for entry in content)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> dict[str, Any]:
        """Poll a run until it succeeds or fails; returns the final run."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise AirflowApiError(
                    f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s; "
                    f"tasks: {self.task_states(dag_id, run_id)}"
                )
            time.sleep(2)

    # -- human-in-the-loop (approvals) -----------------------------------------------------

    def _hitl_path(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
        return f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"

    def wait_for_input(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int = -1,
        timeout: float = 600,
        settle: float = 15.0,
    ) -> dict[str, Any]:
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
                return dict(
                    self.request("GET", self._hitl_path(dag_id, run_id, task_id, map_index))
                )
            if state in {"success", "failed", "skipped", "upstream_failed", "removed"}:
                raise AirflowApiError(f"{dag_id}.{task_id} ended {state} without asking for input")
            if time.monotonic() > deadline:
                raise AirflowApiError(
                    f"{dag_id}.{task_id} in run {run_id} not awaiting input after "
                    f"{timeout:.0f}s (state {state}); tasks: {self.task_states(dag_id, run_id)}"
                )
            time.sleep(2)

    def respond(
        self, dag_id: str, run_id: str, task_id: str, *options: str, map_index: int = -1
    ) -> dict[str, Any]:
        """Answer a human-in-the-loop task, e.g. ``respond(dag, run, "approve", "Approve")``."""
        return dict(
            self.request(
                "PATCH",
                self._hitl_path(dag_id, run_id, task_id, map_index),
                json={"chosen_options": list(options)},
            )
        )

    # -- connections -----------------------------------------------------------------------

    def set_connection(self, conn_id: str, conn_type: str, **fields: Any) -> None:
        """Create the connection, or replace its fields when it exists (idempotent)."""
        body = {"connection_id": conn_id, "conn_type": conn_type, **fields}
        try:
            self.request("POST", "/connections", json=body)
        except AirflowApiError as error:
            if error.status_code != 409:
                raise
            self.request("PATCH", f"/connections/{conn_id}", json=body)

    def close(self) -> None:
        self._http.close()
