"""Benchmark populations: CASEFIND_BENCH_PATIENTS (default 100,000, the CI smoke size;
1,000,000 for the figures in docs/benchmarks.md), generated once per session."""
from __future__ import annotations

import os

import pytest

from casefind.synth import generate

PATIENTS = int(os.environ.get("CASEFIND_BENCH_PATIENTS", "100000"))


def _median_of(benchmark) -> float:
    """The benchmark's median, or nan when benchmarks run once as smoke tests (disabled)."""
    stats = getattr(benchmark, "stats", None)
    return stats.stats.median if stats is not None else float("nan")


def ratio(a: float, b: float, digits: int = 2):
    """a / b rounded, or None when either is unknown (benchmarks disabled)."""
    r = a / b if b else float("nan")
    return None if r != r else round(r, digits)


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="session")
def population(bench_dir):
    out = bench_dir / "source"
    generate(PATIENTS, 7, out)
    return out


@pytest.fixture(scope="session")
def store(population, bench_dir):
    from casefind.ingest import run_ingest

    path = bench_dir / "store-rules"
    run_ingest(population, path)
    return path
