"""The same expressions at several dates, in as few passes over the store as the engine allows.

A budget (its year's month ends), an evaluation (each index month end and the end of its
window) and a diagnosis (its review dates) each read one set of expressions at many dates.
The native engine fuses the dates into one scan of each table (``evaluate_periods``); any
other engine is asked date by date. Either way the answer is one table per date.
"""
from __future__ import annotations

import datetime as dt

import pyarrow as pa

from casefind.engines.base import get_engine
from casefind.rules import ir
from casefind.store import Store


def evaluate_at_dates(store: Store, exprs: dict[str, ir.Node], dates: list[dt.date],
                      engine: str = "native", population: ir.Node | None = None) -> list[pa.Table]:
    """``exprs`` at each of ``dates``: one table per date, in the order of ``dates``, each as
    the engine's ``evaluate`` returns it (``population`` is what ranks are taken within)."""
    eng = get_engine(engine)
    if hasattr(eng, "evaluate_periods"):
        return eng.evaluate_periods(store, exprs, [(d, None) for d in dates], population)
    return [eng.evaluate(store, exprs, d, population) for d in dates]
