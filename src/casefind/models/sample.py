"""A model's data at one feature date D: its population's predictors on D (evaluated by a
rules engine, so they mean what a rule means) and the outcome counted over the 12 months
after D (the outcome expression evaluated on D + 12 months). Nothing after D reaches the
predictors unless a predictor itself looks ahead, which spec.looks_ahead flags."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from casefind.contract.dates import shift_date
from casefind.engines.base import get_engine
from casefind.models.spec import HORIZON_MONTHS, CompiledSpec

_POPULATION = "population__"


@dataclass(frozen=True)
class Sample:
    date: dt.date
    patients: np.ndarray        # store indices of the population on ``date``
    X: np.ndarray               # predictors, one column each, NaN where missing
    y: np.ndarray               # bool: the outcome in the 12 months after ``date``
    baseline: np.ndarray        # the baseline count on ``date`` (missing as 0)
    names: tuple[str, ...]

    @property
    def outcome_date(self) -> dt.date:
        return shift_date(self.date, HORIZON_MONTHS)


def _numbers(column) -> np.ndarray:
    """A numeric or true/false column as float64, missing as NaN."""
    import pyarrow as pa

    if pa.types.is_boolean(column.type):
        return column.fill_null(False).to_numpy(zero_copy_only=False).astype(np.float64)
    return column.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)


def sample(store, cs: CompiledSpec, date: dt.date, engine: str = "native") -> Sample:
    eng = get_engine(engine)
    exprs = {**cs.predictors, "baseline__": cs.baseline, _POPULATION: cs.population}
    t = eng.evaluate(store, exprs, date, population=cs.population)
    member = t.column(_POPULATION).fill_null(False).to_numpy(zero_copy_only=False)
    t = t.filter(member)
    patients = t.column("patient").to_numpy().astype(np.int32)
    X = np.column_stack([_numbers(t.column(n)) for n in cs.predictors]) if cs.predictors else np.zeros((len(t), 0))
    baseline = np.nan_to_num(_numbers(t.column("baseline__")))
    later = shift_date(date, HORIZON_MONTHS)
    out = eng.evaluate(store, {"outcome": cs.outcome}, later, patients=patients)
    y = out.column("outcome").fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
    return Sample(date, patients, X, y, baseline, tuple(cs.predictors))
