"""What every benchmark shares: results with their reference, services started once, output.

A benchmark is a module ``benchmarks/bench_<name>.py`` with ``run(ctx) -> list[Result]``. Each
Result carries the figure, the reference figure measured in the same run on the same machine,
and their ratio; `make bench` writes them all to benchmarks/results/latest.json and a table.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adplatform.localstack import LocalStack, free_port
from adplatform.settings import Settings, load_settings

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class Result:
    benchmark: str
    metric: str
    value: float
    unit: str
    reference: str  # what the figure is measured against
    reference_value: float
    higher_is_better: bool = True
    target: str = ""  # the target, in words, e.g. ">= 0.5"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.value / self.reference_value if self.reference_value else float("nan")


class Context:
    """Settings under a scratch data root, and the local services, each started once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings: Settings = load_settings(
            data_root=root / "data",
            kafka_port=free_port(),
            kafka_controller_port=free_port(),
            mlflow_port=free_port(),
            spark_connect_port=free_port(),
            airflow_port=free_port(span=3),  # api + worker and triggerer log servers
        )
        self.stack = LocalStack(self.settings)

    def service(self, name: str) -> Settings:
        self.stack.up([name])
        return self.settings

    def close(self) -> None:
        self.stack.down()


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


@contextmanager
def context() -> Iterator[Context]:
    with tempfile.TemporaryDirectory(prefix="adplatform-bench-") as root:
        ctx = Context(Path(root))
        try:
            yield ctx
        finally:
            ctx.close()


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_1_5_15_min": os.getloadavg(),
    }


def write_results(results: list[Result], command: str, started: dict[str, Any]) -> Path:
    """latest.json: the results with the command and the machine (its load when the run started
    and when it ended), so a figure copied to benchmarks/measured/ can be traced."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "latest.json"
    path.write_text(
        json.dumps(
            {
                "command": command,
                "machine_at_start": started,
                "machine_at_end": machine(),
                "results": [asdict(r) | {"ratio": r.ratio} for r in results],
            },
            indent=2,
        )
    )
    return path
