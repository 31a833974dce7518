"""``casefind kpi``: a KPI file over a store for some periods → the KPI history.

compile (once per period length) → one evaluation of every measure at every period end →
sums per practice, rolled up → intervals → disclosure control → one transaction into the
history. The run id is a hash of the inputs (KPI file, store snapshot, review log, periods,
parameters), so re-running the same inputs writes identical rows.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from casefind import __version__
from casefind.engines.base import get_engine
from casefind.kpis import compute, disclosure, history
from casefind.kpis.periods import Period
from casefind.kpis.sharded import compute_sharded
from casefind.store import Store
from casefind.store.coverage import Coverage, check_span
from casefind.store.sharded import ShardedStore, open_any


@dataclass
class KpiRunResult:
    run_id: str
    kpi_set: str
    periods: list[str]
    history: Path
    rows: int
    suppressed: int
    measures: int
    timings: dict[str, float] = field(default_factory=dict)
    results: pa.Table | None = None
    warnings: list[str] = field(default_factory=list)


def check_periods(store: Store | ShardedStore, periods: list[Period], allow_partial: bool) -> list[str]:
    """Refuse periods the store's data does not cover, so no history row is a count of
    days nobody recorded (see store/coverage.py); warnings for those allowed partly."""
    cov = store.coverage if isinstance(store, ShardedStore) else Coverage.of(store.manifest)
    found = (check_span(cov, p.start, p.end, what=f"period {p.label}", option="--period",
                        allow_partial=allow_partial) for p in periods)
    return [w for w in found if w]


def _timed(pieces: Iterator, timings: dict[str, float], key: str) -> Iterator:
    """``pieces`` as they come, with the time spent making them added to ``timings[key]``:
    evaluation and roll-up take turns, chunk by chunk."""
    timings[key] = 0.0
    while True:
        t = time.perf_counter()
        try:
            piece = next(pieces)
        except StopIteration:
            timings[key] += time.perf_counter() - t
            return
        timings[key] += time.perf_counter() - t
        yield piece


def _policy_note(overrides: dict | None, policy) -> list[str]:
    if not overrides:
        return []
    return [f"disclosure control from the project settings: suppress_below={policy.suppress_below}, "
            f"round_to={policy.round_to}"]


def _policy_record(kset, overrides: dict | None, policy: disclosure.DisclosurePolicy) -> dict:
    """The policy applied and where it came from, for the run log (and the pack to state)."""
    if overrides:
        source = "project settings (casefind.toml [disclosure] or the command line) over the KPI file's"
    elif kset.disclosure != disclosure.DisclosurePolicy():
        source = f"the KPI file's disclosure: ({Path(kset.path).name})"
    else:
        source = "the default"
    weaker = policy.weaker_than_default()
    return {**policy.as_dict(), "source": source, "rule": disclosure.RULE, "weaker_than_default": weaker}


def _weaker_warning(record: dict) -> list[str]:
    """Say so when a KPI file or setting weakens the HES/ECDS default, rather than silently."""
    if not record["weaker_than_default"]:
        return []
    return [f"disclosure control from {record['source']} is weaker than NHS Digital's HES/ECDS rule "
            f"(the default): {'; '.join(record['weaker_than_default'])}"]


def run_kpis(path: str | Path, store_root: str | Path, periods: list[Period], *, history_path: Path | None = None,
             engine: str = "native", params: dict[str, str] | None = None, allow_partial: bool = False,
             progress: Callable[[str], None] | None = None, before_commit=None,
             disclosure_overrides: dict[str, int] | None = None) -> KpiRunResult:
    """``disclosure_overrides`` overrides the KPI file's disclosure policy (the project's settings:
    suppress_below, round_to); the run log records the policy applied (``disclosure``: JSON with
    its source), and a policy weaker than the HES/ECDS default is warned about."""
    say = progress or (lambda s: None)
    get_engine(engine)  # an unknown engine is refused before anything is compiled
    timings: dict[str, float] = {}
    started = dt.datetime.now(dt.UTC)
    t = time.perf_counter()
    say("compiling the KPI file")
    ksets = compute.compile_for(path, periods, params)
    first = next(iter(ksets.values()))
    say("opening the store")
    store = open_any(store_root)
    sharded = isinstance(store, ShardedStore)
    say("checking the periods against the data")
    warnings = check_periods(store, periods, allow_partial)
    timings["compile"] = time.perf_counter() - t

    labels = [p.label for p in periods]
    review_digest = (store.review_log if sharded else store.manifest["reviews"])["digest"]
    run_id = hashlib.sha256(json.dumps([first.file_sha256, store.snapshot_id, review_digest, labels,
                                        sorted((params or {}).items())]).encode()).hexdigest()[:12]
    t = time.perf_counter()
    say(f"evaluating {len(first.measures)} measures × {len(periods)} periods ({engine} engine, one pass), "
        "rolling up and adding intervals")
    if sharded:  # evaluated and added up a shard at a time (kpis/sharded.py)
        results = compute_sharded(store, ksets, run_id, engine, say=say)
        timings["evaluate"], timings["aggregate"] = time.perf_counter() - t, 0.0
    else:
        values = _timed(compute.evaluate_chunks(store, ksets, engine), timings, "evaluate")
        results = compute.compute(store, ksets, values, run_id)
        timings["aggregate"] = time.perf_counter() - t - timings["evaluate"]

    t = time.perf_counter()
    say("disclosure control")
    policy = dataclasses.replace(first.disclosure, **(disclosure_overrides or {}))
    record = _policy_record(first, disclosure_overrides, policy)
    warnings = warnings + _weaker_warning(record)
    results = disclosure.apply_table(results, policy)
    timings["disclosure"] = time.perf_counter() - t

    t = time.perf_counter()
    hist = history_path or history.default_path(store_root)
    say(f"writing the KPI history {hist}")
    history.write(hist, results, {
        "run_id": run_id, "kpi_set": first.name, "kpi_file": str(Path(path).resolve()),
        "kpi_sha256": first.file_sha256, "store_snapshot": store.snapshot_id, "review_log": review_digest,
        "periods": labels, "engine": engine, "casefind_version": __version__, "started": started,
        "message": "; ".join(warnings + _policy_note(disclosure_overrides, policy)) or None,
        "disclosure": record,
    }, before_commit=before_commit)
    timings["write"] = time.perf_counter() - t
    suppressed = int(pc.sum(results.column("suppressed")).as_py() or 0)
    return KpiRunResult(run_id, first.name, labels, hist, results.num_rows, suppressed, len(first.measures),
                        timings, results, warnings)
