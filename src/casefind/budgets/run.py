"""``casefind budget FILE --year 2026-27``: a budget file over a store for one year.

compile → one engine evaluation at every date the year needs → tariffs → register →
budget and actual month by month → risk share and outcomes → the output folder (renamed
into place whole) → the register's changes into DuckDB beside the KPI history. The run id
is a hash of the inputs (budget file, store snapshot, review log, year), so re-running the
same inputs gives the same outputs. A sharded store gives the single store's outputs
(budgets/sharded.py); its run id hashes the sharded snapshot.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind import __version__
from casefind.budgets import compute, history, outputs, rollup, share
from casefind.budgets import sharded as budget_shards
from casefind.budgets.define import BudgetSpec, load_budget
from casefind.budgets.years import FinancialYear
from casefind.engines.base import get_engine
from casefind.kpis import history as kpi_history
from casefind.store.sharded import ShardedStore, open_any


@dataclass
class BudgetRunResult:
    run_id: str
    budget: str
    year: str
    folder: Path
    register_db: Path
    statement: dict
    tables: dict[str, pa.Table] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def run_budget(path: str | Path, store_root: str | Path, year: FinancialYear, out: str | Path, *,
               engine: str = "native", history_path: Path | None = None, register_path: Path | None = None,
               allow_partial: bool = False, progress=None) -> BudgetRunResult:
    say = progress or (lambda s: None)
    get_engine(engine)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    say("compiling the budget file")
    spec = load_budget(path)
    say("opening the store")
    store = open_any(store_root)
    sharded = isinstance(store, ShardedStore)
    timings["compile"] = time.perf_counter() - t
    t = time.perf_counter()
    c = (budget_shards.run if sharded else compute.run)(store, spec, year, engine, allow_partial, say)
    timings["compute"] = time.perf_counter() - t
    t = time.perf_counter()
    say("rolling up budget against actual, movement and shadow budgets")
    tables = {"tariffs": outputs.tariffs_table(c), "register": outputs.register_table(c),
              "monthly": rollup.monthly(c), "movement": rollup.movement(c),
              "tagged_activity": outputs.tagged_table(c), "shadow": rollup.shadow(c)}
    timings["tables"] = time.perf_counter() - t
    snapshot = store.snapshot_id
    reviews = (store.review_log if sharded else store.manifest["reviews"])["digest"]
    run_id = _run_id(spec, snapshot, reviews, year)
    hist = history_path or kpi_history.default_path(store_root)
    db = register_path or history.default_path(store_root)
    brought = history.carried_into(db, spec.name, year.previous().label)
    statement = _statement(c, spec, snapshot, run_id, tables, hist, brought)
    manifest = {"command": "casefind budget", "run_id": run_id, "budget": spec.name, "year": year.label,
                "file": str(Path(path).resolve()), "file_sha256": spec.file_sha256,
                "store": str(Path(store_root).resolve()), "store_snapshot": snapshot,
                "review_log": reviews, "engine": engine,
                "casefind_version": __version__, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    t = time.perf_counter()
    say("writing the budget folder")
    folder = outputs.write_folder(Path(out), spec.name, year.label, tables, {"statement": statement}, manifest)
    say(f"recording the register's changes in {db}")
    carried = statement["risk_share"]["carried_forward"] if statement["risk_share"] else 0.0
    history.write(db, spec.name, year.label, outputs.changes_table(tables["register"]), run_id,
                  (carried, statement["adjusted_total"]))
    timings["write"] = time.perf_counter() - t
    return BudgetRunResult(run_id, spec.name, year.label, folder, db, statement, tables, timings, c.warnings)


def _run_id(spec: BudgetSpec, snapshot: str, reviews: str, year: FinancialYear) -> str:
    key = [spec.file_sha256, snapshot, reviews, year.label]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]


def _system_totals(tables: dict[str, pa.Table]) -> dict:
    m = tables["monthly"]
    rows = m.filter(pc.and_(pc.equal(m["level"], "system"), pc.equal(m["category"], rollup.ALL)))
    complete = np.asarray(rows["complete"].to_numpy(zero_copy_only=False), bool)
    budget = np.asarray(rows["budget"].to_numpy(), np.float64)
    actual = np.asarray(rows["actual"].to_numpy(), np.float64)
    month = rows["month"].to_pylist()
    by_month = {}
    for mo, b, a, ok in zip(month, budget, actual, complete):
        bb, aa, _ = by_month.get(mo, (0.0, 0.0, ok))
        by_month[mo] = (bb + b, aa + a, ok)
    b_all = sum(v[0] for v in by_month.values())
    b_done = sum(v[0] for v in by_month.values() if v[2])
    a_done = sum(v[1] for v in by_month.values() if v[2])
    return {"budget": b_all, "budget_to_date": b_done, "actual": a_done, "variance": b_done - a_done,
            "forecast": a_done + (b_all - b_done)}


def _statement(c: compute.Computed, spec: BudgetSpec, snapshot: str, run_id: str, tables: dict, hist: Path,
               brought: float | None) -> dict:
    """statement.json: the year's totals, the method stated, risk share and outcomes worked."""
    reg = c.register
    totals = _system_totals(tables)
    last_col = max(c.complete - 1, 0)
    totals.update(people_start=int((reg.join_reason == 0).sum()),
                  people_end=int(reg.in_at_end[:, last_col].sum()), months_complete=c.complete)
    risk = share.risk_share(spec.risk_share, totals["budget_to_date"], totals["variance"]) if spec.risk_share else None
    period = c.year.month_labels()[last_col]
    outcomes = share.outcomes(spec.outcomes, hist, period, totals["budget"])
    adjusted = totals["budget"] - (risk["commissioner_share"] + risk["carried_forward"] if risk else 0.0)
    adjusted += sum(o["adjustment"] for o in outcomes) + (brought or 0.0)
    notes = list(c.notes) + [o["working"] for o in outcomes if o["met"] is None]
    if brought:
        notes.append(f"brought forward from {c.year.previous()}: £{brought:,.2f} (the provider share carried "
                     "forward by that year's run), added to the adjusted total")
    return {
        "budget": spec.name, "title": spec.title, "year": c.year.label, "year_start": c.year.start.isoformat(),
        "year_end": c.year.end.isoformat(), "year_days": c.year.days, "file": str(spec.path),
        "file_sha256": spec.file_sha256, "store_snapshot": snapshot, "as_of": c.as_of.isoformat(),
        "run_id": run_id, "profile": spec.profile, "profile_weights": [float(w) for w in c.weights],
        "baseline_year": compute.baseline_year(spec, c.year).label,
        "trim": {"above_percentile": spec.trim.above_percentile, "method": spec.trim.method,
                 "interpolation": "linear (numpy.percentile)", "within": "each priced category",
                 "thresholds": c.tariffs.thresholds},
        "min_category_size": spec.min_category_size, "uplift": spec.uplift,
        "shadow_rate_per_person": c.shadow_rate,
        "totals": totals, "risk_share": risk, "outcomes": outcomes, "brought_forward": brought or 0.0,
        "adjusted_total": adjusted,
        "adjusted_total_means": "budget - commissioner's share of the variance - provider share carried "
                                "forward + outcome adjustments + brought forward from the previous year: what "
                                "the commissioner pays for the year",
        "notes": notes}
