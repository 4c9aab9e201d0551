"""`adplatform demo` end to end, twice, on a real stack (Kafka, MLflow, Airflow's scheduler,
dag-processor and triggerer): each run's summary reconciles, and the second run adds the day
before and counts nothing twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from adplatform.demo import DemoState
from adplatform.events.catalog import build_catalog
from adplatform.events.generator import TrafficConfig, TrafficSimulator
from adplatform.events.schema import EventType
from adplatform.localstack import LocalStack
from adplatform.settings import ENV_PREFIX, Settings, load_settings
from tests.conftest import free_port

# Two whole demo runs on a stack of its own: longer than the suite's per-test limit.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600)]

ADPLATFORM = str(Path(sys.executable).parent / "adplatform")
REQUESTS = 3_000  # about 12,500 messages a day: enough clicks for the CTR model to train


def demo(settings: Settings) -> str:
    """One `adplatform demo` run as a user starts it; its output (the summary)."""
    result = subprocess.run(
        [ADPLATFORM, "demo", "--requests", str(REQUESTS), "--timeout", "900"],
        env=os.environ | settings.environment() | {"COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def produced(summary: str) -> int:
    return int(re.search(r"this run produced\W+([\d,]+) messages", summary)[1].replace(",", ""))


def ingested(summary: str) -> tuple[int, int, int]:
    """consumed, accepted, quarantined over all runs."""
    found = re.search(r"([\d,]+) consumed = ([\d,]+) in Bronze \+ ([\d,]+) quarantined", summary)
    return tuple(int(n.replace(",", "")) for n in found.groups())


def published(summary: str) -> dict[str, str]:
    """Each day's Gold-vs-ClickHouse line: the day → its totals (the same in both)."""
    return dict(re.findall(r"Gold vs ClickHouse (\S+)\W+(.+?) in both ✓ equal", summary))


def impressions(totals: str) -> int:
    return int(re.match(r"([\d,]+) impressions", totals)[1].replace(",", ""))


def valid_impressions(day: dict) -> int:
    """A simulated day's distinct valid impressions, from the generator (the ground truth)."""
    config = TrafficConfig(
        seed=day["seed"], start=datetime.fromisoformat(day["start"]), requests=day["requests"]
    )
    return sum(
        1
        for m in TrafficSimulator(config, build_catalog(config.seed)).messages()
        if m.event_type == EventType.IMPRESSION and m.expected_reason is None and not m.duplicate
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A stack of the demo's own: the demo fills the lakehouse under its data root with days the
    session's other tests (the CTR model's, which train on the newest Gold days) must not see."""
    with pytest.MonkeyPatch.context() as env:  # not the session's services (stack_env)
        for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
            env.delenv(name)
        settings = load_settings(
            data_root=tmp_path_factory.mktemp("demo"),
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            mlflow_port=free_port(),
            spark_connect_port=free_port(),
            airflow_port=free_port(span=3),  # api + worker and triggerer log servers
        )
    stack = LocalStack(settings)
    try:
        stack.up()
        yield settings
    finally:
        stack.down()


def test_two_runs_reconcile_and_the_second_adds_the_day_before_counting_nothing_twice(stack):
    first = demo(stack)
    [day] = DemoState.load(stack).days
    assert day["produced"] and day["requests"] == REQUESTS
    assert "✗" not in first
    consumed, accepted, quarantined = ingested(first)
    assert consumed == accepted + quarantined == produced(first)
    one_day = published(first)
    first_day = day["start"][:10]
    assert list(one_day) == [first_day]
    assert impressions(one_day[first_day]) == valid_impressions(day)

    second = demo(stack)
    days = DemoState.load(stack).days
    day_before = (datetime.fromisoformat(first_day) - timedelta(days=1)).date().isoformat()
    assert [d["start"][:10] for d in days] == [first_day, day_before]
    assert all(d["produced"] for d in days)
    assert "✗" not in second
    consumed, accepted, quarantined = ingested(second)
    assert consumed == accepted + quarantined == produced(first) + produced(second)
    two_days = published(second)
    assert set(two_days) == {first_day, day_before}
    assert two_days[first_day] == one_day[first_day]  # the first day is counted once
    assert impressions(two_days[day_before]) == valid_impressions(days[1])
