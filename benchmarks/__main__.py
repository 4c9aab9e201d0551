"""`python -m benchmarks [NAME ...]`: run the benchmarks (default: all) and print a table."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.harness import Result, context, machine, write_results

HERE = Path(__file__).parent


def main() -> int:
    available = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(available)}",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(available)}")
    console = Console()
    started = machine()
    results: list[Result] = []
    failed = []
    with context() as ctx:
        for name in args.names or available:
            console.rule(f"benchmark: {name}")
            try:
                module = importlib.import_module(f"benchmarks.bench_{name}")
                for result in module.run(ctx):
                    console.print(
                        f"{result.metric}: {result.value:,.3f} {result.unit} vs "
                        f"{result.reference} {result.reference_value:,.3f} → ratio "
                        f"{result.ratio:.3f}"
                    )
                    results.append(result)
            except Exception:  # report and go on: one broken benchmark must not hide the rest
                console.print(traceback.format_exc(), style="red")
                failed.append(name)
    table = Table(
        "benchmark",
        "metric",
        "value",
        "reference",
        "ratio",
        "target",
        title="adplatform benchmarks",
    )
    for r in results:
        table.add_row(
            r.benchmark,
            r.metric,
            f"{r.value:,.2f} {r.unit}",
            f"{r.reference}: {r.reference_value:,.2f}",
            f"{r.ratio:.3f}",
            r.target,
        )
    console.print(table)
    command = " ".join(["python -m benchmarks", *args.names])
    console.print(f"results: {write_results(results, command, started)}")
    if failed:
        console.print(f"[red]failed:[/] {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
