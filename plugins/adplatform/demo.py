"""The main job on the local stack: a day of traffic through the whole lakehouse.

The demo produces a simulated day to the events topic, then lets the real Airflow scheduler
carry it through the DAGs by their Assets — ingest → transform and quality gates → ClickHouse
publish → daily reports, and CTR training → push — while a live table shows which DAG and task
is running. It ends with a reconciled summary. Each run adds the day before the oldest one
already there, so a second run continues the lakehouse instead of duplicating it; a run that
was interrupted while producing re-sends the same deterministic day (Silver deduplicates by
event id, so nothing is counted twice).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from adplatform.connections import kafka_client_config
from adplatform.events.generator import yesterday_utc
from adplatform.localstack import JUPYTERHUB_USER, password_file
from adplatform.settings import Settings

if TYPE_CHECKING:
    from airflow_client.client import DAGRunResponse

    from adplatform.airflow_client import AirflowClient

# In data-flow order; the demo waits for each to have run on the new data.
LAKEHOUSE_DAGS = (
    "ad_events_ingest",
    "ad_lakehouse_transform",
    "ad_lakehouse_ctr_training_set",
    "clickhouse_publish",
    "ad_reports_daily",
    "ctr_model_training",
)
ACTIVE_STATES = frozenset({"queued", "running"})
SETTLE_SECONDS = 20  # asset-triggered runs start a scheduler loop or two after their upstream


class DemoError(RuntimeError):
    """The demo cannot go on; the message names the failing DAG, task and log."""


@dataclass
class DemoState:
    """Which simulated days earlier runs produced, kept under the data root."""

    path: Path
    days: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, settings: Settings) -> DemoState:
        path = settings.demo_dir / "state.json"
        days = json.loads(path.read_text())["days"] if path.exists() else []
        return cls(path, days)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"days": self.days}, indent=2))

    def next_day(self, max_age_days: int) -> datetime:
        """An unfinished day again, else yesterday, else the day before the oldest one."""
        unfinished = [d for d in self.days if not d["produced"]]
        if unfinished:
            return datetime.fromisoformat(unfinished[0]["start"])
        if not self.days:
            return yesterday_utc()
        oldest = min(datetime.fromisoformat(d["start"]) for d in self.days)
        day = oldest - timedelta(days=1)
        if datetime.now(UTC) - day > timedelta(days=max_age_days - 1):
            raise DemoError(
                f"the lakehouse already holds {len(self.days)} demo days; an older day would be "
                f"beyond the validator's {max_age_days}-day age limit. Start afresh with "
                "`make clean` (deletes .data) or raise ADP_MAX_EVENT_AGE_DAYS."
            )
        return day


def prepare(settings: Settings, seed: int) -> None:
    """Topics, reference tables and ClickHouse migrations: all idempotent."""
    from adplatform.broker import ensure_topics
    from adplatform.clickhouse.client import clickhouse_client
    from adplatform.clickhouse.migrate import migrate
    from adplatform.events.catalog import build_catalog
    from adplatform.lakehouse.reference import write_reference_tables

    ensure_topics(settings)
    write_reference_tables(settings, build_catalog(seed))
    with clickhouse_client(settings) as client:
        migrate(client)


class Watcher:
    """Follows the lakehouse DAGs' runs since the demo started, for the live display."""

    def __init__(self, client: AirflowClient, since: datetime) -> None:
        self.client = client
        self.since = since
        self.runs: dict[str, list[DAGRunResponse]] = {}
        self.tasks: dict[str, dict[str, str | None]] = {}

    def poll(self) -> None:
        for dag_id in LAKEHOUSE_DAGS:
            latest = self.client.dag_runs.get_dag_runs(dag_id, limit=20, order_by=["-run_after"])
            runs = [r for r in latest.dag_runs if (r.queued_at or r.run_after) >= self.since]
            self.runs[dag_id] = runs
            if runs:
                self.tasks[dag_id] = self.client.task_states(dag_id, runs[0].dag_run_id)

    def failures(self) -> list[str]:
        found = []
        for dag_id, runs in self.runs.items():
            for run in runs:
                if run.state == "failed":
                    states = self.client.task_states(dag_id, run.dag_run_id)
                    failed = [t for t, s in states.items() if s == "failed"]
                    found.append(f"{dag_id} run {run.dag_run_id}: failed task(s) {failed}")
        return found

    def busy(self) -> bool:
        return any(r.state in ACTIVE_STATES for runs in self.runs.values() for r in runs)

    def succeeded(self, dag_id: str) -> bool:
        return any(r.state == "success" for r in self.runs.get(dag_id, []))

    def table(self, lag: int | None) -> Table:
        table = Table("DAG", "runs", "latest", "running now", "took", title="lakehouse DAGs")
        for dag_id in LAKEHOUSE_DAGS:
            runs = self.runs.get(dag_id, [])
            if not runs:
                table.add_row(dag_id, "0", "waiting for its input", "", "")
                continue
            latest = runs[0]
            running = [t for t, s in self.tasks.get(dag_id, {}).items() if s == "running"]
            state = latest.state.value
            colour = {"success": "green", "failed": "red"}.get(state, "yellow")
            table.add_row(
                dag_id,
                str(len(runs)),
                f"[{colour}]{state}[/]",
                ", ".join(running),
                _took(latest),
            )
        if lag is not None:
            table.caption = f"ingest lag: {lag:,} messages"
        return table


def _took(run: DAGRunResponse) -> str:
    if not run.start_date:
        return ""
    end = run.end_date or datetime.now(UTC)
    return f"{(end - run.start_date).total_seconds():.0f}s"


def ingest_lag(settings: Settings) -> int:
    from adplatform.ingest.status import ingest_status

    return sum(
        p.lag
        for p in ingest_status(settings, settings.ingest_group_id, kafka_client_config(settings))
    )


def run_through_airflow(
    settings: Settings, client: AirflowClient, console: Console, timeout: float
) -> Watcher:
    """Trigger ingest, then follow the DAGs until every one has run on the new data and the
    scheduler is quiet; raise DemoError on the first failed run."""
    since = datetime.now(UTC) - timedelta(seconds=5)
    # Now: the topic's watcher starts only once the DAG processor has seen the DAG unpaused.
    client.trigger("ad_events_ingest")
    watcher = Watcher(client, since)
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    with Live(console=console, refresh_per_second=1) as live:
        while True:
            watcher.poll()
            lag = ingest_lag(settings)
            live.update(Group(watcher.table(lag)))
            failures = watcher.failures()
            if failures:
                raise DemoError(
                    "; ".join(failures) + f". Task logs: {settings.airflow_url} (Browse → Task "
                    f"Instances) or {settings.airflow_dir / 'logs'}"
                )
            done = lag == 0 and all(watcher.succeeded(d) for d in LAKEHOUSE_DAGS)
            if done and not watcher.busy():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= SETTLE_SECONDS:
                    return watcher
            else:
                quiet_since = None
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the lakehouse did not settle within {timeout:.0f}s; see the table above "
                    f"and {settings.airflow_url}"
                )
            time.sleep(3)


def summary(settings: Settings, produced: Any, day: date, watcher: Watcher) -> Table:
    """Reconciled numbers: produced vs ingested, Gold vs ClickHouse; reports, model, URLs."""
    from adplatform.clickhouse.client import clickhouse_client
    from adplatform.clickhouse.publish import (
        FACT_TABLE,
        clickhouse_totals,
        gold_days,
        gold_totals,
        read_gold_day,
    )
    from adplatform.ingest.status import ingest_status
    from ml import registry, serving

    table = Table("", "", title="adplatform demo: summary", show_header=False)
    partitions = ingest_status(settings, settings.ingest_group_id, kafka_client_config(settings))
    consumed = sum(p.committed_end - p.log_start for p in partitions)
    accepted = sum(p.accepted for p in partitions)
    quarantined = sum(p.quarantined for p in partitions)
    table.add_row(
        "this run produced",
        f"{produced.messages:,} messages for {day}: {produced.valid:,} valid events, "
        f"{produced.duplicates:,} duplicates, {produced.malformed:,} malformed",
    )
    table.add_row(
        "ingested (all runs)",
        f"{consumed:,} consumed = {accepted:,} in Bronze + {quarantined:,} quarantined "
        + ("[green]✓ reconciled[/]" if consumed == accepted + quarantined else "[red]✗[/]"),
    )
    with clickhouse_client(settings) as client:
        for gold_day in gold_days(settings).values():
            gold = gold_totals(read_gold_day(gold_day))
            facts = clickhouse_totals(client, FACT_TABLE, gold_day.event_date)
            mark = "[green]✓ equal[/]" if not gold.differences(facts) else "[red]✗ differ[/]"
            table.add_row(
                f"Gold vs ClickHouse {gold_day.event_date}",
                f"{gold.sums['impressions']:,} impressions, {gold.sums['clicks']:,} clicks, "
                f"${gold.sums['spend_micros'] / 1e6:,.2f} spend in both {mark}",
            )
    reports = sorted(settings.reports_dir.glob("*/index.html"), key=lambda p: p.stat().st_mtime)
    table.add_row("newest reports", str(reports[-1]) if reports else "none yet")
    champion = registry.version_summary(registry.connect(settings), "champion")
    if champion:
        table.add_row(
            "CTR model (MLflow)",
            f"ctr_model v{champion['version']} is champion: holdout AUC "
            f"{champion['holdout_auc']:.4f}, log loss {champion['holdout_logloss']:.5f}; "
            f"run {champion['run_id']}",
        )
    served = serving.status(serving.serving_store(settings))
    if served:
        table.add_row(
            "serving artifact",
            f"version {served['pointer']['version']} at {settings.serving_dir}",
        )
    durations = {d: _took(watcher.runs[d][0]) for d in LAKEHOUSE_DAGS if watcher.runs.get(d)}
    table.add_row("DAG run times", ", ".join(f"{d} {t}" for d, t in durations.items()))
    table.add_row(
        "Airflow UI",
        f"{settings.airflow_url} (user admin, password in "
        f"{settings.airflow_dir / 'admin-password'})",
    )
    table.add_row("MLflow UI", settings.mlflow_tracking_uri)
    table.add_row(
        "JupyterHub",
        f"{settings.jupyterhub_url} (user {JUPYTERHUB_USER}, password in "
        f"{password_file(settings.jupyterhub_dir, JUPYTERHUB_USER)}; "
        "notebooks in notebooks/)",
    )
    return table


def run_demo(
    settings: Settings, client: AirflowClient, requests: int, seed: int, timeout: float
) -> None:
    from adplatform.events.generator import TrafficConfig
    from adplatform.events.producer import produce_traffic

    console = Console()
    state = DemoState.load(settings)
    start = state.next_day(settings.max_event_age_days)
    with console.status("preparing topics, reference data and ClickHouse..."):
        prepare(settings, seed)
        from airflow_client.client import DAGPatchBody

        client.wait_for_dags(LAKEHOUSE_DAGS)
        for dag_id in LAKEHOUSE_DAGS:
            client.dags.patch_dag(dag_id, DAGPatchBody(is_paused=False))
    entry = next((d for d in state.days if d["start"] == start.isoformat()), None)
    if entry is None:
        entry = {"start": start.isoformat(), "seed": seed, "requests": requests, "produced": False}
        state.days.append(entry)
        state.save()
    console.print(f"simulating {start.date()} ({entry['requests']:,} bid requests)")
    config = TrafficConfig(seed=entry["seed"], start=start, requests=entry["requests"])
    produced = produce_traffic(settings, config)
    entry["produced"] = True
    state.save()
    watcher = run_through_airflow(settings, client, console, timeout)
    console.print(summary(settings, produced, start.date(), watcher))
