"""Approvals that hold: who may approve a run (the configured approvers minus the user who
triggered it), the approval step that asks only them and records what they approved (the plan
file and its sha256), and the check every changing step makes first: a recorded approval, by
someone else, of exactly this run's plan file, unchanged since."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.execution_time.hitl import HITLUser

from adplatform.settings import Settings

FIX_APPROVERS = "set ADP_PLATFORM_APPROVERS to `name=id,...` of the platform admins"


class ApprovalRefused(RuntimeError):
    """A run may not go on: no approval, the wrong approver, or a plan that is not the approved
    one. The message is one line that names what and says what to do."""


def configured_approvers(settings: Settings) -> list[HITLUser]:
    """ADP_PLATFORM_APPROVERS (`name=id,...`) as Airflow's HITL users: the id is the one the
    auth manager gives the user (FAB: its numeric id), which the API checks a response against."""
    users: list[HITLUser] = []
    for entry in filter(None, (part.strip() for part in settings.platform_approvers.split(","))):
        name, _, user_id = entry.partition("=")
        if not name or not user_id:
            raise ApprovalRefused(f"ADP_PLATFORM_APPROVERS entry {entry!r} is not name=id")
        users.append(HITLUser(id=user_id.strip(), name=name.strip()))
    return users


def approvers_for(settings: Settings, triggered_by: str | None) -> list[HITLUser]:
    """Everyone who may approve a run: the configured approvers, minus the user who triggered
    it (nobody approves their own change)."""
    configured = configured_approvers(settings)
    if not configured:
        raise ApprovalRefused(f"no approvers are configured: {FIX_APPROVERS}")
    others = [user for user in configured if user["name"] != triggered_by]
    if not others:
        raise ApprovalRefused(
            f"{triggered_by} triggered this run and is its only approver: add another platform "
            f"admin ({FIX_APPROVERS})"
        )
    return others


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_plan_file(settings: Settings, environment: str, cloud: str, run_id: str) -> Path:
    """The plan file of one run: no other run (nor the drift check) writes it."""
    safe_run_id = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)
    return settings.provisioning_dir / environment / "plans" / safe_run_id / f"{cloud}.tfplan"


def check_approval(approval: dict[str, Any] | None, triggered_by: str | None) -> str:
    """The approval step's recorded answer is an approval by someone other than the user who
    triggered the run. A task marked successful by hand recorded no answer: refused."""
    if not approval or "chosen_options" not in approval:
        raise ApprovalRefused(
            "this run has no recorded approval (was the approve task marked successful by "
            "hand?): trigger a new run and have another platform admin approve it in Required "
            "actions"
        )
    if approval["chosen_options"] != [ApprovalOperator.APPROVE]:
        raise ApprovalRefused(
            f"the plan was not approved ({approval['chosen_options']}): trigger a new run"
        )
    approver = approval["responded_by_user"]["name"]
    if approver == triggered_by:
        raise ApprovalRefused(
            f"{approver} triggered this run and approved it: the approver must be someone else; "
            "trigger a new run and ask another platform admin"
        )
    return approver


def check_plan_file(approval: dict[str, Any], plan_file: str | Path) -> str:
    """The file about to be applied is the one approved, unchanged (same sha256)."""
    approved = approval.get("plan_file", "")
    if str(plan_file) != approved:
        raise ApprovalRefused(
            f"{plan_file} is not the approved plan ({approved or 'none'}): only the plan file of "
            "this run, as approved, is applied; trigger a new run to plan again"
        )
    actual = file_sha256(plan_file)
    if actual != approval.get("plan_sha256"):
        raise ApprovalRefused(
            f"{plan_file} changed since it was approved (sha256 {actual[:12]}, approved "
            f"{str(approval.get('plan_sha256'))[:12]}): trigger a new run to plan again"
        )
    return actual


class PlanApproval(ApprovalOperator):
    """Asks the approvers (never the triggering user) to approve the plan that ``plan_task_id``
    returned (its ``text``, and its ``plan_file`` with ``plan_sha256``), and returns the answer
    with the approved file and checksum, for the changing steps to check. No answer in
    ``response_timeout`` fails the run: it never approves by itself."""

    def __init__(self, *, plan_task_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("response_timeout", timedelta(hours=24))
        super().__init__(
            body=f"```\n{{{{ ti.xcom_pull(task_ids='{plan_task_id}')['text'] }}}}\n```",
            fail_on_reject=True,
            retries=0,  # a retry would ask again: a rejection or a timeout must end the run
            **kwargs,
        )
        self.plan_task_id = plan_task_id

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from adplatform.settings import get_settings

        triggered_by = context["dag_run"].triggering_user_name
        try:
            approvers = approvers_for(get_settings(), triggered_by)
        except ApprovalRefused as refused:
            raise AirflowFailException(str(refused)) from None
        self.assigned_users = approvers
        planned = context["ti"].xcom_pull(task_ids=self.plan_task_id)
        parts = [self.body or ""]
        if planned.get("plan_file"):
            parts.append(f"Plan file: {planned['plan_file']}\nsha256: {planned['plan_sha256']}")
        names = ", ".join(user["name"] for user in approvers)
        parts.append(f"May approve: {names} (not {triggered_by}, who triggered this run)")
        self.body = "\n\n".join(parts)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        answer = dict(super().execute_complete(context, event))
        try:
            check_approval(answer, context["dag_run"].triggering_user_name)
        except ApprovalRefused as refused:
            raise AirflowFailException(str(refused)) from None
        planned = context["ti"].xcom_pull(task_ids=self.plan_task_id)
        return answer | {
            "plan_file": planned.get("plan_file", ""),
            "plan_sha256": planned.get("plan_sha256", ""),
        }


def recorded_approval(context: Any) -> tuple[dict[str, Any] | None, str | None]:
    """This run's approval (the approve task's return value, None when it has none) and the user
    who triggered the run."""
    return context["ti"].xcom_pull(task_ids="approve"), context["dag_run"].triggering_user_name
