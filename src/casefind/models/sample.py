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
    patients: np.ndarray        # store indices of the population on ``date`` (-1 on a sharded store)
    X: np.ndarray               # predictors, one column each, NaN where missing
    y: np.ndarray               # bool: the outcome in the 12 months after ``date``
    baseline: np.ndarray        # the baseline count on ``date`` (missing as 0)
    names: tuple[str, ...]
    ids: np.ndarray             # the pseudonymised patient_id of each row

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
    """The sample from one store, or from a sharded one (docs/scale-out.md): each shard's
    rows put in one store's order, so the fit sees the same rows in the same order."""
    from casefind.store.sharded import ShardedStore

    if isinstance(store, ShardedStore):
        return _sharded_sample(store, cs, date, engine)
    return _as_sample(_rows(store, _exprs(cs), cs, date, engine)[0], cs, date)


def _exprs(cs: CompiledSpec) -> dict:
    return {**cs.predictors, "baseline__": cs.baseline, _POPULATION: cs.population}


def _rows(store, exprs: dict, cs: CompiledSpec, date: dt.date, engine: str):
    """One store's members: predictors, baseline, outcome, patient (store index) and patient_id."""
    import pyarrow as pa

    eng = get_engine(engine)
    t = eng.evaluate(store, exprs, date, population=cs.population)
    t = t.filter(t.column(_POPULATION).fill_null(False))
    patients = t.column("patient").to_numpy().astype(np.int32)
    out = eng.evaluate(store, {"outcome": cs.outcome}, shift_date(date, HORIZON_MONTHS), patients=patients)
    ids = store.table("patients").arrow.column("patient_id").take(pa.array(patients.astype(np.int64)))
    return (t.append_column("outcome__", out.column("outcome")).append_column("patient_id", ids),
            store.table("patients")["practice"][patients])


def _sharded_sample(store, cs: CompiledSpec, date: dt.date, engine: str) -> Sample:
    """Each shard's members, in one store's order (practice, then patient_id); ranks among
    the predictors by the two-pass pools. Store indices mean nothing across shards: -1."""
    import functools

    import pyarrow as pa

    from casefind.engines.pooled import over_shards, ranks_in
    from casefind.errors import UsageError
    from casefind.store.sharded import in_store_order

    if ranks_in({"outcome": cs.outcome}):  # pass 1 would pool it at the feature date
        raise UsageError("the outcome ranks within the population (top / percentile): it is not merged over "
                         "shards", "fit the model on a single store")
    exprs = over_shards(store, get_engine(engine), _exprs(cs), date, cs.population)
    merged = in_store_order(store.map(functools.partial(_shard_rows, exprs, cs, date, engine), f"sampling {date}"))
    no_index = pa.array(np.full(merged.num_rows, -1, np.int32))
    return _as_sample(merged.set_column(merged.schema.get_field_index("patient"), "patient", no_index), cs, date)


def _shard_rows(exprs, cs: CompiledSpec, date: dt.date, engine: str, shard, i: int):
    return _rows(shard, exprs, cs, date, engine)


def _as_sample(t, cs: CompiledSpec, date: dt.date) -> Sample:
    X = np.column_stack([_numbers(t.column(n)) for n in cs.predictors]) if cs.predictors else np.zeros((len(t), 0))
    baseline = np.nan_to_num(_numbers(t.column("baseline__")))
    y = t.column("outcome__").fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
    ids = np.asarray(t.column("patient_id").to_numpy(zero_copy_only=False), dtype=object)
    return Sample(date, t.column("patient").to_numpy().astype(np.int32), X, y, baseline, tuple(cs.predictors), ids)
