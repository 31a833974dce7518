"""Benchmark population size, rounds, interleaved races against peers, and the checks that a
peer gives the same answer as casefind."""
from __future__ import annotations

import datetime as dt
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

PATIENTS = int(os.environ.get("CASEFIND_BENCH_PATIENTS", "100000"))
SHARDS = int(os.environ.get("CASEFIND_BENCH_SHARDS", "4"))
# rounds per contender when the benchmarks are enabled (--benchmark-enable); once when disabled
ROUNDS = int(os.environ["CASEFIND_BENCH_ROUNDS"]) if os.environ.get("CASEFIND_BENCH_ROUNDS") else None

# every race of the session, printed at the end (conftest.py's terminal summary)
REPORT: list[tuple[str, dict]] = []


def _median_of(benchmark) -> float:
    """The benchmark's median, or nan when benchmarks run once as smoke tests (disabled)."""
    stats = getattr(benchmark, "stats", None)
    return stats.stats.median if stats is not None else float("nan")


def ratio(a: float, b: float, digits: int = 2):
    """a / b rounded, or None when either is unknown (benchmarks disabled)."""
    r = a / b if b else float("nan")
    return None if r != r else round(r, digits)


def rounds(benchmark, default: int) -> int:
    """How many rounds: once as a smoke test, else CASEFIND_BENCH_ROUNDS or the test's default."""
    if benchmark.disabled:
        return 1
    return ROUNDS or default


def summary(times: list[float]) -> dict | None:
    if not times:
        return None
    return {"min": round(min(times), 4), "median": round(statistics.median(times), 4),
            "max": round(max(times), 4), "rounds": len(times)}


def race(benchmark, name: str, ours: Callable, others: dict[str, Callable], n_rounds: int,
         between: Callable | None = None) -> tuple[object, dict[str, list[float]]]:
    """Time ``ours`` (the benchmark's own measurement) and each of ``others`` in the same
    session, interleaved round by round: before each timed round of ``ours`` every other
    contender runs once, in an order rotated each round (A B C, B C A, ...). ``between``, if
    given, runs untimed before each contender (e.g. removing a previous output). Returns the
    last result of ``ours`` and every contender's times; min / median / max and each
    contender's median over ours go into the benchmark's extra_info and the session report."""
    times: dict[str, list[float]] = {name: [], **{k: [] for k in others}}
    order = list(others)
    state = {"round": 0}

    def setup():
        k = state["round"] % max(len(order), 1)
        for other in order[k:] + order[:k]:
            if between:
                between()
            t = time.perf_counter()
            others[other]()
            times[other].append(time.perf_counter() - t)
        if between:
            between()
        state["round"] += 1

    def timed():
        t = time.perf_counter()
        out = ours()
        times[name].append(time.perf_counter() - t)
        return out

    result = benchmark.pedantic(timed, setup=setup, rounds=n_rounds, iterations=1)
    record(benchmark, name, times)
    return result, times


def record(benchmark, name: str, times: dict[str, list[float]]) -> None:
    med = {k: statistics.median(v) for k, v in times.items() if v}
    benchmark.extra_info["seconds"] = {k: summary(v) for k, v in times.items()}
    benchmark.extra_info["median_over_" + name] = {k: ratio(m, med[name]) for k, m in med.items() if k != name}
    REPORT.append((benchmark.name, {"ours": name, "times": {k: summary(v) for k, v in times.items()},
                                    "over_ours": benchmark.extra_info["median_over_" + name]}))


# --- peak memory of a command ------------------------------------------------------------------

_LAUNCH = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def run_measured(cmd: list[str], **kw) -> float:
    """Run ``cmd`` from a small launcher process and return its peak RSS in GB. A command
    started straight from the benchmark process inherits the benchmark's own high-water mark
    (Linux keeps ru_maxrss across vfork/fork and exec), so its ru_maxrss, and the peak_memory_mb
    a run's manifest records, would read the size of pytest, not its own."""
    p = subprocess.run([sys.executable, "-c", _LAUNCH, *cmd], check=True, capture_output=True, text=True, **kw)
    return int(p.stdout.strip().splitlines()[-1]) / 1024**2


# --- the same answer ---------------------------------------------------------------------------

def _same(v, w) -> bool:
    if isinstance(v, float) or isinstance(w, float):
        if v is None or w is None:
            return v is w
        return math.isclose(float(v), float(w), rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(v, dt.datetime):
        v = v.date()
    if isinstance(w, dt.datetime):
        w = w.date()
    return v == w


def check_rows(ours: list[dict], peer: list[dict], key: tuple[str, ...], what: str,
               places: dict[str, int] | None = None) -> int:
    """The peer's rows equal ours, row by row on ``key``, every column the peer gives that we
    have, once the peer's values are rounded as the rule publishes them (output: round:, e.g.
    eFI to 2 places). Returns the rows compared."""
    from casefind.rules.compile import rounded

    places = places or {}
    mine = {tuple(r[k] for k in key): r for r in ours}
    assert len(mine) == len(ours), f"{what}: duplicate keys in casefind's rows"
    assert len(peer) == len(ours), f"{what}: {len(peer)} rows, casefind {len(ours)}"
    for r in peer:
        k = tuple(r[c] for c in key)
        assert k in mine, f"{what}: {k} is not in casefind's rows"
        m = mine[k]
        for c, v in r.items():
            if c not in m:
                continue
            v = rounded(v, places.get(c))
            assert _same(v, m[c]), f"{what}, {dict(zip(key, k))}, {c}: peer {v!r}, casefind {m[c]!r}"
    return len(peer)
