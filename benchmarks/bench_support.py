"""Benchmark population size and small helpers for recording results."""
from __future__ import annotations

import os

PATIENTS = int(os.environ.get("CASEFIND_BENCH_PATIENTS", "100000"))


def _median_of(benchmark) -> float:
    """The benchmark's median, or nan when benchmarks run once as smoke tests (disabled)."""
    stats = getattr(benchmark, "stats", None)
    return stats.stats.median if stats is not None else float("nan")


def ratio(a: float, b: float, digits: int = 2):
    """a / b rounded, or None when either is unknown (benchmarks disabled)."""
    r = a / b if b else float("nan")
    return None if r != r else round(r, digits)
