"""Provisioning `local` through Airflow vs a bare `helm upgrade --install --wait` loop.

On the local cluster (real control plane, kwok nodes) with the real charts of the chart mirror:
the wall time of a `platform_provision` run (triggered over REST, approved at once by the
platform-admin user, every wave deployed and gated) and of a re-run with nothing to change,
against the same releases installed, then upgraded again, by a plain loop of `helm upgrade
--install --wait` in wave order, in the same run on the same cluster. The ratio is the
orchestration's overhead: scheduling, approval, the skip checks and the health gates.

The chart mirror is ADP_HELM_CHART_MIRROR, else ../shared/charts beside the repository;
ADPLATFORM_BENCH_COMPONENTS (comma-separated) picks the components (their dependencies come
along; default: those that install on the simulated nodes with the repository's values).
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow_client.client import DAGPatchBody

from adplatform.localstack import LocalStack, free_port
from adplatform.provisioning.cluster import LocalCluster
from adplatform.provisioning.commands import Command, helm_upgrade
from adplatform.provisioning.manifest import load_manifest
from adplatform.provisioning.releases import helm_env, wait_seconds
from adplatform.settings import REPO_ROOT, get_settings, load_settings
from benchmarks.harness import Context, Result, timed

DAG = "platform_provision"
DEFAULT_COMPONENTS = "cert-manager"


def run(ctx: Context) -> list[Result]:
    mirror = os.environ.get("ADP_HELM_CHART_MIRROR") or str(REPO_ROOT.parent / "shared" / "charts")
    if not Path(mirror, "index.yaml").exists():
        raise RuntimeError(f"no chart mirror at {mirror}: set ADP_HELM_CHART_MIRROR to one")
    settings = load_settings(
        data_root=ctx.root / "provision",
        airflow_port=free_port(3),
        cluster_api_port=free_port(6),
        helm_chart_mirror=mirror,
    )
    # The bare loop's helm commands read the chart mirror from the process's settings, as the
    # DAGs' tasks do from the stack's; the benchmarks after this one get the environment back.
    saved = dict(os.environ)
    os.environ.update(settings.environment())
    get_settings.cache_clear()
    selected = os.environ.get("ADPLATFORM_BENCH_COMPONENTS", DEFAULT_COMPONENTS).split(",")
    manifest = load_manifest(with_values=False)
    waves = manifest.waves(selected)
    names = [name for wave in waves for name in wave]
    cluster, stack = LocalCluster(settings), LocalStack(settings)
    try:
        cluster.up()
        stack.up(["airflow"])
        client = stack.services["airflow"].client("platform-admin")
        approver = stack.services["airflow"].client("platform-approver")  # not the triggerer
        client.wait_for_dags([DAG])
        client.dags.patch_dag(DAG, DAGPatchBody(is_paused=False))

        def bare_loop() -> None:
            for name in names:
                component = manifest.component(name)
                command = helm_upgrade(
                    component, "local", wait_seconds=wait_seconds(settings, component)
                )
                Command(command.argv, env=helm_env(settings, "local")).run()

        bare_install, _ = timed(bare_loop)
        bare_rerun, _ = timed(bare_loop)
        for name in reversed(names):
            component = manifest.component(name)
            Command(
                ("helm", "uninstall", name, "-n", component.namespace, "--wait"),
                env=helm_env(settings, "local"),
            ).run()

        def provision() -> None:
            run_id = client.trigger(
                DAG, {"environment": "local", "components": selected, "dry_run": False}
            )
            client.wait_for_input(DAG, run_id, "approve")
            approver.respond(DAG, run_id, "approve", "Approve")
            state = client.wait_for_run(DAG, run_id, timeout=1800).state.value
            if state != "success":
                raise RuntimeError(f"{DAG} run {run_id} {state}: {client.task_states(DAG, run_id)}")

        airflow_install, _ = timed(provision)
        airflow_rerun, _ = timed(provision)
        client.close()
        approver.close()
    finally:
        stack.down()
        cluster.down()
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
    details = {"components": names, "waves": len(waves), "load": os.getloadavg()}
    return [
        Result(
            "provision",
            f"provision local ({len(names)} releases, {len(waves)} waves)",
            airflow_install,
            "s",
            "bare helm upgrade --install --wait loop",
            bare_install,
            higher_is_better=False,
            details=details,
        ),
        Result(
            "provision",
            "re-run with nothing to change",
            airflow_rerun,
            "s",
            "bare helm upgrade --install --wait loop, again",
            bare_rerun,
            higher_is_better=False,
            details=details,
        ),
    ]
