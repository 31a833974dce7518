"""Each person's values at their own index date, from one engine evaluation.

An index date is the end of the month in which a person joined the programme (their index
month); controls are looked at on the same month end. Everything the evaluation reads
(eligibility, exact strata, matching features and each outcome over the ``window`` months
up to the date) is evaluated at every index month end M, and again at A(M), the month end
``window`` months later, where the outcomes are the ``window`` months after the index
month: (M, A(M)]. All the dates go to the engine together (the native engine fuses them
into one scan of each table, ``evaluate_periods``); any other engine is asked date by date.
The index dates themselves come from one evaluation at the end of the store's data.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.engines.base import get_engine
from casefind.engines.many_dates import evaluate_at_dates
from casefind.evaluate.spec import EvalSpec
from casefind.rules import ir
from casefind.store import Store

EPOCH = dt.date(1970, 1, 1)
NO_DATE = np.iinfo(np.int32).min


def month_end(year: int, month: int) -> dt.date:
    """The last day of a month; ``month`` may run past 12 (it carries into the year)."""
    y, m = year + (month - 1) // 12, (month - 1) % 12 + 1
    return dt.date(y + m // 12, m % 12 + 1, 1) - dt.timedelta(days=1)


def months_later(d: dt.date, months: int) -> dt.date:
    """The month end ``months`` calendar months after the month of ``d``."""
    return month_end(d.year, d.month + months)


def index_dates(store: Store, spec: EvalSpec, data_end: dt.date, engine: str) -> np.ndarray:
    """Per patient, the day number (days since 1970) they joined, NO_DATE if never."""
    t = get_engine(engine).evaluate(store, {"index": spec.index_date}, data_end)
    return _numpy(t.column("index"), NO_DATE, np.int64)


@dataclass(frozen=True)
class Values:
    """Per expression, patients x dates, float64 with NaN for missing; a text expression's
    values are codes into ``labels[name]``."""

    dates: tuple[dt.date, ...]
    columns: dict[str, np.ndarray]
    labels: dict[str, list[str]]

    def at(self, name: str, d: dt.date) -> np.ndarray:
        return self.columns[name][:, self.dates.index(d)]


def expressions(spec: EvalSpec) -> dict[str, ir.Node]:
    exprs: dict[str, ir.Node] = {"eligible": spec.eligible}
    exprs.update({f"exact|{n}": e for n, e in spec.matching.exact})
    exprs.update({f"feature|{n}": e for n, e in spec.matching.features})
    exprs.update({f"outcome|{n}": e for n, e in spec.outcomes})
    return exprs


def evaluate(store: Store, spec: EvalSpec, dates: list[dt.date], engine: str = "native") -> Values:
    """Every expression at every date (see the module's docstring)."""
    exprs = expressions(spec)
    return values_of(exprs, dates, evaluate_at_dates(store, exprs, dates, engine))


def values_of(exprs: dict[str, ir.Node], dates: list[dt.date], tables: list[pa.Table]) -> Values:
    """``Values`` from one engine table per date (every patient, in store order); a text
    expression's labels are the values seen at any date, sorted."""
    columns, labels = {}, {}
    for name in exprs:
        cols = [t.column(name) for t in tables]
        if pa.types.is_string(cols[0].type) or pa.types.is_large_string(cols[0].type):
            values = pc.unique(pa.chunked_array([c for col in cols for c in col.chunks], cols[0].type))
            values = values.take(pc.sort_indices(values)).drop_null()
            labels[name] = values.to_pylist()
            cols = [pc.index_in(c, value_set=values) for c in cols]
        columns[name] = np.stack([_numpy(c, np.nan, np.float64) for c in cols], axis=1)
    return Values(tuple(dates), columns, labels)


def _numpy(col: pa.ChunkedArray, fill, dtype) -> np.ndarray:
    if pa.types.is_date32(col.type):
        col = col.cast(pa.int32())
    if pa.types.is_boolean(col.type):
        col = col.cast(pa.int8())
    return np.asarray(col.cast(pa.float64()).fill_null(fill).to_numpy(zero_copy_only=False), dtype)


def day_of(d: dt.date) -> int:
    return (d - EPOCH).days


def date_of(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))
