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

from adplatform.settings import SettingsError, get_settings

console = Console()


class _Cli(click.Group):
    """Turns the platform's own exceptions into one-line errors instead of stack traces."""

    def invoke(self, ctx: click.Context) -> Any:
        from adplatform.broker import BrokerUnreachable
        from adplatform.events.producer import DeliveryFailed
        from adplatform.ingest.commitlog import IngestError
        from adplatform.localstack import StackError

        try:
            return super().invoke(ctx)
        except (SettingsError, StackError, BrokerUnreachable, DeliveryFailed, IngestError) as error:
            console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
            sys.exit(1)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run and inspect the adplatform: local stack, traffic, lakehouse and models."""


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
    """Start, stop and inspect the local stack (Kafka, MLflow, Airflow)."""


@stack.command("install")
def stack_install() -> None:
    """Fetch what the local services need beyond Python (the Kafka broker's jars)."""
    from adplatform.localstack import ensure_kafka_jars

    console.print(f"kafka jars: {ensure_kafka_jars()}")


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


@cli.command("topics")
def topics() -> None:
    """Create the platform's Kafka topics if they are missing (idempotent)."""
    from adplatform.broker import ensure_topics, topic_specs

    settings = get_settings()
    created = ensure_topics(settings)
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
    ensure_topics(settings)
    write_reference_tables(settings, build_catalog(seed))
    summary = produce_traffic(
        settings, config, rate=rate, ledger_path=ledger, show_progress=not no_progress
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
    "--until-caught-up", is_flag=True, help="Stop once the assigned partitions are ingested."
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
        metrics = IngestWorker(settings, options, on_progress=show).run()
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
        rows = partition_status(settings, group_id or settings.ingest_group_id)
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
            settings, partition, from_offset=from_offset, from_time=when, on_range=advance
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
    type=click.IntRange(min=1),
    default=200_000,
    show_default=True,
    help="Bid requests in the simulated day.",
)
@click.option("--seed", type=int, default=7, show_default=True)
def demo(requests_: int, seed: int) -> None:
    """Run the main job on the local stack: a day of traffic through the lakehouse."""
    from adplatform.broker import ensure_topics
    from adplatform.events.catalog import build_catalog
    from adplatform.events.generator import TrafficConfig, yesterday_utc
    from adplatform.events.producer import produce_traffic
    from adplatform.lakehouse.reference import write_reference_tables

    settings = get_settings()
    ensure_topics(settings)
    write_reference_tables(settings, build_catalog(seed))
    config = TrafficConfig(seed=seed, start=yesterday_utc(), requests=requests_)
    summary = produce_traffic(settings, config)
    console.print(f"produced {summary.messages:,} messages ({summary.valid:,} valid events)")


def main() -> None:
    cli()
