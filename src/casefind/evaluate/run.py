"""``casefind evaluate SPEC``: index dates; eligibility, exact values and features at the
index months for everyone; matching and balance; then the outcomes of the matched people
only, at the index months and the ends of their windows, and the effects; then the report
folder (evaluate/report.py). Reading the outcomes of only the matched keeps memory to the
features' (a tenth of the patients' values at every date)."""
from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from casefind.errors import UsageError
from casefind.evaluate import balance, effects, match, outcomes, sharded
from casefind.evaluate.outcomes import NO_DATE, Values, date_of, day_of, months_later
from casefind.evaluate.spec import EvalSpec, load_spec
from casefind.store.coverage import check_span
from casefind.store.sharded import coverage, open_any


@dataclass(frozen=True)
class Result:
    spec: EvalSpec
    run_id: str
    store_root: Path
    snapshot_id: str                 # the store's (a sharded store's own, over its shards)
    patient_ids: pa.Array            # every patient's pseudonymised id, in store order
    data_end: dt.date
    months: tuple[dt.date, ...]      # the index month ends
    counts: dict[str, int]
    matches: match.Matches
    balance: list[balance.BalanceRow]
    effects: list[effects.Effect]
    values: Values                   # the outcomes of the matched people (``held``), at every date
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    folder: Path | None = None


def evaluate(spec_path: Path, store_root: Path, *, engine: str = "native", params: dict[str, str] | None = None,
             allow_partial: bool = False, progress: Callable[[str], None] = lambda m: None) -> Result:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    spec = load_spec(spec_path, params)
    store = open_any(store_root)
    cov = coverage(store)
    if cov.last is None:
        raise UsageError("the store has no dated events to evaluate")
    warnings = []
    last_after = months_later(spec.last, spec.window_months)
    first_read = months_later(spec.first, -spec.window_months) + dt.timedelta(days=1)
    warn = check_span(cov, first_read, last_after,
                      what=f"index dates {spec.first} to {spec.last} with {spec.window_months} months either side",
                      option="group", allow_partial=allow_partial)
    if warn:
        warnings.append(warn)
    progress("finding the intervention group")
    who = sharded.people(store, spec, cov.last, engine, progress)
    index = who.index
    in_range = (index >= day_of(spec.first)) & (index <= day_of(spec.last))
    treated_rows = np.nonzero(in_range)[0]
    month_of = _month_ends(index[treated_rows])
    months = sorted(set(month_of))
    if not months:
        raise UsageError(f"nobody joined the programme ({spec.group_kind}: {spec.group_label}) between "
                         f"{spec.first} and {spec.last}", "check group: and its from:/to: dates", option="group")
    after = {m: months_later(m, spec.window_months) for m in months}
    timings["index"] = time.perf_counter() - t0
    progress(f"evaluating {len(spec.matching.features)} features at {len(months)} index months")
    values = sharded.values(store, outcomes.expressions(spec), months, engine, who, progress)
    timings["evaluate"] = time.perf_counter() - t0 - timings["index"]
    cands, counts = _candidates(spec, values, index, treated_rows, month_of, months, after)
    progress(f"matching {counts['treated_eligible']:,} treated people ({spec.matching.method})")
    m = match.match(cands, spec.matching, len(index))
    counts.update(matched=len(np.unique(m.set_id)), unmatched=m.unmatched, pairs=len(m.set_id),
                  distinct_controls=len(np.unique(m.control)))
    if counts["matched"] == 0:
        raise UsageError("no treated person found a control within the caliper",
                         "widen match: caliper:, or match on fewer exact values", option="match")
    rows = _balance(spec, values, cands, months, m)
    timings["match"] = time.perf_counter() - t0 - timings["index"] - timings["evaluate"]
    progress(f"evaluating {len(spec.outcomes)} outcomes of the {counts['pairs'] + counts['matched']:,} people matched")
    matched = np.unique(np.concatenate([m.treated, m.control]))
    outs = sharded.values(store, outcomes.outcome_expressions(spec), sorted(set(months) | set(after.values())),
                          engine, who, progress, rows=matched)
    eff = _effects(spec, outs, months, after, m)
    timings["outcomes"] = time.perf_counter() - t0 - timings["index"] - timings["evaluate"] - timings["match"]
    timings["total"] = time.perf_counter() - t0
    return Result(spec, uuid.uuid4().hex[:12], Path(store_root), store.snapshot_id, who.patient_ids, cov.last,
                  tuple(months), counts, m, rows, eff, outs, warnings, timings)


def _month_ends(days: np.ndarray) -> list[dt.date]:
    return [outcomes.month_end(d.year, d.month) for d in (date_of(x) for x in days)]


def _candidates(spec: EvalSpec, values: Values, index: np.ndarray, treated_rows: np.ndarray,
                month_of: list[dt.date], months: list[dt.date], after: dict) -> tuple[list, dict]:
    """Per index month: the treated who joined that month and the eligible controls, who had
    not joined by the end of the window after it; anyone missing a matching feature is left out."""
    counts = {"treated_in_range": len(treated_rows), "treated_eligible": 0, "treated_missing_feature": 0}
    month_of = np.array([months.index(d) for d in month_of], np.int64)
    out = []
    for k, m in enumerate(months):
        ok = values.at("eligible", m) == 1
        x = np.stack([values.at(f"feature|{n}", m) for n, _ in spec.matching.features], axis=1)
        complete = ~np.isnan(x).any(axis=1)
        strata = _strata(spec, values, m)
        t = treated_rows[month_of == k]
        t_ok = t[ok[t]]
        counts["treated_eligible"] += len(t_ok)
        counts["treated_missing_feature"] += int((~complete[t_ok]).sum())
        t_ok = t_ok[complete[t_ok]]
        never = (index == NO_DATE) | (index > day_of(after[m]))
        c = np.nonzero(ok & complete & never)[0]
        out.append(match.Candidates(k, t_ok, c, x[t_ok], x[c], strata[t_ok], strata[c]))
    counts["controls_eligible_max"] = max(len(c.controls) for c in out)
    return out, counts


def _strata(spec: EvalSpec, values: Values, m: dt.date) -> np.ndarray:
    """One int per patient: the combination of their exact values at ``m`` (missing is a value)."""
    code = None
    for name, _ in spec.matching.exact:
        _, inv = np.unique(np.nan_to_num(values.at(f"exact|{name}", m), nan=-np.inf), return_inverse=True)
        code = inv.astype(np.int64) if code is None else code * (inv.max() + 1) + inv
    return np.zeros(values.columns["eligible"].shape[0], np.int64) if code is None else code


def _balance(spec: EvalSpec, values: Values, cands: list, months: list[dt.date], m: match.Matches) -> list:
    rows = []
    k_of_set = np.bincount(m.set_id)
    treated_first = np.unique(m.set_id, return_index=True)[1]
    numeric = [(n, f"feature|{n}") for n, _ in spec.matching.features] + [
        (n, f"exact|{n}") for n, _ in spec.matching.exact if f"exact|{n}" not in values.labels]
    for name, col in numeric:
        per_month = [values.at(col, d) for d in months]
        xt = np.concatenate([pm[c.treated] for pm, c in zip(per_month, cands)])
        xc = np.concatenate([pm[c.controls] for pm, c in zip(per_month, cands)])
        wc = np.concatenate([np.full(len(c.controls), len(c.treated) / max(len(c.controls), 1)) for c in cands])
        rows.append(balance.BalanceRow(name, "before", *balance.smd(xt, np.ones(len(xt)), xc, wc)))
        grid = values.columns[col][:, [values.dates.index(d) for d in months]]
        at = grid[m.treated[treated_first], m.month[treated_first]]
        ac = grid[m.control, m.month]
        rows.append(balance.BalanceRow(name, "after", *balance.smd(at, np.ones(len(at)), ac, 1 / k_of_set[m.set_id])))
    return rows


def _effects(spec: EvalSpec, values: Values, months: list[dt.date], after: dict, m: match.Matches) -> list:
    first = np.unique(m.set_id, return_index=True)[1]
    before_cols = [values.dates.index(d) for d in months]
    after_cols = [values.dates.index(after[d]) for d in months]
    out = []
    for name, _ in spec.outcomes:
        grid = np.nan_to_num(values.columns[f"outcome|{name}"], nan=0.0)  # missing counts as none
        b, a = grid[:, before_cols], grid[:, after_cols]
        t, mt, c = values.local(m.treated[first]), m.month[first], values.local(m.control)
        out.append(effects.did(name, b[t, mt], a[t, mt], b[c, m.month], a[c, m.month], m.set_id, spec.confidence))
    return out
