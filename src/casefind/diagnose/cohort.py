"""Who each rule selects, at many dates in one engine call per rule.

A rule's *cohort* at a date is the people its criteria select: in its population, meeting
its include criteria (``require``) and not caught by its own exclusions. It is taken before
list policy (opt-outs) and before the per-practice, per-locality and total caps of
``casefind run`` (lists/select.py): diagnostics describe the rule, not one capped list.
Every date a diagnosis needs (now, a year earlier, each month-end of the crisis curve) is
evaluated together: the native engine's ``evaluate_periods`` scans each table once for all.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from casefind.engines.many_dates import evaluate_at_dates
from casefind.lists.select import selection_expressions
from casefind.plan import make_plan
from casefind.plan.lookback import read_span
from casefind.rules import ir
from casefind.rules.compile import CompiledRule
from casefind.store import Store
from casefind.store.coverage import check_span
from casefind.store.sharded import coverage


def _flag(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def cohort_mask(rule: CompiledRule, values: pa.Table) -> np.ndarray:
    """Per row of ``values``: in the population, meets the criteria, not excluded by the rule."""
    keep = _flag(values, "population")
    if rule.include:
        keep &= _flag(values, "require")
    for name, _ in rule.exclude:
        keep &= ~_flag(values, f"exclude:{name}")
    return keep


@dataclass(frozen=True)
class Cohorts:
    """One rule's cohort at each of ``dates``: ``masks[i]`` is a bool per stored patient."""

    rule: CompiledRule
    dates: tuple[dt.date, ...]
    masks: np.ndarray  # (len(dates), n_patients) bool

    def at(self, d: dt.date) -> np.ndarray:
        return self.masks[self.dates.index(d)]


def check_dates(store: Store, rule: CompiledRule, dates: list[dt.date], what: str) -> None:
    """Refuse dates whose look-back the store's data does not cover: a cohort read from
    missing months would be too small, and everyone would look newly identified."""
    exprs = selection_expressions(rule)
    first, _ = read_span(make_plan(exprs, min(dates), rule.population))
    _, last = read_span(make_plan(exprs, max(dates), rule.population))
    check_span(coverage(store), first, last, what=f"{rule.name}: {what}", option="--as-of",
               allow_partial=False, partial_hint="a cohort read from missing months would be too small, and "
               "everyone in it would look newly identified: give a later --as-of")


def evaluate(store: Store, rule: CompiledRule, dates: list[dt.date], engine: str = "native",
             exprs: dict[str, ir.Node] | None = None) -> Cohorts:
    """The rule's cohort at every date: one engine call for all of them where the engine
    evaluates periods together, else one per date. ``exprs``: the rule's selection
    expressions as a shard must read them (ranks within pools), if not the rule's own."""
    dates = sorted(set(dates))
    exprs = selection_expressions(rule) if exprs is None else exprs
    tables = evaluate_at_dates(store, exprs, dates, engine, rule.population)
    masks = np.zeros((len(dates), store.n_patients), bool)
    for i, t in enumerate(tables):
        masks[i, t.column("patient").to_numpy().astype(np.int64)] = cohort_mask(rule, t)
    return Cohorts(rule, tuple(dates), masks)


def sizes_by_practice(store: Store, mask: np.ndarray) -> dict[str, int]:
    """Cohort members per practice code (every practice of the store, zeros included)."""
    practice = store.table("patients")["practice"].astype(np.int64)
    codes = store.table("practices").arrow.column("practice_code").cast(pa.string()).to_pylist()
    counts = np.bincount(practice[mask], minlength=len(codes))
    return {code: int(n) for code, n in zip(codes, counts)}
