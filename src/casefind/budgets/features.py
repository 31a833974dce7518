"""Per-patient values a budget needs, from one engine evaluation at every date it reads.

The dates are the day before the year starts (who is in at the start), each complete
month's end in the year, and the baseline year's end (who the tariffs are set from). Every
expression (cohort, category, incentive, acceptance) goes to the engine once for all of
them: the native engine fuses the dates into one scan of each table (``evaluate_periods``);
any other engine is asked date by date. What comes back is numpy, patients x dates.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from casefind.budgets.define import BudgetSpec
from casefind.engines.many_dates import evaluate_at_dates
from casefind.rules import ir
from casefind.store import Store

EPOCH = dt.date(1970, 1, 1)
NO_DATE = np.iinfo(np.int32).min


def day(d: dt.date) -> int:
    """A date as the store holds it: days since 1970-01-01."""
    return (d - EPOCH).days


@dataclass(frozen=True)
class Values:
    """patients x dates: in the cohort (bool), category index (-1 none), incentive earned
    (bool), accepted by a clinician (bool) and the decision's day (NO_DATE none)."""

    dates: tuple[dt.date, ...]
    cohort: np.ndarray
    category: np.ndarray
    incentive: np.ndarray
    accepted: np.ndarray
    accepted_on: np.ndarray

    def at(self, d: dt.date) -> int:
        return self.dates.index(d)


def expressions(spec: BudgetSpec) -> dict[str, ir.Node]:
    """What each date needs; the category is the first whose condition holds."""
    whens = tuple((c.when, ir.Const(i, ir.T.INT)) for i, c in enumerate(spec.categories) if c.when is not None)
    last = ir.Const(len(spec.categories) - 1, ir.T.INT)
    exprs: dict[str, ir.Node] = {"cohort": spec.cohort, "category": ir.Case(whens, last) if whens else last}
    if spec.incentive is not None:
        exprs["incentive"] = spec.incentive.when
    if spec.accepted is not None:
        exprs["accepted"] = spec.accepted
        exprs["accepted_on"] = spec.accepted_on
    return exprs


def evaluate(store: Store, spec: BudgetSpec, dates: list[dt.date], engine: str = "native") -> Values:
    """Every expression at every date in one evaluation (see the module's docstring)."""
    exprs = expressions(spec)
    tables = evaluate_at_dates(store, exprs, dates, engine)
    n = store.n_patients

    def stack(name: str, fill, dtype) -> np.ndarray:
        if name not in exprs:
            return np.full((n, len(dates)), fill, dtype)
        return np.stack([_numpy(t.column(name), fill, dtype) for t in tables], axis=1)

    return Values(tuple(dates), stack("cohort", False, bool), stack("category", -1, np.int64),
                  stack("incentive", False, bool), stack("accepted", False, bool),
                  stack("accepted_on", NO_DATE, np.int64))


def _numpy(col: pa.ChunkedArray, fill, dtype) -> np.ndarray:
    if pa.types.is_date32(col.type):
        col = col.cast(pa.int32())
    return np.asarray(col.fill_null(fill).to_numpy(zero_copy_only=False), dtype)
