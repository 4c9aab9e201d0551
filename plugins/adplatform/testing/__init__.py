"""Synthetic data for the tests and the benchmarks: never imported by the runtime.

The DAGs, the CLI, the Spark jobs and ``ml/`` read what the lakehouse wrote; these generators
stand in for it where a test or a benchmark needs Gold without running the lakehouse. An
import-linter contract (pyproject.toml) and ``tests/unit/test_layering.py`` keep every runtime
module from importing this package.
"""
