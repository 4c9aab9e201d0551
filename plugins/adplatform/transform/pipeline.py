"""The transform run, step by step, as the DAG calls it: plan, gate, publish, commit.

Write, audit, publish: Spark writes each layer into the run's staging area, a quality gate
checks it there, and only then are its partitions swapped into the live tables. Every step
takes the run area's path (an XCom-friendly string) and finds what earlier steps left there.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from adplatform.lakehouse.partitions import (
    HOUR,
    date_partition,
    format_hours,
    hour_partition,
    parse_hours,
    replace_partitions,
)
from adplatform.lakehouse.runs import (
    REPLACED_SILVER,
    Plan,
    RunArea,
    attributed_impression_hours,
    commit,
    plan_hours,
    remove_stale_runs,
)
from adplatform.lakehouse.tables import (
    GOLD_CTR_TRAINING,
    GOLD_HOURLY_PERFORMANCE,
    SILVER_EVENTS,
)
from adplatform.settings import Settings

log = logging.getLogger(__name__)


def plan_run(
    settings: Settings, run_id: str, start: date | None = None, end: date | None = None
) -> dict[str, Any]:
    """Decide the Silver hours to rebuild and open the run's staging area."""
    area = RunArea.for_run(settings, run_id)
    shutil.rmtree(area.root, ignore_errors=True)  # a retried plan starts clean
    for stale in remove_stale_runs(settings, keep=area):
        log.info("removed the staging area of an old run: %s", stale)
    plan = plan_hours(settings, start, end)
    if plan.hours:
        area.write("plan", plan.to_json())
    hours = format_hours(plan.hours)
    log.info(
        "%s: %d Silver hour(s) to rebuild: %s",
        "backfill" if plan.backfill else "incremental run",
        len(plan.hours),
        hours or "none",
    )
    return {"run_dir": str(area.root), "hours": hours, "hour_count": len(plan.hours)}


def _plan(area: RunArea) -> Plan:
    return Plan.from_json(area.read("plan"))


def check(settings: Settings, layer: str, run_dir: str, run_name: str) -> str:
    """Run the quality gate of ``layer`` (bronze, silver, gold or ctr_training) on this run's
    data; raise QualityGateFailed when an expectation fails. Returns the Data Docs index."""
    from adplatform.quality import lakehouse

    area = RunArea(Path(run_dir))
    if layer == "bronze":
        report = lakehouse.check_bronze(settings, _plan(area), run_name)
    elif layer == "silver":
        report = lakehouse.check_silver(settings, _plan(area), area, run_name)
    elif layer == "gold":
        report = lakehouse.check_gold(settings, area, run_name)
    elif layer == "ctr_training":
        report = lakehouse.check_ctr_training(settings, area, run_name)
    else:
        raise ValueError(f"unknown layer {layer!r}: choose bronze, silver, gold or ctr_training")
    report.raise_for_failures()
    return report.index


def publish_silver(settings: Settings, run_dir: str) -> dict[str, Any]:
    """Swap the gated Silver hours into the live table."""
    area = RunArea(Path(run_dir))
    hours = _plan(area).hours
    if not area.has(REPLACED_SILVER):  # a retry keeps what the first attempt saw
        # Gold hours the outgoing clicks and conversions count in: rebuilt too, even when the
        # new Silver no longer reaches them (a replay or a validator fix took them back).
        outgoing = attributed_impression_hours(settings, hours)
        area.write(REPLACED_SILVER, {"impression_hours": format_hours(outgoing)})
    filled = replace_partitions(
        area.staged(SILVER_EVENTS), SILVER_EVENTS.path(settings), map(hour_partition, hours)
    )
    log.info("published %d Silver hour(s), %d with data", len(hours), filled)
    return {
        "hours": format_hours(hours),
        "hours_with_data": filled,
        # For the training set's DAG, which builds from this update (see plan_training_set).
        "replaced_impression_hours": area.read(REPLACED_SILVER)["impression_hours"],
    }


def plan_training_set(
    settings: Settings,
    run_id: str,
    updates: list[dict[str, Any]],
    start: date | None = None,
    end: date | None = None,
) -> dict[str, Any]:
    """Open a training-set run's staging area for Silver ``updates`` (what publish_silver
    returned, carried by the Silver Asset's events) and the UTC days ``start``..``end`` of a
    backfill:
    their hours, and the Gold hours the Silver the updates replaced fed, recorded where the
    training-set job looks for them."""
    area = RunArea.for_run(settings, f"ctr_training_set__{run_id}")
    shutil.rmtree(area.root, ignore_errors=True)  # a retried plan starts clean
    hours = sorted(
        {h for update in updates for h in parse_hours(update["hours"])}
        | set(_days_hours(start, end))
    )
    replaced = sorted(
        {h for update in updates for h in parse_hours(update["replaced_impression_hours"])}
    )
    if hours:
        area.write(REPLACED_SILVER, {"impression_hours": format_hours(replaced)})
    log.info("training set for %d updated Silver hour(s): %s", len(hours), format_hours(hours))
    return {"run_dir": str(area.root), "hours": format_hours(hours)}


def _days_hours(start: date | None, end: date | None) -> list[datetime]:
    if start is None or end is None:
        return []
    first = datetime.combine(start, time(), UTC)
    return [first + i * HOUR for i in range(24 * ((end - start).days + 1))]


def publish_gold(settings: Settings, run_dir: str) -> dict[str, Any]:
    """Swap the gated Gold hours into the live hourly performance table."""
    area = RunArea(Path(run_dir))
    hours = parse_hours(area.read("gold_hourly")["hours"])
    replace_partitions(
        area.staged(GOLD_HOURLY_PERFORMANCE),
        GOLD_HOURLY_PERFORMANCE.path(settings),
        map(hour_partition, hours),
    )
    log.info("published %d Gold hour(s)", len(hours))
    return {"hours": format_hours(hours)}


def publish_ctr_training(settings: Settings, run_dir: str) -> dict[str, Any]:
    """Swap the gated training days into the live CTR training set."""
    area = RunArea(Path(run_dir))
    days = [date.fromisoformat(d) for d in area.read("gold_ctr")["days"]]
    replace_partitions(
        area.staged(GOLD_CTR_TRAINING), GOLD_CTR_TRAINING.path(settings), map(date_partition, days)
    )
    log.info("published %d training day(s)", len(days))
    return {"days": [d.isoformat() for d in days]}


def finish(settings: Settings, run_dir: str) -> None:
    """Once Silver and Gold are published: record the Bronze inputs as done, drop the staging."""
    area = RunArea(Path(run_dir))
    if not area.root.exists():
        log.info("the run was finished already: %s is gone", run_dir)
        return
    commit(settings, _plan(area))
    drop_run_area(run_dir)


def drop_run_area(run_dir: str) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)
