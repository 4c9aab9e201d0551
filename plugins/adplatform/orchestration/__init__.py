"""Airflow's room: everything that knows it runs inside Airflow, and nothing else does.

- this module: what every DAG shares (owners, tags, default arguments, failure alerts, pools);
- ``assets``: the lakehouse tables as Assets, the data flow between DAGs;
- ``triggers``: the events topic's backlog watcher (the triggerer runs it);
- ``operators``: the transform's Spark step (Spark Connect or spark-submit);
- ``hooks``: ClickHouse through clickhouse-connect, on the ``clickhouse_default`` connection.

The lakehouse packages (events, ingest, lakehouse, transform, quality, clickhouse, reporting,
ml) import no Airflow; DAG files call them through task bodies of a few lines. DAG files stay
declarative: ``DAG(..., **dag_defaults(Owner.DATA_ENGINEERING, Tag.INGEST))``. Cheap to import
(no settings, no heavy libraries): the scheduler parses DAG files constantly.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import timedelta
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

# The Airflow pools the DAGs use. Locally the stack creates them (adplatform.localstack); on the
# platform, Airflow's migration Job does, sized per environment (helm_values/airflow).
# Spark jobs, one at a time: local[2] takes every core of a developer machine.
SPARK_POOL = "spark"
SPARK_POOL_SLOTS = 1
# ClickHouse tasks (publish, reports): chDB allows one process per data directory.
CLICKHOUSE_POOL = "clickhouse"
CLICKHOUSE_POOL_SLOTS = 1


class Owner(StrEnum):
    DATA_ENGINEERING = "data-engineering"
    ANALYTICS = "analytics"
    ML = "ml-platform"
    PLATFORM = "platform-engineering"


class Tag(StrEnum):
    LAKEHOUSE = "lakehouse"
    INGEST = "ingest"
    TRANSFORM = "transform"
    QUALITY = "quality"
    REPORTING = "reporting"
    ML = "ml"
    PROVISIONING = "provisioning"


class Role(StrEnum):
    """FAB roles beside Admin (the local stack creates them; see adplatform.localstack)."""

    PLATFORM_ADMIN = "platform-admin"
    ANALYST = "analyst"


# Who may see and trigger a DAG besides Admin, by the DAG's tags: a new reporting or lakehouse DAG
# is open to analysts, and provisioning stays with platform admins, without naming a DAG. The
# dag-processor syncs this into FAB's per-DAG permissions each time it writes the DAG.
ROLES_BY_TAG = {
    Tag.PROVISIONING: Role.PLATFORM_ADMIN,
    Tag.REPORTING: Role.ANALYST,
    Tag.LAKEHOUSE: Role.ANALYST,
}
_SEE_AND_TRIGGER = {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_read", "can_create"}}


def alert_on_failure(context: dict[str, Any]) -> None:
    """Log the failure and, when ADP_ALERT_WEBHOOK_URL is set, post it there."""
    from adplatform.settings import get_settings

    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", context.get("run_id", "?"))
    text = (
        f"adplatform alert: {dag_id}.{task_id} failed in run {run_id}: "
        f"{context.get('exception') or context.get('reason') or 'see the task log'}"
    )
    log.error(text)
    webhook = get_settings().alert_webhook_url.get_secret_value()
    if not webhook:
        return
    request = urllib.request.Request(
        webhook,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except OSError as error:  # an alert that cannot be sent must not mask the failure
        # Not the URL: a webhook URL (Slack's, for one) carries its secret in the path.
        log.error("alert webhook (ADP_ALERT_WEBHOOK_URL) failed: %s", error)


def default_args(
    owner: Owner, *, retries: int = 2, execution_timeout: timedelta = timedelta(hours=1)
) -> dict[str, Any]:
    return {
        "owner": owner.value,
        "retries": retries,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": execution_timeout,
        "on_failure_callback": alert_on_failure,
    }


def dag_defaults(
    owner: Owner, *tags: Tag, retries: int = 2, execution_timeout: timedelta = timedelta(hours=1)
) -> dict[str, Any]:
    """Keyword arguments every adplatform DAG passes to ``DAG(...)``."""
    roles = sorted({ROLES_BY_TAG[tag] for tag in tags if tag in ROLES_BY_TAG})
    return {
        "default_args": default_args(owner, retries=retries, execution_timeout=execution_timeout),
        "tags": sorted({owner.value, *(t.value for t in tags)}),
        "access_control": {
            role.value: {resource: set(actions) for resource, actions in _SEE_AND_TRIGGER.items()}
            for role in roles
        },
        "on_failure_callback": alert_on_failure,
        "catchup": False,
    }
