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
        from adplatform.localstack import StackError
        from ml.errors import CtrModelError

        try:
            return super().invoke(ctx)
        except (
            SettingsError,
            StackError,
            BrokerUnreachable,
            DeliveryFailed,
            CtrModelError,
        ) as error:
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
            settings, work, end_date.date() if end_date else None, lookback_days
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
    try:
        client = registry.connect(settings)
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
        console.print(f"[red]mlflow unreachable at {settings.mlflow_tracking_uri}:[/] {error}")
        sys.exit(1)


@model.command("rollback")
@click.option("--to", "to_version", help="A version served before [default: the previous one].")
def model_rollback(to_version: str | None) -> None:
    """Serve the previous version again and make it the MLflow champion. Safe to repeat with --to."""
    from ml import registry, serving

    settings = get_settings()
    result = serving.rollback(serving.serving_store(settings), to_version)
    console.print(f"serving: version {result.current} (was {result.previous})")
    client = registry.connect(settings)
    client.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, result.current)
    if result.previous != result.current:
        client.set_model_version_tag(
            registry.MODEL_NAME, result.previous, "serving.rolled_back", "true"
        )
    console.print(f"mlflow: ctr_model@champion is version {result.current}")


def main() -> None:
    cli()
