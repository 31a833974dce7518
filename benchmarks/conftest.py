"""Benchmark populations: CASEFIND_BENCH_PATIENTS (default 100,000, the CI smoke size;
1,000,000 for the figures in docs/benchmarks.md), generated once per session.

CASEFIND_BENCH_STORE=PATH measures an existing store (e.g. a 1M store built once) instead of
ingesting one, and CASEFIND_BENCH_SOURCE=PATH is the synth folder it was ingested from (the
peers read the source tables; without it, with a CASEFIND_BENCH_STORE, the source is
generated anew with the benchmark seed). CASEFIND_BENCH_ROUNDS sets the rounds per contender
(with --benchmark-enable; the smoke test runs each once)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench_support import PATIENTS, REPORT, SHARDS
from casefind.synth import generate

SEED = 7


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="session")
def population(bench_dir):
    src = os.environ.get("CASEFIND_BENCH_SOURCE")
    if src:
        return Path(src)
    out = bench_dir / "source"
    generate(PATIENTS, SEED, out)
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


@pytest.fixture(scope="session")
def sharded_store(population, bench_dir):
    """The population as a sharded store of CASEFIND_BENCH_SHARDS shards (default 4), or
    CASEFIND_BENCH_SHARDED_STORE=PATH, one built before (e.g. 10M patients in 16 shards)."""
    given = os.environ.get("CASEFIND_BENCH_SHARDED_STORE")
    if given:
        return Path(given)
    from casefind.ingest.sharded import run_sharded_ingest

    path = bench_dir / f"store-{SHARDS}-shards"
    run_sharded_ingest(population, path, SHARDS)
    return path


@pytest.fixture(scope="session")
def peer_db(population, bench_dir):
    """The peers' DuckDB database of the source tables (benchmarks/peers.py), loaded once
    (untimed here; test_bench_foundation times the load as ingest's peer)."""
    from peers import load_duckdb

    path = bench_dir / "peer-queries.duckdb"
    if not path.exists():
        load_duckdb(population, path)
    return path


def pytest_terminal_summary(terminalreporter):
    if not REPORT:
        return
    tr = terminalreporter
    tr.section("casefind benchmarks: contenders interleaved in one run (seconds; peer median / ours)")
    for test, r in REPORT:
        tr.write_line(test)
        for name, s in r["times"].items():
            if s is None:
                continue
            over = "" if name == r["ours"] else f"   x{r['over_ours'].get(name)} of {r['ours']}"
            tr.write_line(f"    {name:<28} min {s['min']:>9.4f}  median {s['median']:>9.4f}  max {s['max']:>9.4f}"
                          f"  ({s['rounds']} rounds){over}")
