"""A budget year on a sharded store (docs/scale-out.md): the single store's outputs.

Pass 1: each shard gives its part (budgets/parts.py: its patients' values, register,
tagged records and baseline costs, and its population's sums per practice), wherever the
mapper runs it. Pass 2 asks each shard, for every patient with tagged records, how many of
its activity records come before that patient in one store's order (practice, then
``patient_id``): added over the shards, that is the patient's first row in one store's
activity table, so ``tagged_activity.record`` is the single store's row. The parts are then
merged and the year computed once, by the same code as one store (``compute.combine``):
the tariffs' trims and the shadow rate's are taken over every shard's pooled costs, so
nothing is ranked within a shard. A budget whose expressions rank within the population
(top / percentile) is refused: its pools would be needed at every evaluation date.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from casefind.budgets import compute, features, parts
from casefind.budgets.define import BudgetSpec
from casefind.budgets.years import FinancialYear
from casefind.errors import UsageError
from casefind.rules import ir
from casefind.store import Store
from casefind.store.sharded import ShardedStore


def run(store: ShardedStore, spec: BudgetSpec, year: FinancialYear, engine: str = "native",
        allow_partial: bool = False, say: Callable[[str], None] = lambda s: None) -> compute.Computed:
    """``compute.run`` for a sharded store (see the module's docstring)."""
    refuse_ranks(spec)
    cov = store.coverage
    complete, warnings = compute.check_year(cov, spec, year, allow_partial)
    task = functools.partial(_shard_part, spec, year, complete, engine)
    pieces = store.map(task, f"evaluating the cohort and categories ({engine} engine)", say)
    pieces = with_store_records(store, pieces, say)
    return compute.combine(pieces, spec, year, complete, min(cov.last, year.end), warnings, say)


def refuse_ranks(spec: BudgetSpec) -> None:
    """A cohort, category, incentive or acceptance that ranks within the population would
    rank within each shard: refused with the way round it."""
    for name, node in features.expressions(spec).items():
        if ir.contains(node, ir.PopulationRank, (ir.ROWS, ir.DATE)):
            raise UsageError(f"budget {spec.name}: its {name.replace('_', ' ')} ranks within the population "
                             "(top / percentile), which is not merged over shards",
                             "run this budget on a single store")


def _shard_part(spec: BudgetSpec, year: FinancialYear, complete: int, engine: str, shard: Store, i: int):
    """Pass 1 on one shard, wherever the mapper runs it."""
    return compute.part(shard, spec, year, complete, engine)


def with_store_records(store: ShardedStore, pieces: list[parts.Part], say) -> list[parts.Part]:
    """Each part with its tagged ``record`` made the row one store's activity table has
    (pass 2, in the module's docstring). Only the patients with tagged records are asked for:
    their practice and id go to every shard."""
    asked = [np.unique(p.tagged.row) for p in pieces]
    practice = np.concatenate([p.practice[rows] for p, rows in zip(pieces, asked)]).astype(np.int64)
    ids = pa.concat_arrays([p.patient_id.take(pa.array(rows)) for p, rows in zip(pieces, asked)])
    task = functools.partial(_records_before, practice, ids)
    first = np.sum(store.map(task, "numbering the tagged records as one store", say), axis=0, dtype=np.int64)
    out, at = [], 0
    for p, rows in zip(pieces, asked):
        first_of_row = np.zeros(len(p.practice), np.int64)
        first_of_row[rows] = first[at:at + len(rows)]
        at += len(rows)
        t = p.tagged
        record = first_of_row[t.row] + (t.record - p.first_record[t.row])
        out.append(dataclasses.replace(p, tagged=dataclasses.replace(t, record=record)))
    return out


def _records_before(practice: np.ndarray, ids: pa.Array, shard: Store, i: int) -> np.ndarray:
    """For each asked patient (practice index, id), how many of this shard's activity records
    belong to patients before them in store order (the shard's patients are in that order).
    The asked and own patients are sorted together in Arrow, the asked first on a tie."""
    patients = shard.table("patients")
    own = patients["practice"].astype(np.int64)
    n_asked = len(practice)
    keyed = pa.table({
        "practice": pa.array(np.concatenate([np.asarray(practice, np.int64), own])),
        "patient_id": pa.concat_arrays([ids.cast(pa.string()),
                                        patients.arrow.column("patient_id").combine_chunks().cast(pa.string())]),
        "own": pa.array(np.concatenate([np.zeros(n_asked, np.int8), np.ones(len(own), np.int8)]))})
    keys = [("practice", "ascending"), ("patient_id", "ascending"), ("own", "ascending")]
    order = pc.sort_indices(keyed, sort_keys=keys).to_numpy()
    is_own = order >= n_asked
    own_before = np.cumsum(is_own) - is_own
    before = np.empty(n_asked, np.int64)
    before[order[~is_own]] = own_before[~is_own]
    return shard.table("activity").offsets[before].astype(np.int64)
