"""Benchmarks: ``python -m dit3d.bench NAME`` prints one JSON line.

Benchmarks are separate from tests. Each compares alternatives side by side within one
run, since ratios are steadier than absolute times on shared machines.
"""
from dit3d.bench.registry import BENCHMARKS, run_benchmark

__all__ = ["BENCHMARKS", "run_benchmark"]
