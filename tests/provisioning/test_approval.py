"""Approvals that hold: nobody approves a run they triggered, a changing step refuses a run
without a recorded approval, and only the approved plan file of the run, unchanged, is applied
(the plan itself made by the real OpenTofu and provider `make tools` builds)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from adplatform.provisioning import flow
from adplatform.provisioning.approval import (
    ApprovalRefused,
    approvers_for,
    check_approval,
    check_plan_file,
    file_sha256,
    run_plan_file,
)
from adplatform.provisioning.manifest import load_manifest
from adplatform.settings import Settings, get_settings, load_settings

RUN_A = "manual__2026-12-02T10:00:00+00:00"
RUN_B = "manual__2026-12-02T11:00:00+00:00"


def approvers(configured: str) -> Settings:
    return load_settings(platform_approvers=configured)


def answer(by: str, option: str = "Approve", **recorded: str) -> dict:
    """What the approve task returns once someone answered it."""
    return {
        "chosen_options": [option],
        "params_input": {},
        "responded_at": datetime(2026, 12, 2, tzinfo=UTC),
        "responded_by_user": {"id": "7", "name": by},
        **recorded,
    }


# --- who may approve -----------------------------------------------------------------------------


def test_the_triggering_user_is_never_among_the_approvers():
    settings = approvers("platform-admin=2, platform-approver=4")
    assert approvers_for(settings, "platform-admin") == [{"id": "4", "name": "platform-approver"}]
    assert [u["name"] for u in approvers_for(settings, "admin")] == [
        "platform-admin",
        "platform-approver",
    ]


@pytest.mark.parametrize(
    ("configured", "problem"),
    [
        ("platform-admin=2", "platform-admin triggered this run and is its only approver"),
        ("", "no approvers are configured: set ADP_PLATFORM_APPROVERS"),
        ("platform-admin", "entry 'platform-admin' is not name=id"),
    ],
)
def test_a_run_nobody_else_may_approve_is_refused_in_one_line(configured, problem):
    with pytest.raises(ApprovalRefused) as refused:
        approvers_for(approvers(configured), "platform-admin")
    assert problem in str(refused.value)
    assert "\n" not in str(refused.value)


def test_an_approval_by_the_triggering_user_is_refused_in_one_line():
    with pytest.raises(ApprovalRefused) as refused:
        check_approval(answer("platform-admin"), "platform-admin")
    assert str(refused.value).startswith(
        "platform-admin triggered this run and approved it: the approver must be someone else"
    )
    assert "\n" not in str(refused.value)
    assert check_approval(answer("platform-approver"), "platform-admin") == "platform-approver"


@pytest.mark.parametrize(
    ("approval", "problem"),
    [
        (None, "this run has no recorded approval (was the approve task marked successful"),
        ({}, "this run has no recorded approval"),
        (answer("platform-approver", "Reject"), "the plan was not approved (['Reject'])"),
    ],
)
def test_a_step_without_a_recorded_approval_refuses_for_good(approval, problem):
    """A task marked successful by hand leaves no answer behind: the changing step refuses,
    without a retry."""
    with pytest.raises(AirflowFailException) as refused:
        flow.require_approval(approval, "platform-admin")
    assert str(refused.value).startswith(f"refused: {problem}")


# --- the approved plan file ---------------------------------------------------------------------


def test_each_run_plans_into_a_file_of_its_own(settings):
    files = {run_plan_file(settings, "staging", "hcloud", run) for run in (RUN_A, RUN_B)}
    assert len(files) == 2
    shared = settings.provisioning_dir / "staging" / "hcloud.tfplan"  # the drift check's, once
    assert shared not in files
    assert all(settings.provisioning_dir / "staging" in f.parents for f in files)


def test_only_the_approved_file_unchanged_is_accepted(tmp_path: Path):
    approved, other = tmp_path / "a.tfplan", tmp_path / "b.tfplan"
    approved.write_bytes(b"plan A")
    other.write_bytes(b"plan A")
    approval = answer(
        "platform-approver", plan_file=str(approved), plan_sha256=file_sha256(approved)
    )

    assert check_plan_file(approval, approved) == file_sha256(approved)
    with pytest.raises(ApprovalRefused, match=r"b.tfplan is not the approved plan \("):
        check_plan_file(approval, other)  # the same bytes, but not the file that was approved
    approved.write_bytes(b"plan A, changed")
    with pytest.raises(ApprovalRefused, match=r"a\.tfplan changed since it was approved"):
        check_plan_file(approval, approved)


@pytest.fixture
def staging(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings (and the hcloud_default connection, a placeholder token: a plan that only
    creates servers never sends it) as the tasks read them."""
    configured = load_settings(data_root=settings.data_root, hcloud_token="0" * 64)
    for name, value in {**configured.environment(), **configured.airflow_connections()}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield configured
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.integration
def test_apply_refuses_another_runs_plan_and_a_changed_plan(staging: Settings):
    """A real plan for staging on Hetzner: the approval shows its attributes and each release's
    values; apply refuses the plan of another run and a plan changed after approval, before
    tofu runs."""
    manifest = load_manifest(with_values=False)
    waves = manifest.waves(["cert-manager"])
    request = {
        "environment": "staging",
        "cloud": "hcloud",
        "dry_run": False,
        "local_cluster": False,
        "components": [name for wave in waves for name in wave],
        "waves": waves,
    }
    planned = flow.plan(request, RUN_A)

    plan_file = run_plan_file(staging, "staging", "hcloud", RUN_A).resolve()
    assert planned["plan_file"] == str(plan_file)
    assert planned["plan_sha256"] == file_sha256(plan_file)
    # The attribute diff (tofu show), not addresses only, and each release's values diff.
    assert "will be created" in planned["text"]
    assert re.search(r'\+ server_type +=  *"', planned["text"]), planned["text"]
    assert "--- cert-manager not installed values" in planned["text"]
    assert "+++ cert-manager v1.19.1 values" in planned["text"]
    approval = answer(
        "platform-approver", plan_file=str(plan_file), plan_sha256=file_sha256(plan_file)
    )

    with pytest.raises(AirflowFailException, match=r"refused: .* is not the approved plan"):
        flow.apply(request, planned, approval, "platform-admin", RUN_B)
    with pytest.raises(AirflowFailException, match="approved it: the approver must be someone"):
        flow.apply(request, planned, approval, "platform-approver", RUN_A)
    plan_file.write_bytes(plan_file.read_bytes() + b"\0")
    with pytest.raises(AirflowFailException, match=r"refused: .* changed since it was approved"):
        flow.apply(request, planned, approval, "platform-admin", RUN_A)
