"""Benchmark populations: CASEFIND_BENCH_PATIENTS (default 100,000, the CI smoke size;
1,000,000 for the figures in docs/benchmarks.md), generated once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench_support import PATIENTS
from casefind.synth import generate


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


@pytest.fixture(scope="session")
def rules_store(request):
    """CASEFIND_BENCH_STORE=PATH measures an existing store (e.g. a 1M store built once)
    instead of generating and ingesting one."""
    path = os.environ.get("CASEFIND_BENCH_STORE")
    return Path(path) if path else request.getfixturevalue("store")
