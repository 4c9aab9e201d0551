"""`adplatform`: the command line for operators, analysts and the Makefile.

Every command has --help; known failures print one line naming the problem and the fix and
exit with status 1 (usage errors exit 2, as click does).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from adplatform.connections import (
    CLICKHOUSE,
    KAFKA,
    MLFLOW,
    Source,
    kafka_client_config,
    mlflow_tracking_uri,
)
from adplatform.settings import SettingsError, get_settings

console = Console()


class _Cli(click.Group):
    """Turns the platform's own exceptions into one-line errors instead of stack traces."""

    def invoke(self, ctx: click.Context) -> Any:
        from adplatform.broker import BrokerUnreachable
        from adplatform.clickhouse.client import ClickHouseError
        from adplatform.connections import ConnectionConfigError
        from adplatform.demo import DemoError
        from adplatform.events.producer import DeliveryFailed
        from adplatform.ingest.commitlog import IngestError
        from adplatform.localstack import StackError
        from adplatform.provisioning.commands import ToolError
        from adplatform.reporting.reports import ReportError
        from ml.errors import CtrModelError

        try:
            return super().invoke(ctx)
        except (
            SettingsError,
            StackError,
            ToolError,
            BrokerUnreachable,
            DeliveryFailed,
            CtrModelError,
            ClickHouseError,
            ConnectionConfigError,
            ReportError,
            IngestError,
            DemoError,
        ) as error:
            console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
            sys.exit(1)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--airflow-connections",
    is_flag=True,
    help="Read Kafka, ClickHouse and MLflow details from Airflow's connections (kafka_default, "
    "clickhouse_default, mlflow_default: AIRFLOW_CONN_*, the secrets backend), as the DAGs' "
    "tasks do, instead of the ADP_* settings: for a shell inside an Airflow deployment.",
)
def cli(airflow_connections: bool) -> None:
    """Run and inspect the adplatform: local stack, traffic, lakehouse and models."""


def _source(conn_id: str) -> Source:
    """Where this command reads connection ``conn_id``: Airflow's (--airflow-connections) or
    the settings' rendering of it."""
    from_airflow = click.get_current_context().find_root().params["airflow_connections"]
    return conn_id if from_airflow else get_settings()


@cli.command("settings")
@click.option("--airflow-env", is_flag=True, help="Print AIRFLOW_CONN_* exports instead.")
def show_settings(airflow_env: bool) -> None:
    """Show the effective configuration (ADP_* variables and their local defaults)."""
    settings = get_settings()
    if airflow_env:
        for name, value in settings.airflow_connections().items():
            click.echo(f"export {name}='{value}'")
        return
    table = Table("setting", "value", title="adplatform settings")
    for name, value in settings.model_dump().items():
        table.add_row(f"ADP_{name.upper()}", str(value))
    console.print(table)


@cli.group()
def stack() -> None:
    """Start, stop and inspect the local stack (Kafka, MLflow, Spark Connect, Airflow, JupyterHub)."""


@stack.command("install")
def stack_install() -> None:
    """Fetch what the local services need beyond Python (the Kafka broker's jars, JupyterHub's
    proxy)."""
    from adplatform.localstack import ensure_http_proxy, ensure_kafka_jars

    console.print(f"kafka jars: {ensure_kafka_jars()}")
    console.print(f"jupyterhub proxy: {ensure_http_proxy()}")


@stack.command("up")
@click.argument("services", nargs=-1)
def stack_up(services: tuple[str, ...]) -> None:
    """Start SERVICES (default: all) and wait until each is healthy. Safe to repeat."""
    from adplatform.localstack import LocalStack

    local = LocalStack(get_settings())
    for name in services or local.services:
        with console.status(f"starting {name}..."):
            result = local.up([name])[name]
        console.print(f"{name}: {result} at {local.services[name].url}")


@stack.command("down")
@click.argument("services", nargs=-1)
def stack_down(services: tuple[str, ...]) -> None:
    """Stop SERVICES (default: all), leaving no process behind."""
    from adplatform.localstack import LocalStack

    for name, result in LocalStack(get_settings()).down(services or None).items():
        console.print(f"{name}: {result}")


@stack.command("status")
def stack_status() -> None:
    """Show each service's health, pid, URL and log file; exit 1 if any is not healthy."""
    from adplatform.localstack import LocalStack

    rows = LocalStack(get_settings()).status()
    table = Table("service", "state", "pid", "url", "log")
    for name, state, pid, url, log in rows:
        colour = "green" if state == "healthy" else "red"
        table.add_row(name, f"[{colour}]{state}[/]", str(pid or "-"), url, str(log))
    console.print(table)
    sys.exit(0 if all(row[1] == "healthy" for row in rows) else 1)


@cli.group()
def cluster() -> None:
    """Start, stop and inspect the local Kubernetes cluster (real control plane, kwok nodes)."""


@cluster.command("up")
def cluster_up() -> None:
    """Start etcd, the API server, controllers, scheduler and kwok on loopback under the data
    root, register the simulated nodes and wait until they are Ready. Safe to repeat."""
    from adplatform.provisioning.cluster import LocalCluster

    local = LocalCluster(get_settings())
    with console.status("starting the local cluster...") as status:
        results = local.up(progress=lambda step: status.update(f"{step}..."))
    for name, result in results.items():
        console.print(f"{name}: {result}")
    ready, total = local.nodes_ready()
    console.print(f"cluster ready at {local.server}: {ready}/{total} nodes Ready")
    console.print(f"kubeconfig: {local.admin_kubeconfig}")


@cluster.command("down")
def cluster_down() -> None:
    """Stop the local cluster, leaving no process behind (its state stays for the next up)."""
    from adplatform.provisioning.cluster import LocalCluster

    for name, result in LocalCluster(get_settings()).down().items():
        console.print(f"{name}: {result}")


@cluster.command("status")
def cluster_status() -> None:
    """Show each control-plane process and the nodes; exit 1 unless all are healthy."""
    from adplatform.provisioning.cluster import LocalCluster

    local = LocalCluster(get_settings())
    rows = local.status()
    table = Table("component", "state", "pid", "address", "log")
    for name, state, pid, address, log in rows:
        colour = "green" if state == "healthy" else "red"
        table.add_row(name, f"[{colour}]{state}[/]", str(pid or "-"), address, str(log))
    console.print(table)
    healthy = all(row[1] == "healthy" for row in rows)
    ready, total = local.nodes_ready() if healthy else (0, 0)
    if healthy:
        console.print(f"nodes Ready: {ready}/{total}")
    sys.exit(0 if healthy and ready == total else 1)


@cli.command("topics")
def topics() -> None:
    """Create the platform's Kafka topics if they are missing (idempotent)."""
    from adplatform.broker import ensure_topics, topic_specs

    settings = get_settings()
    created = ensure_topics(settings, _source(KAFKA))
    for spec in topic_specs(settings):
        state = "created" if spec.name in created else "exists"
        console.print(f"{spec.name}: {state} ({spec.partitions} partitions)")


def _parse_start(value: str | None) -> datetime:
    from adplatform.events.generator import yesterday_utc

    if value is None:
        return yesterday_utc()
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date or datetime such as 2026-11-26 or 2026-11-26T13:00"
        ) from None
    return start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)


@cli.command("generate")
@click.option(
    "--requests",
    "requests_",
    type=click.IntRange(min=0),
    default=100_000,
    show_default=True,
    help="Bid requests to simulate over the window.",
)
@click.option("--start", help="UTC start of the window, on the hour [default: yesterday 00:00].")
@click.option("--hours", type=click.IntRange(min=1), default=24, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--rate", type=click.FloatRange(min=1), help="Messages per second [default: max].")
@click.option("--late-rate", type=click.FloatRange(0, 1), default=0.01, show_default=True)
@click.option("--duplicate-rate", type=click.FloatRange(0, 1), default=0.005, show_default=True)
@click.option("--malformed-rate", type=click.FloatRange(0, 1), default=0.002, show_default=True)
@click.option(
    "--ledger",
    type=click.Path(path_type=Path),
    help="Write a Parquet ledger of every message (and a .json summary) here.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def generate(
    requests_: int,
    start: str | None,
    hours: int,
    seed: int,
    rate: float | None,
    late_rate: float,
    duplicate_rate: float,
    malformed_rate: float,
    ledger: Path | None,
    no_progress: bool,
) -> None:
    """Simulate ad traffic and produce it to the events topic."""
    from adplatform.broker import ensure_topics
    from adplatform.events.catalog import build_catalog
    from adplatform.events.generator import TrafficConfig
    from adplatform.events.producer import produce_traffic
    from adplatform.lakehouse.reference import write_reference_tables

    try:
        config = TrafficConfig(
            seed=seed,
            start=_parse_start(start),
            hours=hours,
            requests=requests_,
            late_rate=late_rate,
            duplicate_rate=duplicate_rate,
            malformed_rate=malformed_rate,
        )
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    settings = get_settings()
    ensure_topics(settings, _source(KAFKA))
    write_reference_tables(settings, build_catalog(seed))
    summary = produce_traffic(
        settings,
        config,
        rate=rate,
        ledger_path=ledger,
        show_progress=not no_progress,
        kafka=_source(KAFKA),
    )
    console.print(
        f"produced {summary.messages:,} messages to {settings.events_topic} in "
        f"{summary.seconds:.1f}s ({summary.rate:,.0f}/s): {summary.valid:,} valid events, "
        f"{summary.duplicates:,} duplicates, {summary.malformed:,} malformed"
    )


@cli.group()
def ingest() -> None:
    """Kafka → Bronze ingest: run a worker, see where it stands, replay a partition."""


@ingest.command("run")
@click.option("--max-events", type=click.IntRange(min=1), help="Stop after reading this many.")
@click.option("--max-seconds", type=click.FloatRange(min=1), help="Stop after this long.")
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="Stop once the topic is ingested up to where it ended when the run started.",
)
@click.option("--group-id", help="Consumer group [default: ADP_INGEST_GROUP_ID].")
@click.option("--instance-id", help="Static group membership id [default: ADP_INGEST_INSTANCE_ID].")
@click.option("--json", "as_json", is_flag=True, help="Print the run's metrics as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress display (for logs).")
def ingest_run(
    max_events: int | None,
    max_seconds: float | None,
    until_caught_up: bool,
    group_id: str | None,
    instance_id: str | None,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Ingest the events topic into Bronze (and quarantine), exactly once.

    Without a limit it runs until stopped, like a production worker; run several (with the same
    group) to share the partitions. Stopping it at any instant, even with kill -9, loses and
    duplicates nothing: the next run resumes from the commit log.
    """
    import json
    import logging

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from adplatform.ingest.worker import IngestOptions, IngestWorker, RunMetrics

    settings = get_settings()
    overrides: dict[str, Any] = {
        "max_events": max_events,
        "max_seconds": max_seconds,
        "until_caught_up": until_caught_up,
    }
    if group_id:
        overrides["group_id"] = group_id
    if instance_id:
        overrides["instance_id"] = instance_id
    options = IngestOptions.from_settings(settings, **overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=no_progress,
    )
    task = progress.add_task(f"[bold]ingesting[/] {settings.events_topic}: waiting for partitions")

    def show(metrics: RunMetrics) -> None:
        progress.update(
            task,
            description=f"[bold]ingesting[/] {settings.events_topic}: {metrics.consumed:,} "
            f"consumed, {metrics.accepted:,} accepted, {metrics.quarantined:,} quarantined, "
            f"{metrics.rate:,.0f}/s, lag {sum(metrics.lag.values()):,}",
        )

    with progress:
        metrics = IngestWorker(
            settings, options, kafka_client_config(_source(KAFKA)), on_progress=show
        ).run()
    if as_json:
        click.echo(json.dumps(metrics.as_dict()))
        return
    console.print(
        f"ingested {metrics.consumed:,} messages from {settings.events_topic} in "
        f"{metrics.seconds:.1f}s ({metrics.rate:,.0f}/s): {metrics.accepted:,} to Bronze, "
        f"{metrics.quarantined:,} quarantined; lag {sum(metrics.lag.values()):,}"
    )
    for reason, count in sorted(metrics.by_reason.items()):
        console.print(f"  quarantined {reason}: {count:,}")


@ingest.command("status")
@click.option("--group-id", help="Consumer group [default: ADP_INGEST_GROUP_ID].")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def ingest_status(group_id: str | None, as_json: bool) -> None:
    """Per partition: committed position, lag, Bronze and quarantine rows."""
    import json

    from adplatform.ingest.status import ingest_status as partition_status

    settings = get_settings()
    with console.status("reading the commit log and the topic..."):
        rows = partition_status(
            settings, group_id or settings.ingest_group_id, kafka_client_config(_source(KAFKA))
        )
    if as_json:
        click.echo(json.dumps([row.as_dict() for row in rows]))
        return
    table = Table(
        "part",
        "committed",
        "group",
        "topic end",
        "lag",
        "bronze",
        "quarantine",
        "pending",
        "last commit",
        title=f"{settings.events_topic} → {settings.lake_root} (offsets; rows; UTC)",
    )
    for row in rows:
        last = (
            datetime.fromtimestamp(row.last_commit_ms / 1000, UTC).strftime("%m-%d %H:%M:%S")
            if row.last_commit_ms
            else "-"
        )
        table.add_row(
            str(row.partition),
            f"{row.committed_end:,}",
            "-" if row.group_offset is None else f"{row.group_offset:,}",
            f"{row.log_end:,}",
            f"{row.lag:,}",
            f"{row.accepted:,}",
            f"{row.quarantined:,}",
            str(row.unpublished),
            last,
        )
    table.add_row(
        "all",
        "",
        "",
        "",
        f"{sum(r.lag for r in rows):,}",
        f"{sum(r.accepted for r in rows):,}",
        f"{sum(r.quarantined for r in rows):,}",
        str(sum(r.unpublished for r in rows)),
        "",
        style="bold",
    )
    console.print(table)
    console.print(
        "pending: ranges committed by a stopped worker, published by the next one to start",
        style="dim",
    )


@ingest.command("replay")
@click.option("--partition", type=click.IntRange(min=0), required=True)
@click.option("--from-offset", type=click.IntRange(min=0), help="First offset to re-ingest.")
@click.option("--from-time", help="Or the first message at or after this UTC time.")
def ingest_replay(partition: int, from_offset: int | None, from_time: str | None) -> None:
    """Re-ingest a partition's committed offsets from Kafka, replacing their files.

    Never duplicates: each committed range is rewritten under the same file names, so running
    a replay twice, or while the worker runs, counts every message once. Use it to restore
    damaged Bronze files or to re-derive verdicts after a validator fix.
    """
    from rich.progress import Progress

    from adplatform.ingest.commitlog import Entry
    from adplatform.ingest.replay import replay_partition

    if (from_offset is None) == (from_time is None):
        raise click.UsageError("give exactly one of --from-offset and --from-time")
    settings = get_settings()
    when = _parse_start(from_time) if from_time else None
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"replaying partition {partition}", total=None)

        def advance(_entry: Entry, total: int) -> None:
            progress.update(task, total=total, advance=1)

        result = replay_partition(
            settings,
            partition,
            from_offset=from_offset,
            from_time=when,
            client_config=kafka_client_config(_source(KAFKA)),
            on_range=advance,
        )
    if not result.ranges:
        console.print(
            f"nothing committed at or after offset {result.first_offset} of partition "
            f"{partition} yet; the ingest worker will ingest it"
        )
        return
    console.print(
        f"replayed partition {partition} offsets {result.first_offset:,}..{result.end_offset - 1:,}"
        f" ({result.ranges} committed ranges, {result.messages:,} messages): "
        f"{result.accepted:,} in Bronze, {result.quarantined:,} quarantined; "
        f"{result.changed} ranges changed verdicts, {result.files_removed} files removed"
    )


@cli.command("demo")
@click.option(
    "--requests",
    "requests_",
    type=click.IntRange(min=1000),
    default=100_000,
    show_default=True,
    help="Bid requests in the simulated day (about 4 messages each).",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(min=60),
    default=1800,
    show_default=True,
    help="Seconds to wait for the DAGs to finish.",
)
def demo(requests_: int, seed: int, timeout: float) -> None:
    """Run the main job on the local stack: a simulated day through every lakehouse DAG.

    Needs the stack (`make up`). Produces the day, lets the Airflow scheduler run ingest,
    transform and gates, ClickHouse publish, reports and CTR training through their Assets,
    shows them live, and ends with a reconciled summary. Run it again to add the previous day.
    """
    from airflow_client.client.exceptions import ApiException

    from adplatform.airflow_client import AirflowApiError
    from adplatform.demo import DemoError, run_demo
    from adplatform.localstack import AirflowServices, StackError

    settings = get_settings()
    airflow = AirflowServices(settings)
    if not airflow.healthy():
        raise StackError(f"Airflow is not running at {airflow.url}: start the stack with `make up`")
    try:
        run_demo(settings, airflow.client(), requests_, seed, timeout)
    except AirflowApiError as error:  # unreachable, login refused, a wait ran out
        raise DemoError(str(error)) from error
    except ApiException as error:  # the REST API refused a call
        raise DemoError(
            f"Airflow refused a request ({error.status} {error.reason}): {error.body}"
        ) from error


@cli.group()
def model() -> None:
    """Train, inspect and roll back the CTR model (MLflow `ctr_model`, the serving artifact)."""


@model.command("train")
@click.option(
    "--end-date", type=click.DateTime(["%Y-%m-%d"]), help="Last Gold partition [default: newest]."
)
@click.option(
    "--lookback-days",
    type=click.IntRange(min=1),
    help="Partitions to read [default: ADP_CTR_LOOKBACK_DAYS].",
)
def model_train(end_date: datetime | None, lookback_days: int | None) -> None:
    """Run the ctr_model_training steps here: features, train, evaluate, gate, promote, push.

    Exits 0 when the challenger was promoted and pushed, 3 when the gate rejected it."""
    import uuid

    from ml import pipeline

    settings = get_settings()
    work = pipeline.Workspace.for_run(settings, f"cli-{uuid.uuid4().hex[:8]}")
    with console.status("training the CTR model (features, LightGBM, baseline, MLflow)..."):
        summary = pipeline.run_all(
            settings,
            work,
            end_date.date() if end_date else None,
            lookback_days,
            tracking_uri=mlflow_tracking_uri(_source(MLFLOW)),
        )
    table = Table("model", "AUC", "log loss", "norm. entropy", "calibration", title="holdout")
    for name, metrics in summary["metrics"].items():
        table.add_row(
            name,
            f"{metrics['auc']:.4f}",
            f"{metrics['logloss']:.5f}",
            f"{metrics['normalized_entropy']:.4f}",
            f"{metrics['calibration']:.3f}",
        )
    console.print(table)
    console.print(
        f"ctr_model version {summary['model_version']} (run {summary['run_id']}): "
        f"{'promoted' if summary['promote'] else 'rejected'}: {summary['reason']}"
    )
    if "pushed" in summary:
        console.print(f"pushed version {summary['pushed']['version']} to the serving tier")
    sys.exit(0 if summary["promote"] else 3)


@model.command("status")
def model_status() -> None:
    """Show the served version, its history, and the champion/challenger in MLflow."""
    from mlflow.exceptions import MlflowException

    from ml import registry, serving

    settings = get_settings()
    store = serving.serving_store(settings)
    served = serving.status(store)
    if not served:
        console.print(f"serving: nothing published in {store.describe()}")
    else:
        manifest = served["manifest"]
        metrics = manifest.get("holdout_metrics", {})
        console.print(
            f"serving: version {manifest['version']} (published {manifest['published_at']}, "
            f"checksum {manifest['checksum'][:12]}, holdout AUC {metrics.get('auc', float('nan')):.4f}) "
            f"from {store.describe()}; history {', '.join(served['pointer']['history'])}"
        )
    tracking_uri = mlflow_tracking_uri(_source(MLFLOW))
    try:
        client = registry.connect(settings, tracking_uri)
        for alias in (registry.CHAMPION, registry.CHALLENGER):
            summary = registry.version_summary(client, alias)
            console.print(
                f"mlflow {alias}: "
                + (
                    f"version {summary['version']} (run {summary['run_id']}, gate {summary['gate']})"
                    if summary
                    else "none"
                )
            )
    except (MlflowException, OSError) as error:
        console.print(f"[red]mlflow unreachable at {tracking_uri}:[/] {error}")
        sys.exit(1)


@model.command("rollback")
@click.option("--to", "to_version", help="A version served before [default: the previous one].")
def model_rollback(to_version: str | None) -> None:
    """Serve the previous version again and make it the MLflow champion. Safe to repeat with --to."""
    from ml import registry, serving

    settings = get_settings()
    result = serving.rollback(serving.serving_store(settings), to_version)
    console.print(f"serving: version {result.current} (was {result.previous})")
    client = registry.connect(settings, mlflow_tracking_uri(_source(MLFLOW)))
    client.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, result.current)
    if result.previous != result.current:
        client.set_model_version_tag(
            registry.MODEL_NAME, result.previous, "serving.rolled_back", "true"
        )
    console.print(f"mlflow: ctr_model@champion is version {result.current}")


@cli.group()
def clickhouse() -> None:
    """Migrate, publish to and inspect ClickHouse (at ADP_CLICKHOUSE_DSN, or with
    --airflow-connections the clickhouse_default connection)."""


@clickhouse.command("migrate")
def clickhouse_migrate() -> None:
    """Apply the pending schema migrations, in order (safe to repeat)."""
    from adplatform.clickhouse.client import clickhouse_client, redact
    from adplatform.clickhouse.migrate import migrate
    from adplatform.connections import clickhouse_target

    source = _source(CLICKHOUSE)
    with console.status("migrating..."), clickhouse_client(source) as client:
        outcomes = migrate(client)
    for migration, outcome in outcomes:
        console.print(f"{migration}: {outcome}")
    console.print(f"ClickHouse at {redact(clickhouse_target(source).dsn)} is up to date")


@clickhouse.command("status")
def clickhouse_status() -> None:
    """Show each migration's state and the published days; exit 1 if the schema is not current."""
    from adplatform.clickhouse.client import clickhouse_client
    from adplatform.clickhouse.migrate import discover_migrations, schema_state
    from adplatform.clickhouse.publish import published_days

    with clickhouse_client(_source(CLICKHOUSE)) as client:
        state = schema_state(client)
        days = published_days(client) if state.current else []
    migrations = Table("migration", "state", title="schema migrations")
    for migration in discover_migrations():
        migrations.add_row(str(migration), state.applied.get(migration.version, "pending"))
    for version in state.unknown:
        migrations.add_row(f"version {version}", "[red]unknown to this code[/]")
    console.print(migrations)
    published = Table("day", "rows", "impressions", "clicks", "spend (USD)", "published at")
    for day in days:
        published.add_row(
            str(day["event_date"]),
            f"{day['rows']:,}",
            f"{day['impressions']:,}",
            f"{day['clicks']:,}",
            f"{day['spend_micros'] / 1e6:,.2f}",
            f"{day['published_at']:%Y-%m-%d %H:%M:%S}",
        )
    console.print(published)
    sys.exit(0 if state.current else 1)


@clickhouse.command("query")
@click.argument("sql")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Bind a value to {NAME:Type} in SQL (repeatable).",
)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV with a header instead of a table.")
def clickhouse_query(sql: str, params: tuple[str, ...], as_csv: bool) -> None:
    """Run a read-only SQL query, e.g. against adplatform.hourly_performance, and print the rows.

    Example: adplatform clickhouse query "SELECT campaign_id, sum(clicks) FROM
    adplatform.hourly_performance WHERE event_date = {day:Date} GROUP BY 1" --param day=2026-11-26
    """
    import csv

    from adplatform.clickhouse.client import clickhouse_client, read_only_query

    bound = {}
    for param in params:
        name, separator, value = param.partition("=")
        if not separator or not name.isidentifier():
            raise click.BadParameter(f"{param!r}: use NAME=VALUE", param_hint="--param")
        bound[name] = value
    with clickhouse_client(_source(CLICKHOUSE)) as client:
        result = read_only_query(client, sql, bound)
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(result.column_names)
        writer.writerows(result.result_rows)
        return
    table = Table(*result.column_names)
    for row in result.result_rows:
        table.add_row(*map(str, row))
    console.print(table)
    console.print(f"{len(result.result_rows):,} rows")


@clickhouse.command("publish")
@click.option(
    "--date",
    "dates",
    multiple=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="Re-publish this Gold day even if unchanged (repeatable) [default: the changed days].",
)
def clickhouse_publish(dates: tuple[datetime, ...]) -> None:
    """Publish the reference dimensions and the changed Gold days (idempotent)."""
    from adplatform.clickhouse.client import clickhouse_client
    from adplatform.clickhouse.publish import publish_dimensions, publish_facts

    settings = get_settings()
    with clickhouse_client(_source(CLICKHOUSE)) as client:
        with console.status("publishing dimensions..."):
            dimensions = publish_dimensions(client, settings)
        console.print(", ".join(f"dim_{name}: {rows:,}" for name, rows in dimensions.items()))
        with console.status("publishing Gold days...") as status:
            results = publish_facts(
                client,
                settings,
                [d.date() for d in dates],
                on_day=lambda r: console.print(
                    f"{r.event_date}: {r.totals.rows:,} rows from {r.hours} hours, verified "
                    f"against Gold ({r.seconds:.1f}s)"
                ),
            )
            status.update("done")
    if not results:
        console.print("every Gold day is already published unchanged")


@cli.group()
def report() -> None:
    """Render the ClickHouse reports (CSV, PNG charts, HTML) for any date range."""


@report.command("list")
def report_list() -> None:
    """List the reports and what each shows."""
    from adplatform.reporting.reports import REPORTS

    table = Table("report", "title", "shows")
    for item in REPORTS.values():
        table.add_row(item.name, item.title, item.summary)
    console.print(table)


@report.command("campaigns")
def report_campaigns() -> None:
    """List the campaign ids a report can be limited to."""
    from adplatform.clickhouse.client import clickhouse_client
    from adplatform.reporting.reports import campaigns

    with clickhouse_client(_source(CLICKHOUSE)) as client:
        rows = campaigns(client)
    table = Table("campaign id", "name")
    for campaign_id, name in rows:
        table.add_row(campaign_id, name)
    console.print(table)


@report.command("render")
@click.argument("names", nargs=-1)
@click.option("--start", help="First day, YYYY-MM-DD [default: the 7-day window ending at --end].")
@click.option("--end", help="Last day, YYYY-MM-DD [default: yesterday, UTC].")
@click.option("--campaign", help="Limit every report to one campaign id.")
@click.option("--limit", help="Rows of the top-N reports [default: 10].")
@click.option("--threshold", help="|z| from which anomalies are flagged [default: 3].")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the report folders [default: <data root>/reports].",
)
def report_render(
    names: tuple[str, ...],
    start: str | None,
    end: str | None,
    campaign: str | None,
    limit: str | None,
    threshold: str | None,
    out: Path | None,
) -> None:
    """Render report NAMES (default: all; see `report list`) as CSV, charts and HTML."""
    from rich.progress import Progress

    from adplatform.clickhouse.client import clickhouse_client
    from adplatform.reporting.render import render_report, write_index
    from adplatform.reporting.reports import (
        REPORTS,
        check_request,
        parse_request,
        report_window,
        run_report,
    )

    unknown = [n for n in names if n not in REPORTS]
    if unknown:
        raise click.BadParameter(
            f"unknown report {', '.join(unknown)}; choose from {', '.join(REPORTS)}",
            param_hint="NAMES",
        )
    chosen = list(names or REPORTS)
    first, last = report_window(datetime.now(UTC).date(), end, start)
    request = parse_request(first, last, campaign, limit, threshold)
    settings = get_settings()
    out_dir = (out or settings.reports_dir) / request.slug
    frames = {}
    with clickhouse_client(_source(CLICKHOUSE)) as client:
        check_request(client, request, settings)
        with Progress(console=console, transient=True) as progress:
            querying = progress.add_task("querying", total=len(chosen))
            for name in chosen:
                progress.update(querying, description=f"querying {name}")
                frames[name] = run_report(client, REPORTS[name], request)
                progress.advance(querying)
    with Progress(console=console, transient=True) as progress:
        rendering = progress.add_task("rendering", total=len(chosen))
        for name in chosen:
            progress.update(rendering, description=f"rendering {name}")
            render_report(REPORTS[name], request, frames[name], out_dir)
            progress.advance(rendering)
    index = write_index(request, out_dir)
    for name in chosen:
        console.print(f"{name}: {len(frames[name]):,} rows → {out_dir / name}.html", soft_wrap=True)
    console.print(f"index: {index}", soft_wrap=True)


def main() -> None:
    cli()
