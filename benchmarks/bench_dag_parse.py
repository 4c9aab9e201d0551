"""DAG-folder parse time per file vs a one-task reference DAG, parsed the same way.

Like Airflow's DAG processor, a warm parent (Airflow already imported) forks one child per
file; the child times the parse. The ratio shows what each DAG file adds over the cheapest DAG
Airflow can parse.
"""

from __future__ import annotations

import os
import statistics
import textwrap
import time
from pathlib import Path

from adplatform.settings import REPO_ROOT
from benchmarks.harness import Context, Result

REPEATS = 5
REFERENCE_DAG = textwrap.dedent("""
    from airflow.sdk import dag, task

    @dag(schedule=None)
    def reference_dag():
        @task
        def noop():
            return None

        noop()

    reference_dag()
""")


def _parse_seconds(path: Path) -> float:
    """Median seconds to parse ``path`` in a freshly forked child of this warm process."""
    from airflow.dag_processing.dagbag import DagBag

    samples = []
    for _ in range(REPEATS):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: parse once, report, exit without cleanup
            os.close(read)
            started = time.perf_counter()
            bag = DagBag(dag_folder=str(path), safe_mode=False)
            elapsed = time.perf_counter() - started if not bag.import_errors else -1.0
            os.write(write, str(elapsed).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            elapsed = float(pipe.read())
        os.waitpid(pid, 0)
        if elapsed < 0:
            raise RuntimeError(f"{path} has import errors")
        samples.append(elapsed)
    return statistics.median(samples)


def run(ctx: Context) -> list[Result]:
    os.environ.setdefault("AIRFLOW_HOME", str(ctx.root / "airflow"))
    reference = ctx.root / "reference_dag.py"
    reference.write_text(REFERENCE_DAG)
    _parse_seconds(reference)  # warm the parent's imports
    reference_seconds = _parse_seconds(reference)
    results = []
    for path in sorted((REPO_ROOT / "dags").glob("*.py")):
        seconds = _parse_seconds(path)
        results.append(
            Result(
                benchmark="dag_parse",
                metric=f"parse {path.name}",
                value=seconds * 1000,
                unit="ms",
                reference="one-task reference DAG",
                reference_value=reference_seconds * 1000,
                higher_is_better=False,
            )
        )
    return results
