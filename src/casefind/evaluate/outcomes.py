"""Each person's values at their own index date, from one engine evaluation.

An index date is the end of the month in which a person joined the programme (their index
month); controls are looked at on the same month end. What matching reads (eligibility,
exact strata, matching features) is evaluated for everyone at every index month end M; each
outcome, over the ``window`` months up to the date, is evaluated for the matched people at M
and again at A(M), the month end ``window`` months later, where the outcomes are the
``window`` months after the index month: (M, A(M)]. The dates of one evaluation go to the
engine together (the native engine fuses them into one scan of each table,
``evaluate_periods``); any other engine is asked date by date. The index dates themselves
come from one evaluation at the end of the store's data.
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
    values are codes into ``labels[name]``. ``held``: the store rows the arrays hold, in
    order (the matched people's outcomes), or None for every patient."""

    dates: tuple[dt.date, ...]
    columns: dict[str, np.ndarray]
    labels: dict[str, list[str]]
    held: np.ndarray | None = None

    def at(self, name: str, d: dt.date) -> np.ndarray:
        return self.columns[name][:, self.dates.index(d)]

    def local(self, rows: np.ndarray) -> np.ndarray:
        """Store rows as rows of the arrays (each must be held)."""
        return rows if self.held is None else np.searchsorted(self.held, rows)


def expressions(spec: EvalSpec) -> dict[str, ir.Node]:
    """What matching reads at each index month: eligibility, exact values and features."""
    exprs: dict[str, ir.Node] = {"eligible": spec.eligible}
    exprs.update({f"exact|{n}": e for n, e in spec.matching.exact})
    exprs.update({f"feature|{n}": e for n, e in spec.matching.features})
    return exprs


def outcome_expressions(spec: EvalSpec) -> dict[str, ir.Node]:
    """What the effects read, at each index month and at the end of its window after."""
    return {f"outcome|{n}": e for n, e in spec.outcomes}


def evaluate(store: Store, exprs: dict[str, ir.Node], dates: list[dt.date], engine: str = "native",
             rows: np.ndarray | None = None) -> Values:
    """``exprs`` at every date (see the module's docstring); ``rows``: only these store rows
    (sorted) are kept."""
    tables = evaluate_at_dates(store, exprs, dates, engine)
    if rows is not None:
        tables = [t.take(pa.array(rows)) for t in tables]
    return values_of(exprs, dates, tables, rows)


def values_of(exprs: dict[str, ir.Node], dates: list[dt.date], tables: list[pa.Table],
              held: np.ndarray | None = None) -> Values:
    """``Values`` from one engine table per date (every patient in store order, or the
    ``held`` rows); a text expression's labels are the values seen at any date, sorted."""
    columns, labels = {}, {}
    for name in exprs:
        cols = [t.column(name) for t in tables]
        if pa.types.is_string(cols[0].type) or pa.types.is_large_string(cols[0].type):
            values = pc.unique(pa.chunked_array([c for col in cols for c in col.chunks], cols[0].type))
            values = values.take(pc.sort_indices(values)).drop_null()
            labels[name] = values.to_pylist()
            cols = [pc.index_in(c, value_set=values) for c in cols]
        columns[name] = np.stack([_numpy(c, np.nan, np.float64) for c in cols], axis=1)
    return Values(tuple(dates), columns, labels, held)


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
