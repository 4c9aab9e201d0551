"""Benchmarks: each measures a capability against a reference measured in the same run."""
